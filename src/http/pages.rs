//! Pages and the JavaScript SDK, embedded in the binary: `/`, `/studio/{show}`,
//! `/watch/{show}`, `/sdk/hawker.js` (the file the `@hawker/sdk` npm package ships, with its
//! declarations at `/sdk/hawker.d.ts`), `/assets/*`, plus two small public JSON documents the
//! pages read before a WebRTC session exists:
//!
//! * `GET /shows.json`: shows that are live or scheduled (the index page);
//! * `GET /shows/{show}/catalog.json`: one show and its products (the studio's catalog before
//!   going live, the viewer page's "starting soon" state).
//!
//! Both carry only what any anonymous viewer receives in the `snapshot` message anyway, and are
//! disabled (403) when `auth.anonymous_viewers` is off.
//!
//! Every file is compiled in with `include_str!`/`include_bytes!`, so the binary serves them
//! from any working directory. Responses carry a content hash as `ETag` and
//! `Cache-Control: no-cache`, so browsers revalidate cheaply (304) and never run a stale SDK.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::media::valid_show_id;
use super::App;
use crate::commerce::ShowState;

/// An embedded file.
struct Asset {
    /// Path under `web/`.
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const TS: &str = "application/typescript; charset=utf-8";

/// Files under `/assets/` (and the SDK), by name.
const ASSETS: &[(&str, Asset)] = &[
    (
        "hawker.css",
        Asset {
            path: "assets/hawker.css",
            body: include_bytes!("../../web/assets/hawker.css"),
            content_type: CSS,
        },
    ),
    (
        "index.js",
        Asset {
            path: "assets/index.js",
            body: include_bytes!("../../web/assets/index.js"),
            content_type: JS,
        },
    ),
    (
        "studio.js",
        Asset {
            path: "assets/studio.js",
            body: include_bytes!("../../web/assets/studio.js"),
            content_type: JS,
        },
    ),
    (
        "watch.js",
        Asset {
            path: "assets/watch.js",
            body: include_bytes!("../../web/assets/watch.js"),
            content_type: JS,
        },
    ),
    (
        "ui.js",
        Asset {
            path: "assets/ui.js",
            body: include_bytes!("../../web/assets/ui.js"),
            content_type: JS,
        },
    ),
    (
        "icon.svg",
        Asset {
            path: "assets/icon.svg",
            body: include_bytes!("../../web/assets/icon.svg"),
            content_type: SVG,
        },
    ),
];

const SDK: Asset = Asset {
    path: "sdk/hawker.js",
    body: include_bytes!("../../web/sdk/hawker.js"),
    content_type: JS,
};
const SDK_TYPES: Asset = Asset {
    path: "sdk/hawker.d.ts",
    body: include_bytes!("../../web/sdk/hawker.d.ts"),
    content_type: TS,
};
const INDEX_HTML: Asset = Asset {
    path: "index.html",
    body: include_bytes!("../../web/index.html"),
    content_type: HTML,
};
const STUDIO_HTML: Asset = Asset {
    path: "studio.html",
    body: include_bytes!("../../web/studio.html"),
    content_type: HTML,
};
const WATCH_HTML: Asset = Asset {
    path: "watch.html",
    body: include_bytes!("../../web/watch.html"),
    content_type: HTML,
};
const NOT_FOUND_HTML: Asset = Asset {
    path: "404.html",
    body: include_bytes!("../../web/404.html"),
    content_type: HTML,
};

/// Content-Security-Policy of the pages: everything from this origin; media from the camera
/// or the peer connection; product images from anywhere (sellers host them).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data: https: http:; media-src 'self' blob: mediastream:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'";

/// Routes at the root.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/studio/{show}", get(studio))
        .route("/watch/{show}", get(watch))
        .route("/sdk/hawker.js", get(sdk))
        .route("/sdk/hawker.d.ts", get(sdk_types))
        .route("/assets/{file}", get(asset))
        .route("/favicon.ico", get(favicon))
        .route("/shows.json", get(shows_json))
        .route("/shows/{show}/catalog.json", get(catalog_json))
}

/// A strong validator: FNV-1a 64 of the body (computed per request; the files are small).
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// The body of an asset: embedded, or read from `$HAWKER_WEB_DIR` when set (for working on
/// the pages without rebuilding; falls back to the embedded copy if the file is missing).
fn body_of(asset: &Asset) -> std::borrow::Cow<'static, [u8]> {
    if let Some(dir) = std::env::var_os("HAWKER_WEB_DIR") {
        if let Ok(b) = std::fs::read(std::path::Path::new(&dir).join(asset.path)) {
            return b.into();
        }
    }
    asset.body.into()
}

fn serve(asset: &Asset, req: &HeaderMap, status: StatusCode) -> Response {
    let body = body_of(asset);
    let tag = etag(&body);
    let fresh = status == StatusCode::OK
        && req
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (status, body.into_owned()).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if asset.content_type == HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        // The studio URL carries the publisher token in its fragment; fragments are never
        // sent as Referer, and this keeps even the path private.
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    resp
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX_HTML, &headers, StatusCode::OK)
}

async fn studio(Path(show): Path<String>, headers: HeaderMap) -> Response {
    if !valid_show_id(&show) {
        return serve(&NOT_FOUND_HTML, &headers, StatusCode::NOT_FOUND);
    }
    serve(&STUDIO_HTML, &headers, StatusCode::OK)
}

async fn watch(Path(show): Path<String>, headers: HeaderMap) -> Response {
    if !valid_show_id(&show) {
        return serve(&NOT_FOUND_HTML, &headers, StatusCode::NOT_FOUND);
    }
    serve(&WATCH_HTML, &headers, StatusCode::OK)
}

async fn sdk(headers: HeaderMap) -> Response {
    let mut r = serve(&SDK, &headers, StatusCode::OK);
    // Deno and some bundlers look here for the types of a module loaded by URL.
    r.headers_mut().insert(
        "x-typescript-types",
        HeaderValue::from_static("/sdk/hawker.d.ts"),
    );
    r
}

async fn sdk_types(headers: HeaderMap) -> Response {
    serve(&SDK_TYPES, &headers, StatusCode::OK)
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
}

async fn favicon(headers: HeaderMap) -> Response {
    match find("icon.svg") {
        Some(a) => serve(a, &headers, StatusCode::OK),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&file) {
        Some(a) => serve(a, &headers, StatusCode::OK),
        None => ApiError::NotFound(format!("no asset {file:?}")).into_response(),
    }
}

fn public_json_allowed(app: &App) -> Result<(), ApiError> {
    if app.cfg.auth.anonymous_viewers {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "show listings are private (auth.anonymous_viewers = false)".into(),
        ))
    }
}

fn json_no_cache(v: Value) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /shows.json`: `{"shows": [{id, title, state, live, viewers, scheduled_at, started_at}]}`,
/// live shows first, then scheduled ones by start time. Ended shows are left out.
async fn shows_json(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    public_json_allowed(&app)?;
    let stored = app
        .store
        .shows(None)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let live: HashMap<String, (bool, usize)> = app
        .registry
        .shows()
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                (
                    s.live.load(Ordering::Relaxed),
                    s.viewers.load(Ordering::Relaxed),
                ),
            )
        })
        .collect();
    let mut out: Vec<(u8, i64, Value)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in &stored {
        let (on_air, viewers) = live.get(&s.id).copied().unwrap_or((false, 0));
        if s.state == ShowState::Ended && !on_air {
            continue;
        }
        seen.insert(s.id.clone());
        let state = if on_air { "live" } else { s.state.as_str() };
        let rank = if on_air { 0 } else { 1 };
        out.push((
            rank,
            s.scheduled_at.unwrap_or(i64::MAX),
            json!({
                "id": s.id, "title": s.title, "state": state, "live": on_air,
                "viewers": viewers, "scheduled_at": s.scheduled_at, "started_at": s.started_at,
            }),
        ));
    }
    // Shows that exist only in the media plane (created on first use, record still pending).
    for s in app.registry.shows() {
        if seen.contains(&*s.id) || !s.live.load(Ordering::Relaxed) {
            continue;
        }
        out.push((
            0,
            i64::MAX,
            json!({
                "id": &*s.id, "title": &*s.id, "state": "live", "live": true,
                "viewers": s.viewers.load(Ordering::Relaxed), "scheduled_at": null, "started_at": null,
            }),
        ));
    }
    out.sort_by_key(|(rank, at, _)| (*rank, *at));
    Ok(json_no_cache(
        json!({"shows": out.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>()}),
    ))
}

/// `GET /shows/{show}/catalog.json`: the show and its products, the same fields as `snapshot`.
async fn catalog_json(
    State(app): State<Arc<App>>,
    Path(show): Path<String>,
) -> Result<Response, ApiError> {
    public_json_allowed(&app)?;
    if !valid_show_id(&show) {
        return Err(ApiError::NotFound(format!("no show {show:?}")));
    }
    let stored = app
        .store
        .show(&show)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let reg = app.registry.show(&show);
    if stored.is_none() && reg.is_none() {
        return Err(ApiError::NotFound(format!("no show {show:?}")));
    }
    let products = app
        .store
        .products(&show)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let on_air = reg.as_ref().is_some_and(|s| s.live.load(Ordering::Relaxed));
    let state = match (&stored, on_air) {
        (_, true) => "live",
        (Some(s), false) => s.state.as_str(),
        (None, false) => "scheduled",
    };
    Ok(json_no_cache(json!({
        "show": {
            "id": show,
            "title": stored.as_ref().map(|s| s.title.clone()).unwrap_or_else(|| show.clone()),
            "state": state,
            "live": on_air,
            "viewers": reg.as_ref().map(|s| s.viewers.load(Ordering::Relaxed)).unwrap_or(0),
            "scheduled_at": stored.as_ref().and_then(|s| s.scheduled_at),
            // Off air with a recording: the viewer page offers the replay.
            "replay": !on_air && app.recordings.has_media(&show),
        },
        "products": products.iter().map(|p| json!({
            "sku": p.sku, "title": p.title, "price": p.price, "currency": p.currency,
            "image_url": p.image_url, "stock": p.stock,
        })).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_stable_and_quoted() {
        assert_eq!(etag(b"abc"), etag(b"abc"));
        assert_ne!(etag(b"abc"), etag(b"abd"));
        assert!(etag(b"").starts_with('"') && etag(b"").ends_with('"'));
    }

    #[test]
    fn every_asset_is_non_empty() {
        for (name, a) in ASSETS {
            assert!(!a.body.is_empty(), "{name}");
        }
        assert!(std::str::from_utf8(SDK.body).unwrap().contains("export"));
        assert!(std::str::from_utf8(SDK_TYPES.body)
            .unwrap()
            .contains("export function watch("));
    }
}
