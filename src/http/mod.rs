//! The control plane over HTTP: WHIP/WHEP signalling, the REST API, pages, health. Handlers
//! share one [`App`](crate::app::App).

pub mod api;
pub mod error;
pub mod listener;
pub mod media;
pub mod pages;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};

pub use crate::app::App;
use error::ApiError;

/// The public router.
pub fn router(app: Arc<App>) -> Router {
    // Only methods that some route takes: PATCH (trickle ICE) always answers 405.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            header::RETRY_AFTER,
            header::HeaderName::from_static(media::VIEWER_HEADER),
        ]);
    let limit = app.cfg.http.max_body_bytes;
    Router::new()
        .route(
            "/whip/{show}",
            post(media::whip_post)
                .options(media::endpoint_options)
                .fallback(media::endpoint_other),
        )
        .route(
            "/whip/{show}/{session}",
            axum::routing::delete(media::session_delete).fallback(media::session_other),
        )
        .route(
            "/whep/{show}",
            post(media::whep_post)
                .options(media::endpoint_options)
                .fallback(media::endpoint_other),
        )
        .route(
            "/whep/{show}/{session}",
            axum::routing::delete(media::session_delete).fallback(media::session_other),
        )
        .route("/healthz", get(healthz))
        .nest("/api/v1", api::router())
        .merge(pages::router())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        // Inside CORS, so a browser sees the 403 and its reason.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            refuse_admin_tokens,
        ))
        .layer(cors)
        // Outside CORS, which answers every OPTIONS itself (preflight or not).
        .layer(axum::middleware::map_response_with_state((), advertise_sdp))
        .with_state(app)
}

/// The admin router (`http.admin_listen`, a private listener): the REST API and `/healthz`,
/// without the pages, WHIP/WHEP or CORS. Every token role works here as on the public listener.
pub fn admin_router(app: Arc<App>) -> Router {
    let limit = app.cfg.http.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/api/v1", api::router())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// With `http.admin_listen` set, the public listener refuses a request whose bearer token is a
/// valid admin token: 403 (JSON under `/api/`, plain text elsewhere), counted in
/// `hawker_admin_tokens_refused_total`. An invalid or non-admin token goes on to the route,
/// which answers as it always does.
async fn refuse_admin_tokens(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if app.cfg.http.admin_listen.is_some() {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let admin = crate::auth::bearer(header)
            .and_then(|t| app.keys.verify(t).ok())
            .is_some_and(|c| c.role == crate::auth::Role::Admin);
        if admin {
            app.metrics.admin_tokens_refused.inc();
            let msg = "admin tokens are accepted only on the admin listener (http.admin_listen)";
            if req.uri().path().starts_with("/api/") {
                return api::JsonError::forbidden(msg).into_response();
            }
            return ApiError::Forbidden(msg.into()).into_response();
        }
    }
    next.run(req).await
}

/// The metrics router (own listener).
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(app)
}

/// `hawker_http_requests_total{route, status}`, by route template (bounded label set).
async fn count_requests(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    app.metrics
        .http_requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    resp
}

/// RFC 9725 §4.1: `OPTIONS` on a WHIP/WHEP endpoint says it takes `application/sdp`.
async fn advertise_sdp(
    axum::extract::State(()): axum::extract::State<()>,
    method: Method,
    uri: axum::http::Uri,
    mut resp: axum::response::Response,
) -> axum::response::Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    if method == Method::OPTIONS
        && segments.len() == 2
        && matches!(segments[0], "whip" | "whep")
        && resp.status().is_success()
    {
        let h = resp.headers_mut();
        h.insert(
            "accept-post",
            axum::http::HeaderValue::from_static("application/sdp"),
        );
        h.entry(header::ALLOW)
            .or_insert(axum::http::HeaderValue::from_static("OPTIONS, POST"));
    }
    resp
}

/// `ok` while every shard thread runs; 503 naming the stopped shards otherwise, so a
/// supervisor or load balancer takes the process out.
async fn healthz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> impl IntoResponse {
    let dead = app.engine.dead_shards();
    if dead.is_empty() {
        return (StatusCode::OK, "ok\n".to_string());
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("shards stopped: {dead:?}\n"),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> impl IntoResponse {
    // Read at scrape time: one indexed COUNT on the reader connection.
    if let Ok(n) = app.store.outbox_pending().await {
        app.metrics
            .webhook_outbox_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Ok(n) = app.store.outbox_dead().await {
        app.metrics
            .webhook_outbox_dead
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
