//! HTTP errors: one enum, one mapping to status codes, one-line plain-text bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything an HTTP handler can refuse with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: understood, but nothing usable (e.g. no common codec).
    #[error("{0}")]
    Unprocessable(String),
    /// 429, with `Retry-After` in seconds.
    #[error("{0}")]
    TooManyRequests(String, u32),
    /// 503.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::auth::Error> for ApiError {
    fn from(e: crate::auth::Error) -> Self {
        match e {
            crate::auth::Error::Forbidden(m) => ApiError::Forbidden(m),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

impl From<crate::engine::Error> for ApiError {
    fn from(e: crate::engine::Error) -> Self {
        use crate::engine::Error as E;
        match e {
            E::Offer(m) => ApiError::BadRequest(format!("offer rejected: {m}")),
            E::NoCodec(m) => {
                ApiError::Unprocessable(format!("offer has no codec this show can use: {m}"))
            }
            E::Unsupported(m) => ApiError::Unprocessable(format!("offer not supported: {m}")),
            E::Full => ApiError::Unavailable("server at capacity".into()),
            E::ShuttingDown => ApiError::Unavailable("server shutting down".into()),
            E::ShardDown(i) => ApiError::Unavailable(format!("media shard {i} has stopped")),
            E::Failed => ApiError::Internal("the session could not be started".into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests(_, secs) => Some(*secs),
            _ => None,
        };
        let mut line = self.to_string().replace(['\r', '\n'], " ");
        line.push('\n');
        let mut resp = (status, line).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
