//! The REST API under `/api/v1` (admin token): shows, products, events, orders.
//!
//! Every request needs `Authorization: Bearer <token>` with role `admin`, for show `*` or for
//! the show named in the path; the collection endpoints (`/shows`) need show `*`. Bodies are
//! JSON (`Content-Type: application/json`, else 415). Every error, including 401/403/404/405,
//! is answered with a JSON body `{"error": "<one-line reason>", "code": "<code>"}`; see
//! `docs/protocol.md` for the codes. (WHIP/WHEP keep their plain-text errors.)

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::media::valid_show_id;
use super::App;
use crate::auth::Role;
use crate::codec::Codec;
use crate::commerce::{self, NewShow, ProductSpec, ShowState};
use crate::live::protocol::{self, ErrorCode, Inbound};
use crate::live::Origin;

/// Default and largest page of `GET /shows/{show}/orders`.
const DEFAULT_ORDER_PAGE: usize = 100;

/// Routes, nested under `/api/v1`.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/shows", get(list_shows).post(create_show))
        .route("/shows/{show}", get(get_show).delete(delete_show))
        .route("/shows/{show}/end", post(end_show))
        .route("/shows/{show}/products", get(list_products))
        .route(
            "/shows/{show}/products/{sku}",
            get(get_product).put(put_product).delete(delete_product),
        )
        .route("/shows/{show}/events", post(post_event))
        .route("/shows/{show}/orders", get(list_orders))
        .route("/shows/{show}/orders/{order_id}", get(get_order))
        .route("/shows/{show}/tokens", post(create_token))
        .route("/recordings", get(list_recordings))
        .route(
            "/shows/{show}/recording",
            get(export_recording)
                .put(put_recording)
                .delete(delete_recording),
        )
        .route("/shows/{show}/recording/chapters", get(recording_chapters))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_such_endpoint)
}

// ---- errors ----------------------------------------------------------------------------------

/// An API error: a status, a stable code and a one-line reason, sent as JSON.
#[derive(Debug)]
pub struct JsonError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl JsonError {
    fn new(status: StatusCode, message: impl Into<String>) -> JsonError {
        JsonError {
            status,
            code: code_for(status),
            message: message.into(),
        }
    }

    /// 403 with the stable code `forbidden`.
    pub(crate) fn forbidden(message: impl Into<String>) -> JsonError {
        JsonError::new(StatusCode::FORBIDDEN, message)
    }

    fn bad_request(message: impl Into<String>) -> JsonError {
        JsonError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> JsonError {
        JsonError::new(StatusCode::NOT_FOUND, message)
    }

    fn conflict(message: impl Into<String>) -> JsonError {
        JsonError::new(StatusCode::CONFLICT, message)
    }
}

/// The `code` of an error with this status (the events endpoint adds `unknown_type`).
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "internal",
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let message = self.message.replace(['\r', '\n'], " ");
        let mut resp = (
            self.status,
            Json(json!({"error": message, "code": self.code})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<ApiError> for JsonError {
    fn from(e: ApiError) -> Self {
        JsonError::new(e.status(), e.to_string())
    }
}

impl From<crate::auth::Error> for JsonError {
    fn from(e: crate::auth::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<commerce::Error> for JsonError {
    fn from(e: commerce::Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        JsonError::new(status, e.to_string())
    }
}

/// A data-channel error code (from parsing or applying a seller event) as an HTTP error.
fn event_error(code: ErrorCode, message: String) -> JsonError {
    let (status, code) = match code {
        ErrorCode::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
        ErrorCode::UnknownType => (StatusCode::BAD_REQUEST, "unknown_type"),
        ErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorCode::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        ErrorCode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    JsonError {
        status,
        code,
        message,
    }
}

async fn no_such_endpoint() -> JsonError {
    JsonError::not_found("no such endpoint")
}

async fn method_not_allowed() -> JsonError {
    JsonError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this resource",
    )
}

type ApiResult<T> = Result<T, JsonError>;

// ---- extractors with JSON rejections ---------------------------------------------------------

/// `Path<T>` whose rejection is a [`JsonError`].
struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = JsonError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, JsonError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| JsonError::new(r.status(), r.body_text()))
    }
}

/// `Query<T>` whose rejection is a [`JsonError`].
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = JsonError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, JsonError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| JsonError::new(r.status(), r.body_text()))
    }
}

/// The raw body (bounded by `http.max_body_bytes`: 413 beyond it), parsed after auth.
struct Body(Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = JsonError;

    async fn from_request(req: Request, state: &S) -> Result<Self, JsonError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|r| JsonError::new(r.status(), r.body_text()))
    }
}

/// 415 unless the request says `Content-Type: application/json` (parameters allowed).
fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(JsonError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type must be application/json, got {:?}",
                if ct.is_empty() { "nothing" } else { ct }
            ),
        ))
    }
}

/// Check the content type and parse the body; every failure is one line.
fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> ApiResult<T> {
    require_json(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| JsonError::bad_request(format!("invalid JSON body: {e}")))
}

// ---- auth ------------------------------------------------------------------------------------

/// Require an admin token covering `show` (`"*"`: every show).
fn admin(app: &App, headers: &HeaderMap, show: &str) -> ApiResult<()> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match app.keys.authorize(h, show, &[Role::Admin]) {
        Ok(_) => Ok(()),
        Err(crate::auth::Error::Forbidden(_)) if show == "*" => Err(JsonError::new(
            StatusCode::FORBIDDEN,
            "this endpoint needs an admin token for every show (show \"*\")",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Admin token for the show in the path, and a well-formed show id.
fn admin_for_show(app: &App, headers: &HeaderMap, show: &str) -> ApiResult<()> {
    admin(app, headers, show)?;
    if valid_show_id(show) {
        Ok(())
    } else {
        Err(JsonError::bad_request(
            "show id must be 1-64 characters of A-Z a-z 0-9 - _",
        ))
    }
}

// ---- tokens ----------------------------------------------------------------------------------

/// Longest lifetime `POST /shows/{show}/tokens` issues: a publisher token for a show that runs
/// all day (OBS keeps one token and re-uses it on every reconnect).
const MAX_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// Body of `POST /shows/{show}/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    role: Role,
    sub: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// `POST /shows/{show}/tokens`: a publisher or viewer token for this show, so a platform
/// backend can hand a seller a fresh (or long-lived) publisher token without the CLI.
async fn create_token(
    State(app): State<Arc<App>>,
    Path(show): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    admin_for_show(&app, &headers, &show)?;
    let req: CreateToken = parse_json(&headers, &body)?;
    if req.role == Role::Admin {
        return Err(JsonError::bad_request(
            "role must be publisher or viewer; admin tokens come from `hawker token`",
        ));
    }
    if req.sub.is_empty() || req.sub.len() > 128 || req.sub.chars().any(char::is_control) {
        return Err(JsonError::bad_request(
            "sub must be 1-128 characters without control characters",
        ));
    }
    let ttl = req
        .ttl_secs
        .unwrap_or_else(|| app.cfg.auth.default_ttl.as_secs());
    if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
        return Err(JsonError::bad_request(format!(
            "ttl_secs must be 1-{MAX_TOKEN_TTL_SECS}"
        )));
    }
    let token = app.keys.issue(
        &req.sub,
        &show,
        req.role,
        std::time::Duration::from_secs(ttl),
    );
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + ttl)
        .unwrap_or(ttl);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "role": req.role,
            "sub": req.sub,
            "show": show,
            "expires_at": expires_at,
        })),
    )
        .into_response())
}

// ---- shows -----------------------------------------------------------------------------------

/// Body of `POST /shows`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateShow {
    #[serde(default)]
    id: Option<String>,
    title: String,
    #[serde(default)]
    scheduled_at: Option<i64>,
    #[serde(default)]
    video_codecs: Option<Vec<String>>,
}

fn parse_codec(name: &str) -> Option<Codec> {
    Codec::video_from_name(name)
}

/// A non-empty subset of {h264, vp8} in the given order (duplicates dropped), or the default.
fn parse_codecs(list: Option<Vec<String>>, default: &[Codec]) -> ApiResult<Vec<Codec>> {
    let Some(list) = list else {
        return Ok(default.to_vec());
    };
    if list.is_empty() {
        return Err(JsonError::bad_request(
            "video_codecs must name at least one codec (h264, vp8)",
        ));
    }
    let mut out = Vec::new();
    for name in &list {
        let c = parse_codec(name).ok_or_else(|| {
            JsonError::bad_request(format!("unknown video codec {name:?} (h264, vp8)"))
        })?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The codecs of a stored show for the media plane (the default when none is usable).
fn stored_codecs(app: &App, s: &commerce::Show) -> Vec<Codec> {
    let v: Vec<Codec> = s
        .video_codecs
        .iter()
        .filter_map(|c| parse_codec(c))
        .collect();
    if v.is_empty() {
        app.cfg.shows.default_video_codecs.clone()
    } else {
        v
    }
}

/// A show as the API returns it: the durable record plus the media plane's live view.
fn show_json(app: &App, s: &commerce::Show) -> Value {
    let (live, viewers, peak) = match app.registry.show(&s.id) {
        Some(l) => (
            l.live.load(Ordering::Relaxed),
            l.viewers.load(Ordering::Relaxed),
            l.peak_viewers.load(Ordering::Relaxed),
        ),
        None => (false, 0, 0),
    };
    json!({
        "id": s.id,
        "title": s.title,
        "scheduled_at": s.scheduled_at,
        "video_codecs": s.video_codecs,
        "state": s.state,
        "live": live,
        "viewers": viewers,
        "peak_viewers": peak.max(s.peak_viewers as usize),
        "created_at": s.created_at,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
    })
}

fn location(path: String) -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::LOCATION,
        HeaderValue::from_str(&path).unwrap_or_else(|_| HeaderValue::from_static("/api/v1")),
    )]
}

/// A URL path segment for an id that may hold reserved characters (skus).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `POST /shows`.
async fn create_show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    admin(&app, &headers, "*")?;
    let req: CreateShow = parse_json(&headers, &body)?;
    if let Some(id) = &req.id {
        if !valid_show_id(id) {
            return Err(JsonError::bad_request(
                "show id must be 1-64 characters of A-Z a-z 0-9 - _",
            ));
        }
    }
    let codecs = parse_codecs(req.video_codecs, &app.cfg.shows.default_video_codecs)?;
    let stored = app
        .store
        .create_show(NewShow {
            id: req.id,
            title: req.title,
            scheduled_at: req.scheduled_at,
            video_codecs: codecs.iter().map(|c| c.as_str().to_string()).collect(),
        })
        .await?;
    // The media plane uses the registry's codecs. A registry entry without a durable record
    // (left by an implicit show whose record failed) is replaced unless someone is connected.
    let busy = app.registry.show(&stored.id).is_some_and(|old| {
        old.publisher.lock().is_some() || old.viewers.load(Ordering::Relaxed) > 0
    });
    if !busy {
        app.registry
            .insert_show(Arc::new(crate::shows::Show::new(&stored.id, codecs)));
    }
    let body = show_json(&app, &stored);
    Ok((
        StatusCode::CREATED,
        location(format!("/api/v1/shows/{}", stored.id)),
        Json(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct ListShows {
    #[serde(default)]
    state: Option<String>,
}

/// `GET /shows[?state=scheduled|live|ended]`, newest first.
async fn list_shows(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListShows>,
) -> ApiResult<Json<Value>> {
    admin(&app, &headers, "*")?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(ShowState::parse(s).ok_or_else(|| {
            JsonError::bad_request(format!("unknown state {s:?} (scheduled, live, ended)"))
        })?),
    };
    let shows = app.store.shows(state).await?;
    let list: Vec<Value> = shows.iter().map(|s| show_json(&app, s)).collect();
    Ok(Json(json!({ "shows": list })))
}

async fn load_show(app: &App, id: &str) -> ApiResult<commerce::Show> {
    app.store
        .show(id)
        .await?
        .ok_or_else(|| JsonError::not_found(format!("no show {id:?}")))
}

/// `GET /shows/{show}`.
async fn get_show(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    let s = load_show(&app, &show).await?;
    Ok(Json(show_json(&app, &s)))
}

/// Clear the show's highlight, if any, telling viewers (`unhighlight`).
async fn clear_highlight(app: &App, show: &str, only_sku: Option<&str>) {
    let Some(h) = app.live.highlight(show) else {
        return;
    };
    if only_sku.is_some_and(|sku| sku != h.sku) {
        return;
    }
    let msg = Inbound::Unhighlight { capture_ms: None };
    if let Err((_, m)) = crate::live::seller_action(app, show, msg, Origin::Api).await {
        tracing::debug!(show, "clearing highlight: {m}");
    }
}

/// `POST /shows/{show}/end` (admin, or a publisher token of the show): state `ended` (webhook
/// `show.ended`), `show_ended` to viewers, publisher disconnected.
async fn end_show(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    // The seller ends their own show from the studio with the publisher token they went live
    // with; a platform backend uses an admin token.
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    app.keys
        .authorize(h, &show, &[Role::Admin, Role::Publisher])?;
    if !valid_show_id(&show) {
        return Err(JsonError::bad_request(
            "show id must be 1-64 characters of A-Z a-z 0-9 - _",
        ));
    }
    // Record the media plane's peak first, so the `show.ended` webhook carries it.
    let peak = app
        .registry
        .show(&show)
        .map_or(0, |l| l.peak_viewers.load(Ordering::Relaxed));
    if peak > 0 {
        let peak = u32::try_from(peak).unwrap_or(u32::MAX);
        if let Err(e) = app.store.record_viewers(&show, peak).await {
            tracing::debug!(show = %show, "peak viewers not recorded: {e}");
        }
    }
    let ended = app.store.set_show_state(&show, ShowState::Ended).await?;
    if app.registry.show(&show).is_some() {
        clear_highlight(&app, &show, None).await;
        let text = json!({"type": "show_ended", "ended_at": ended.ended_at}).to_string();
        crate::live::broadcast(&app, &show, "show_ended", text, Instant::now());
    }
    app.metrics.forget_show(&show);
    let publisher = app
        .registry
        .show(&show)
        .and_then(|l| l.publisher.lock().clone());
    if let Some(session) = publisher.and_then(|id| app.registry.session(&id)) {
        app.engine.remove_peer(session.shard, session.peer).await;
        app.session_gone(session.peer);
        tracing::info!(show = %show, "show ended: publisher disconnected");
    }
    Ok(Json(show_json(&app, &ended)))
}

/// `DELETE /shows/{show}`: 409 while a publisher is connected or the show is live.
async fn delete_show(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    admin_for_show(&app, &headers, &show)?;
    if let Some(l) = app.registry.show(&show) {
        if l.publisher.lock().is_some() || l.live.load(Ordering::Relaxed) {
            return Err(JsonError::conflict(format!(
                "show {show:?} has a publisher connected; end it first"
            )));
        }
    }
    app.store.delete_show(&show).await?;
    clear_highlight(&app, &show, None).await;
    app.registry.remove_show(&show);
    app.metrics.forget_show(&show);
    Ok(StatusCode::NO_CONTENT)
}

// ---- products --------------------------------------------------------------------------------

/// Body of `PUT /shows/{show}/products/{sku}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutProduct {
    /// Optional; must equal the sku in the path when present.
    #[serde(default)]
    sku: Option<String>,
    title: String,
    price: i64,
    currency: String,
    #[serde(default)]
    image_url: Option<String>,
    #[serde(default)]
    stock: Option<i64>,
}

/// `PUT /shows/{show}/products/{sku}`: 201 when created, 200 when replaced.
async fn put_product(
    State(app): State<Arc<App>>,
    ApiPath((show, sku)): ApiPath<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    admin_for_show(&app, &headers, &show)?;
    let req: PutProduct = parse_json(&headers, &body)?;
    if req.sku.as_ref().is_some_and(|s| *s != sku) {
        return Err(JsonError::bad_request(format!(
            "body sku {:?} differs from the sku in the path {sku:?}",
            req.sku.unwrap_or_default()
        )));
    }
    let existed = app.store.product(&show, &sku).await?.is_some();
    let product = app
        .store
        .upsert_product(
            &show,
            ProductSpec {
                sku: sku.clone(),
                title: req.title,
                price: req.price,
                currency: req.currency,
                image_url: req.image_url,
                stock: req.stock,
            },
        )
        .await?;
    let body = Json(json!(product));
    Ok(if existed {
        (StatusCode::OK, body).into_response()
    } else {
        (
            StatusCode::CREATED,
            location(format!(
                "/api/v1/shows/{show}/products/{}",
                segment(&product.sku)
            )),
            body,
        )
            .into_response()
    })
}

/// `GET /shows/{show}/products`, in the order they were first added.
async fn list_products(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    let products = app.store.products(&show).await?;
    Ok(Json(json!({ "products": products })))
}

/// `GET /shows/{show}/products/{sku}`.
async fn get_product(
    State(app): State<Arc<App>>,
    ApiPath((show, sku)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    match app.store.product(&show, &sku).await? {
        Some(p) => Ok(Json(json!(p))),
        None => {
            load_show(&app, &show).await?;
            Err(JsonError::not_found(format!(
                "no product {sku:?} in show {show:?}"
            )))
        }
    }
}

/// `DELETE /shows/{show}/products/{sku}`: its past orders stay; a highlight of it ends.
async fn delete_product(
    State(app): State<Arc<App>>,
    ApiPath((show, sku)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    admin_for_show(&app, &headers, &show)?;
    app.store.delete_product(&show, &sku).await?;
    clear_highlight(&app, &show, Some(&sku)).await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- events ----------------------------------------------------------------------------------

/// `POST /shows/{show}/events`: a seller message (highlight, unhighlight, price, stock, chat),
/// applied and fanned out exactly as if the seller had sent it on the data channel, stamped
/// with the newest video timestamp (`capture_ms` is not trusted from the API).
async fn post_event(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    require_json(&headers)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| JsonError::bad_request("body is not UTF-8"))?;
    let msg = protocol::parse(text).map_err(|r| event_error(r.code, r.message))?;
    if !protocol::is_seller_message(&msg) {
        return Err(event_error(
            ErrorCode::Invalid,
            format!(
                "{:?} is a viewer message; this endpoint takes highlight, unhighlight, price, \
                 stock or chat",
                protocol::type_name(&msg)
            ),
        ));
    }
    let stored = load_show(&app, &show).await?;
    if stored.state == ShowState::Ended {
        return Err(JsonError::conflict(format!("show {show:?} has ended")));
    }
    // A durable show always has a media-plane entry (e.g. after a failed implicit creation).
    app.registry
        .show_or_create(&show, &stored_codecs(&app, &stored));
    let v = crate::live::seller_action(&app, &show, msg, Origin::Api)
        .await
        .map_err(|(code, m)| event_error(code, m))?;
    Ok(Json(v))
}

// ---- orders ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct OrdersQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /shows/{show}/orders?after=<cursor>&limit=<n>`: confirmed orders, oldest first.
async fn list_orders(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<OrdersQuery>,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(JsonError::bad_request("after must be a cursor >= 0"));
    }
    let limit = q.limit.unwrap_or(DEFAULT_ORDER_PAGE);
    if !(1..=commerce::store::MAX_PAGE).contains(&limit) {
        return Err(JsonError::bad_request(format!(
            "limit must be between 1 and {}",
            commerce::store::MAX_PAGE
        )));
    }
    load_show(&app, &show).await?;
    let (orders, next) = app.store.orders_after(&show, after, limit).await?;
    Ok(Json(json!({ "orders": orders, "next_cursor": next })))
}

/// `GET /shows/{show}/orders/{order_id}`.
async fn get_order(
    State(app): State<Arc<App>>,
    ApiPath((show, order_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    match app.store.order(&show, &order_id).await? {
        Some(o) => Ok(Json(json!(o))),
        None => Err(JsonError::not_found(format!(
            "no order {order_id:?} in show {show:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_default_dedupe_and_reject() {
        let d = [Codec::H264, Codec::Vp8];
        assert_eq!(parse_codecs(None, &d).unwrap(), d.to_vec());
        assert_eq!(
            parse_codecs(Some(vec!["VP8".into(), "vp8".into()]), &d).unwrap(),
            vec![Codec::Vp8]
        );
        assert!(parse_codecs(Some(vec![]), &d).is_err());
        assert!(parse_codecs(Some(vec!["av1".into()]), &d).is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("lamp-1"), "lamp-1");
        assert_eq!(segment("a b:c"), "a%20b%3Ac");
    }

    #[test]
    fn event_codes_map_to_statuses() {
        assert_eq!(
            event_error(ErrorCode::NotFound, String::new()).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            event_error(ErrorCode::Invalid, String::new()).status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            event_error(ErrorCode::UnknownType, String::new()).code,
            "unknown_type"
        );
    }
}

// ---- recordings ------------------------------------------------------------------------------

/// `GET /recordings`: every show with recorded media.
async fn list_recordings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    admin(&app, &headers, "*")?;
    let lib = app.recordings.clone();
    let list = tokio::task::spawn_blocking(move || lib.list())
        .await
        .unwrap_or_default();
    let items: Vec<Value> = list
        .into_iter()
        .map(|r| {
            let live = app
                .registry
                .show(&r.show)
                .is_some_and(|s| s.live.load(Ordering::Relaxed));
            json!({"show": r.show, "bytes": r.bytes, "modified": r.modified, "live": live})
        })
        .collect();
    Ok(Json(json!({ "recordings": items })))
}

/// Body of `PUT /shows/{show}/recording`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingSettings {
    enabled: bool,
}

/// `PUT /shows/{show}/recording`: whether the show's next publisher session is recorded.
async fn put_recording(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    admin_for_show(&app, &headers, &show)?;
    let body: RecordingSettings = parse_json(&headers, &body)?;
    load_show(&app, &show).await?;
    let settings = crate::recording::ShowSettings {
        enabled: body.enabled,
    };
    app.recordings
        .set_settings(&show, settings)
        .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(recording_json(&app, &show)))
}

fn recording_json(app: &App, show: &str) -> Value {
    json!({
        "show": show,
        "enabled": app.records(show),
        "has_recording": app.recordings.has_media(show),
    })
}

/// The show, known and not live, with recorded media: else 404 / 409 / 404.
async fn ended_recording(app: &App, show: &str) -> ApiResult<()> {
    load_show(app, show).await?;
    if app
        .registry
        .show(show)
        .is_some_and(|s| s.live.load(Ordering::Relaxed))
    {
        return Err(JsonError::conflict(format!(
            "show {show:?} is live; its recording is available once it ends"
        )));
    }
    if !app.recordings.has_media(show) {
        return Err(JsonError::not_found(format!(
            "show {show:?} has no recording"
        )));
    }
    Ok(())
}

/// Read a show's recording on a blocking thread, after syncing what the writer holds.
async fn load_recording(
    app: &Arc<App>,
    show: &str,
) -> ApiResult<(
    Vec<crate::recording::file::Packet>,
    Vec<crate::recording::file::Event>,
)> {
    let a = app.clone();
    let show: Arc<str> = Arc::from(show);
    tokio::task::spawn_blocking(move || a.load_recording(&show))
        .await
        .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn export_error(e: crate::recording::export::Error) -> JsonError {
    match e {
        crate::recording::export::Error::NoVideo => JsonError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the recording has no complete video keyframe",
        ),
        other => JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `GET /shows/{show}/recording`: the show as WebM (VP8) or MP4 (H.264), with Opus.
async fn export_recording(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    admin_for_show(&app, &headers, &show)?;
    ended_recording(&app, &show).await?;
    let (pkts, events) = load_recording(&app, &show).await?;
    let (bytes, summary) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        crate::recording::export::write(&pkts, &events, &mut out).map(|s| (out, s))
    })
    .await
    .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(export_error)?;
    app.metrics.recording_exports.inc();
    let ext = if summary.video_codec == "h264" {
        "mp4"
    } else {
        "webm"
    };
    let disposition = format!("attachment; filename=\"{show}.{ext}\"");
    let mut resp = (StatusCode::OK, Bytes::from(bytes)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(summary.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", summary.duration)) {
        h.insert("x-hawker-duration", v);
    }
    Ok(resp)
}

/// Query of `GET /shows/{show}/recording/chapters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChaptersQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /shows/{show}/recording/chapters[?format=vtt]`: every highlight with its time in
/// seconds from the start of the export, as JSON (default) or WebVTT.
async fn recording_chapters(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ChaptersQuery>,
) -> ApiResult<Response> {
    admin_for_show(&app, &headers, &show)?;
    let vtt = match q.format.as_deref() {
        None | Some("json") => false,
        Some("vtt") => true,
        Some(other) => {
            return Err(JsonError::bad_request(format!(
                "format {other:?} is not json or vtt"
            )))
        }
    };
    ended_recording(&app, &show).await?;
    let (pkts, events) = load_recording(&app, &show).await?;
    let (chapters, duration) = tokio::task::spawn_blocking(move || {
        let mut sink = std::io::sink();
        crate::recording::export::write(&pkts, &events, &mut sink).map(|s| (s.chapters, s.duration))
    })
    .await
    .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(export_error)?;
    if vtt {
        let text = crate::recording::export::webvtt(&chapters, duration);
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/vtt"))],
            text,
        )
            .into_response());
    }
    Ok(Json(json!({"show": show, "duration": duration, "chapters": chapters})).into_response())
}

/// `DELETE /shows/{show}/recording`: 409 while live, 404 when there is none.
async fn delete_recording(
    State(app): State<Arc<App>>,
    ApiPath(show): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    admin_for_show(&app, &headers, &show)?;
    ended_recording(&app, &show).await?;
    let a = app.clone();
    let s: Arc<str> = Arc::from(show.as_str());
    let found = tokio::task::spawn_blocking(move || {
        a.recorder
            .close(Some(s.clone()), std::time::Duration::from_secs(5));
        a.recordings.delete(&s)
    })
    .await
    .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(JsonError::not_found(format!(
            "show {show:?} has no recording"
        )))
    }
}
