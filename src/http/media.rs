//! WHIP (RFC 9725) ingest and WHEP egress: offer in, answer out, DELETE to end.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use str0m::change::SdpOffer;

use super::error::ApiError;
use super::App;
use crate::auth::Role as TokenRole;
use crate::engine::simulcast::Quality;
use crate::engine::Role;
use crate::shows::Session;

/// Show ids: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn valid_show_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_show_id(id: &str) -> Result<(), ApiError> {
    if valid_show_id(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "show id must be 1-64 characters of A-Z a-z 0-9 - _".into(),
        ))
    }
}

/// Check the content type and parse the body as an SDP offer.
fn parse_offer(headers: &HeaderMap, body: &Bytes) -> Result<SdpOffer, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/sdp, got {:?}",
            if ct.is_empty() { "nothing" } else { ct }
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("SDP offer is not UTF-8".into()))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(ApiError::BadRequest(
            "body is not an SDP offer (must start with v=0)".into(),
        ));
    }
    SdpOffer::from_sdp_string(text)
        .map_err(|e| ApiError::BadRequest(format!("malformed SDP offer: {e}").replace('\n', " ")))
}

fn new_session_id() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

fn answer_response(kind: &str, show: &str, session: &str, answer: String) -> Response {
    let location = format!("/{kind}/{show}/{session}");
    let mut resp = (StatusCode::CREATED, answer).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{session}\"")) {
        h.insert(header::ETAG, v);
    }
    resp
}

fn auth_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// `POST /whip/{show}`.
pub async fn whip_post(
    State(app): State<Arc<App>>,
    Path(show_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    check_show_id(&show_id)?;
    let claims = app.keys.authorize(
        auth_header(&headers),
        &show_id,
        &[TokenRole::Publisher, TokenRole::Admin],
    )?;
    let offer = parse_offer(&headers, &body)?;
    let show = app
        .show_for_media(&show_id, true)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no show {show_id:?}")))?;
    if let Ok(Some(stored)) = app.store.show(&show_id).await {
        if stored.state == crate::commerce::ShowState::Ended {
            return Err(ApiError::Conflict(format!(
                "show {show_id:?} has ended; create a new show to go live again"
            )));
        }
    }
    let session_id = new_session_id();
    {
        let mut slot = show.publisher.lock();
        if slot.is_some() {
            return Err(ApiError::Conflict(format!(
                "show {show_id:?} already has a publisher; DELETE its session first"
            )));
        }
        *slot = Some(session_id.clone());
    }
    let shard = app.engine.home_shard(&show_id);
    let peer = app.engine.next_peer_id();
    // Register first so an early `Connected` event finds the session.
    app.registry.add_session(Session {
        id: session_id.clone(),
        show: show.clone(),
        role: Role::Publisher,
        shard,
        peer,
        sub: claims.sub.clone(),
        connected: false,
    });
    match app
        .engine
        .add_peer(
            shard,
            peer,
            show.spec(),
            Role::Publisher,
            offer,
            Quality::Auto,
        )
        .await
    {
        Ok(answer) => {
            app.metrics
                .signalling_seconds
                .with_label_values(&["whip"])
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(show = %show_id, session = %crate::shows::log_id(&session_id),
                "publisher joined");
            Ok(answer_response("whip", &show_id, &session_id, answer))
        }
        Err(e) => {
            app.registry.remove_by_peer(peer);
            *show.publisher.lock() = None;
            Err(e.into())
        }
    }
}

/// Query parameters of `POST /whep/{show}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct WhepQuery {
    /// Stable id of an anonymous viewer (1-64 of `[A-Za-z0-9_-]`).
    pub viewer: Option<String>,
    /// Quality cap: `auto` (default), `low`, `medium`, `high`.
    pub quality: Option<String>,
}

/// `POST /whep/{show}`.
pub async fn whep_post(
    State(app): State<Arc<App>>,
    Path(show_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<WhepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    check_show_id(&show_id)?;
    let header = auth_header(&headers);
    let sub = if header.is_none() && app.cfg.auth.anonymous_viewers {
        // An anonymous viewer may name itself (`?viewer=<id>`, e.g. a UUID kept in the
        // browser) so that its buys stay idempotent across reconnects.
        match query.viewer.as_deref().filter(|v| valid_show_id(v)) {
            Some(v) => format!("anon-{v}"),
            None => format!("anon-{}", &new_session_id()[..12]),
        }
    } else {
        app.keys
            .authorize(
                header,
                &show_id,
                &[TokenRole::Viewer, TokenRole::Admin, TokenRole::Publisher],
            )?
            .sub
    };
    let quality = match query.quality.as_deref() {
        None => Quality::Auto,
        Some(q) => Quality::parse(q).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "quality must be auto, low, medium or high, not {q:?}"
            ))
        })?,
    };
    let offer = parse_offer(&headers, &body)?;
    // Viewers never create shows (see `App::show_for_media`).
    let show = app
        .show_for_media(&show_id, false)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no show {show_id:?}")))?;
    let session_id = new_session_id();
    let shard = app.engine.pick_viewer_shard();
    let peer = app.engine.next_peer_id();
    app.registry.add_session(Session {
        id: session_id.clone(),
        show: show.clone(),
        role: Role::Viewer,
        shard,
        peer,
        sub,
        connected: false,
    });
    match app
        .engine
        .add_peer(shard, peer, show.spec(), Role::Viewer, offer, quality)
        .await
    {
        Ok(answer) => {
            app.metrics
                .signalling_seconds
                .with_label_values(&["whep"])
                .observe(started.elapsed().as_secs_f64());
            Ok(answer_response("whep", &show_id, &session_id, answer))
        }
        Err(e) => {
            app.registry.remove_by_peer(peer);
            Err(e.into())
        }
    }
}

/// `DELETE /whip/{show}/{session}` and `DELETE /whep/{show}/{session}`.
pub async fn session_delete(
    State(app): State<Arc<App>>,
    Path((show_id, session_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let Some(s) = app.registry.session(&session_id) else {
        return Err(ApiError::NotFound(format!("no session {session_id:?}")));
    };
    if &*s.show.id != show_id.as_str() {
        return Err(ApiError::NotFound(format!(
            "no session {session_id:?} in show {show_id:?}"
        )));
    }
    app.engine.remove_peer(s.shard, s.peer).await;
    // The shard's `Gone` event does the rest; make sure the slot is free even if the shard
    // already dropped the peer on its own.
    app.session_gone(s.peer);
    Ok(StatusCode::OK)
}

/// Trickle ICE and ICE restarts are not supported: the answer carries every candidate.
pub async fn session_patch() -> Response {
    let mut r = (
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE is not supported; the answer carries all candidates (ICE-lite)\n",
    )
        .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    r
}

/// `OPTIONS /whip/{show}` and `/whep/{show}` without CORS preflight headers: what the endpoint
/// takes (RFC 9725 §4.1: `Accept-Post: application/sdp`). Preflights are answered by the CORS
/// layer before they get here.
pub async fn endpoint_options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}
