//! The control plane over HTTP: WHIP/WHEP signalling, health, and the shared [`App`] state.

pub mod api;
pub mod error;
pub mod media;
pub mod pages;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};

use crate::auth::Keys;
use crate::config::Config;
use crate::engine::{Engine, Event, Role};
use crate::metrics::Metrics;
use crate::shows::{Registry, Show};
use error::ApiError;

/// Everything the HTTP handlers share.
pub struct App {
    /// Configuration.
    pub cfg: Config,
    /// Token keys.
    pub keys: Keys,
    /// The media plane.
    pub engine: Engine,
    /// Shows and sessions.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Metrics,
    /// Durable shows, catalog, stock, orders, webhook outbox.
    pub store: crate::commerce::Store,
    /// Live commerce state (highlights, rate limits).
    pub live: crate::live::State,
}

impl App {
    /// The show for a WHIP/WHEP request: existing, or created on first use if configured.
    pub fn show_for_media(&self, id: &str) -> Result<Arc<Show>, ApiError> {
        if let Some(s) = self.registry.show(id) {
            return Ok(s);
        }
        if self.cfg.shows.create_on_first_use {
            let show = self
                .registry
                .show_or_create(id, &self.cfg.shows.default_video_codecs);
            // Keep the durable record in step so orders and webhooks work for it too.
            let pending = self.store.create_show(crate::commerce::NewShow {
                id: Some(id.to_string()),
                title: id.to_string(),
                scheduled_at: None,
                video_codecs: show
                    .video_codecs
                    .iter()
                    .map(|c| c.as_str().to_string())
                    .collect(),
            });
            tokio::spawn(async move {
                if let Err(e) = pending.await {
                    tracing::debug!("implicit show record: {e}");
                }
            });
            Ok(show)
        } else {
            Err(ApiError::NotFound(format!("no show {id:?}")))
        }
    }

    /// A peer is gone: free its publisher slot, update counts.
    pub fn session_gone(&self, peer: u64) {
        let Some(s) = self.registry.remove_by_peer(peer) else {
            return;
        };
        match s.role {
            Role::Publisher => {
                let mut slot = s.show.publisher.lock();
                if slot.as_deref() == Some(s.id.as_str()) {
                    *slot = None;
                }
                if s.show.live.swap(false, Ordering::Relaxed) {
                    self.metrics.shows_live.dec();
                    tracing::info!(show = %s.show.id, "show went off air");
                }
            }
            Role::Viewer => {
                if s.connected {
                    s.show.viewer_left();
                }
            }
        }
    }

    /// Handle a media-plane event.
    pub fn on_engine_event(self: &Arc<Self>, ev: Event) {
        match ev {
            Event::Connected { peer, role, .. } => {
                if let Some(s) = self.registry.mark_connected(peer) {
                    match role {
                        Role::Publisher => {
                            if !s.show.live.swap(true, Ordering::Relaxed) {
                                self.metrics.shows_live.inc();
                                tracing::info!(show = %s.show.id, "show is live");
                            }
                            let pending = self
                                .store
                                .set_show_state(&s.show.id, crate::commerce::ShowState::Live);
                            tokio::spawn(async move {
                                if let Err(e) = pending.await {
                                    tracing::debug!("show state: {e}");
                                }
                            });
                        }
                        Role::Viewer => s.show.viewer_joined(),
                    }
                }
            }
            Event::Gone { peer, .. } => self.session_gone(peer),
            Event::ChannelOpen { peer, .. } => {
                tokio::spawn(crate::live::on_channel_open(self.clone(), peer));
            }
            Event::Text { peer, text, .. } => {
                tokio::spawn(crate::live::on_text(self.clone(), peer, text));
            }
        }
    }
}

/// The public router.
pub fn router(app: Arc<App>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::ETAG, header::LINK]);
    let limit = app.cfg.http.max_body_bytes;
    Router::new()
        .route("/whip/{show}", post(media::whip_post))
        .route(
            "/whip/{show}/{session}",
            axum::routing::delete(media::session_delete).patch(media::session_patch),
        )
        .route("/whep/{show}", post(media::whep_post))
        .route(
            "/whep/{show}/{session}",
            axum::routing::delete(media::session_delete).patch(media::session_patch),
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
        .layer(cors)
        .with_state(app)
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

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
