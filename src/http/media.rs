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
use crate::shows::{Capped, Caps, Session};

/// Response header carrying an anonymous viewer's server-signed id (present it back as
/// `?viewer=` to keep the same buyer id across reconnects).
pub const VIEWER_HEADER: &str = "x-hawker-viewer";

/// The client's address, when the listener recorded it.
type Client = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

fn client_ip(c: &Client) -> Option<std::net::IpAddr> {
    c.as_ref()
        .map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip())
}

/// Record a session under the configured caps, or the 429 that refuses it.
fn add_capped(app: &App, s: Session) -> Result<(), ApiError> {
    let caps = Caps {
        per_ip: app.cfg.http.max_sessions_per_ip,
        viewers_per_show: app.cfg.http.max_viewers_per_show,
        per_sub: app.cfg.http.max_sessions_per_token,
    };
    app.registry.try_add_session(s, caps).map_err(|c| {
        app.metrics
            .sessions_capped
            .with_label_values(&[c.as_str()])
            .inc();
        let why = match c {
            Capped::Ip => "too many sessions from this address (http.max_sessions_per_ip)",
            Capped::Show => "this show has as many viewers as it takes (http.max_viewers_per_show)",
            Capped::Token => {
                "too many sessions under this token subject (http.max_sessions_per_token)"
            }
        };
        ApiError::TooManyRequests(why.into(), app.cfg.http.retry_after_secs)
    })
}

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

/// The session URL: absolute under `http.public_url` when one is set (a proxy may mount hawker
/// under a path prefix or another host, where a bare `/whip/...` would miss), otherwise a path
/// relative to the request's origin.
pub fn session_location(public_url: Option<&str>, kind: &str, show: &str, session: &str) -> String {
    let base = public_url.map(|u| u.trim_end_matches('/')).unwrap_or("");
    format!("{base}/{kind}/{show}/{session}")
}

fn answer_response(location: String, session: &str, answer: String) -> Response {
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
    client: Client,
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
    // The slot's holder, looked up without holding the slot (`App::session_gone` takes the
    // registry before the slot). A publisher presenting the same token subject replaces its
    // own old session: OBS reconnecting after a lost DELETE (network change, crash) would
    // otherwise get 409 until the old peer's ICE timeout.
    let holder = show.publisher.lock().clone();
    let replaced = match &holder {
        None => None,
        Some(old_id) => match app.registry.session(old_id) {
            Some(old) if old.role == Role::Publisher && old.sub == claims.sub => Some(old),
            _ => {
                return Err(ApiError::Conflict(format!(
                    "show {show_id:?} already has a publisher; DELETE its session first"
                )))
            }
        },
    };
    {
        let mut slot = show.publisher.lock();
        if *slot != holder {
            return Err(ApiError::Conflict(format!(
                "show {show_id:?} already has a publisher; DELETE its session first"
            )));
        }
        *slot = Some(session_id.clone());
    }
    if let Some(old) = replaced {
        app.engine.remove_peer(old.shard, old.peer).await;
        app.session_gone(old.peer);
        app.metrics.publishers_replaced.inc();
        tracing::info!(show = %show_id, old = %crate::shows::log_id(&old.id),
            session = %crate::shows::log_id(&session_id),
            "publisher reconnected; its previous session is replaced");
    }
    let shard = app.engine.home_shard(&show_id);
    let peer = app.engine.next_peer_id();
    // Register first so an early `Connected` event finds the session.
    let added = add_capped(
        &app,
        Session {
            id: session_id.clone(),
            show: show.clone(),
            role: Role::Publisher,
            shard,
            peer,
            sub: claims.sub.clone(),
            connected: false,
            ip: client_ip(&client),
        },
    );
    if let Err(e) = added {
        let mut slot = show.publisher.lock();
        if slot.as_deref() == Some(session_id.as_str()) {
            *slot = None;
        }
        return Err(e);
    }
    match app
        .engine
        .add_peer(
            shard,
            peer,
            publisher_spec(&app, &show),
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
            let location = session_location(
                app.cfg.http.public_url.as_deref(),
                "whip",
                &show_id,
                &session_id,
            );
            Ok(answer_response(location, &session_id, answer))
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
    /// A signed anonymous viewer id this server issued earlier (`X-Hawker-Viewer`).
    pub viewer: Option<String>,
    /// Watch the show's recording instead of the live show.
    #[serde(default)]
    pub replay: bool,
    /// With `replay`: start this many seconds into the recording (at the keyframe before).
    pub t: Option<f64>,
    /// Quality cap: `auto` (default), `low`, `medium`, `high`.
    pub quality: Option<String>,
}

/// `POST /whep/{show}`.
pub async fn whep_post(
    State(app): State<Arc<App>>,
    Path(show_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<WhepQuery>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    check_show_id(&show_id)?;
    let header = auth_header(&headers);
    let mut signed_anon = None;
    let sub = if header.is_none() && app.cfg.auth.anonymous_viewers {
        // Anonymous viewers never choose their id: the server issues a signed one, and a
        // returning viewer presents it back (`?viewer=`) so its buys stay idempotent across
        // reconnects. A chosen or forged id would let anyone buy as someone else.
        let signed = match query.viewer {
            Some(v) => {
                if app.keys.verify_anon_viewer(&v).is_none() {
                    app.metrics.anon_ids_refused.inc();
                    return Err(ApiError::Forbidden(
                        "?viewer= must be the X-Hawker-Viewer id this server issued; omit it \
                         to get a new one"
                            .into(),
                    ));
                }
                v
            }
            None => app.keys.sign_anon_viewer(&new_session_id()[..12]),
        };
        let id = app.keys.verify_anon_viewer(&signed).unwrap_or_default();
        let sub = format!("anon-{id}");
        signed_anon = Some(signed);
        sub
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
    if query.t.is_some() && !query.replay {
        return Err(ApiError::BadRequest(
            "t (a seek position) applies to a replay: add replay=true".into(),
        ));
    }
    let session_id = new_session_id();
    let shard = app.engine.pick_viewer_shard();
    let peer = app.engine.next_peer_id();
    add_capped(
        &app,
        Session {
            id: session_id.clone(),
            show: show.clone(),
            role: Role::Viewer,
            shard,
            peer,
            sub,
            connected: false,
            ip: client_ip(&client),
        },
    )?;
    // From here until the answer is out, a failure or a cancelled request (the client gave up
    // while a replay was being read, or while the shard answered) releases the session, its
    // caps, any replay state and the engine's peer.
    let guard = Pending::new(&app, shard, peer);
    let spec = if query.replay {
        replay_spec(&app, &show, peer, shard, query.t.unwrap_or(0.0)).await?
    } else {
        show.spec()
    };
    match app
        .engine
        .add_peer(shard, peer, spec, Role::Viewer, offer, quality)
        .await
    {
        Ok(answer) => {
            guard.keep();
            app.metrics
                .signalling_seconds
                .with_label_values(&["whep"])
                .observe(started.elapsed().as_secs_f64());
            let location = session_location(
                app.cfg.http.public_url.as_deref(),
                "whep",
                &show_id,
                &session_id,
            );
            let mut resp = answer_response(location, &session_id, answer);
            if let Some(v) = signed_anon.and_then(|v| HeaderValue::from_str(&v).ok()) {
                resp.headers_mut().insert(VIEWER_HEADER, v);
            }
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

/// A viewer session being set up: dropped before [`Pending::keep`], it frees the session
/// (`App::session_gone`: caps, replay state, gauges) and removes the peer from its shard in
/// case the offer already reached it. Request handlers are dropped at any `await` when the
/// client goes away, so a plain cleanup on the error path is not enough.
struct Pending {
    app: Option<Arc<App>>,
    shard: usize,
    peer: crate::engine::PeerId,
}

impl Pending {
    fn new(app: &Arc<App>, shard: usize, peer: crate::engine::PeerId) -> Pending {
        Pending {
            app: Some(app.clone()),
            shard,
            peer,
        }
    }

    /// The session is answered: the engine's `Gone` event ends it from now on.
    fn keep(mut self) {
        self.app = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(app) = self.app.take() else {
            return;
        };
        app.session_gone(self.peer);
        let (shard, peer) = (self.shard, self.peer);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                app.engine.remove_peer(shard, peer).await;
            });
        }
    }
}

/// Prepare a replay of `show` for viewer `peer`: 409 while the show is live, 404 without a
/// recording, 400 for a seek past the end. The engine sees a private show for this viewer.
async fn replay_spec(
    app: &Arc<App>,
    show: &Arc<crate::shows::Show>,
    peer: crate::engine::PeerId,
    shard: usize,
    t: f64,
) -> Result<crate::engine::ShowSpec, ApiError> {
    use crate::recording::replay;
    if show.live.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::Conflict(format!(
            "show {:?} is live; watch it live (without replay)",
            show.id
        )));
    }
    if !app.recordings.has_media(&show.id) {
        return Err(ApiError::NotFound(format!(
            "show {:?} has no recording",
            show.id
        )));
    }
    if !t.is_finite() {
        return Err(ApiError::BadRequest("t must be a number of seconds".into()));
    }
    let a = app.clone();
    let id = show.id.clone();
    let (pkts, events) = tokio::task::spawn_blocking(move || a.load_recording(&id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("cannot read the recording: {e}")))?;
    let codec = pkts
        .iter()
        .find(|p| p.codec.is_video())
        .map(|p| p.codec)
        .unwrap_or(crate::codec::Codec::Vp8);
    let plan = replay::plan(pkts, events, t).map_err(|e| match e {
        replay::Error::PastEnd { .. } => ApiError::BadRequest(e.to_string()),
        other => ApiError::Unprocessable(other.to_string()),
    })?;
    let live = crate::live::snapshot(app, &show.id).await;
    let greeting = replay::snapshot(&live, &plan);
    let engine_show: Arc<str> = Arc::from(format!("{}~replay-{peer}", show.id));
    app.replays.insert(
        peer,
        replay::Session::new(engine_show.clone(), shard, greeting, plan),
    );
    app.metrics.replay_viewers.inc();
    Ok(crate::engine::ShowSpec {
        id: engine_show,
        video_codecs: vec![codec],
        clock: Default::default(),
        record: false,
        replay: true,
    })
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

/// Every method but `DELETE` on a session URL (RFC 9725 §4.3, §4.4): 405 with `Allow`.
/// `PATCH` gets a reason, since trickle ICE and ICE restarts are what a client would use it for.
pub async fn session_other(method: axum::http::Method) -> Response {
    let why = if method == axum::http::Method::PATCH {
        "trickle ICE and ICE restarts are not supported; the answer carries all candidates \
         (ICE-lite)\n"
    } else {
        "a session URL takes DELETE only\n"
    };
    let mut r = (StatusCode::METHOD_NOT_ALLOWED, why).into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    r
}

/// `GET`, `HEAD`, `PUT` and anything else but `POST`/`OPTIONS` on a WHIP or WHEP endpoint:
/// 405 with `Allow` (RFC 9725 §4.2 reserves these methods).
pub async fn endpoint_other() -> Response {
    let mut r = (
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint takes POST with an SDP offer (application/sdp)\n",
    )
        .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
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

/// The show as its publisher session starts: recorded or not, by the show's setting or the
/// config (the events of the session follow the same choice).
fn publisher_spec(app: &App, show: &crate::shows::Show) -> crate::engine::ShowSpec {
    let record = app.records(&show.id);
    show.recording
        .store(record, std::sync::atomic::Ordering::Relaxed);
    show.spec()
}
