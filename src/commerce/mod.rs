//! The durable commerce core: shows, their catalogue and inventory, idempotent orders, and the
//! webhook outbox.
//!
//! This module tree owns everything a live-shopping purchase touches between "the viewer tapped
//! Buy" and "the platform was told". It depends on no other part of hawker, so the HTTP API, the
//! data-channel handlers and the load tests all drive the same state machine.
//!
//! ```text
//!  HTTP / data channel ──OrderRequest──► store::Store ──channel──► writer thread (owns the write
//!                       ◄──OrderResult── (oneshot, after COMMIT)     connection; group commit)
//!                                                                        │ same transaction
//!                                      stock mirror ◄── after commit ───┤ orders + outbox rows
//!                                                                        ▼
//!                                               webhooks::Worker ──POST, signed, retried──► platform
//! ```
//!
//! The invariants, each enforced in exactly one place:
//! - **Stock never goes negative.** A reservation is one `UPDATE … WHERE stock >= qty`, executed
//!   by the single writer; the schema's `CHECK (stock >= 0)` backs it up.
//! - **Orders are idempotent** by `(show, viewer, request_id)`: a repeat gets the first answer,
//!   whether the first attempt was confirmed, sold out or rejected, and whether the repeat comes
//!   in a later batch, the same batch, or after a restart.
//! - **Acknowledged means durable.** A caller hears about an order only after the transaction
//!   holding it has committed (see [`store`] for the fsync argument).
//! - **Webhooks are at-least-once.** The event row is written in the same transaction as the fact
//!   it reports; [`webhooks`] delivers it until each endpoint answers 2xx.
//!
//! Rate limiting per viewer is a pure token bucket in [`limit`], for the caller to apply before
//! submitting an order.

pub mod limit;
mod model;
pub mod store;
pub mod webhooks;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use limit::RateLimiter;
pub use model::{
    Event, NewShow, Order, OrderRequest, OrderResult, OrderStatus, Product, ProductSpec, Show,
    ShowState, ShowUpdate, StockChange,
};
pub use store::{Pending, PendingOrder, Store};

/// Everything that can go wrong in the commerce core.
///
/// [`Error::http_status`] maps each case to the status an HTTP handler should answer with; an
/// order that is sold out or rejected is *not* an error, it is an [`OrderResult`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named show, product or order does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request contradicts the current state (duplicate id, illegal state transition).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is malformed (bad id, negative price, unknown currency format).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The writer's queue is full: shed load, ask the client to retry.
    #[error("commerce store is overloaded")]
    Busy,
    /// The store was closed; no further writes are accepted.
    #[error("commerce store is closed")]
    Closed,
    /// SQLite failed (I/O error, disk full, corrupt file). Nothing in the failed transaction was
    /// acknowledged.
    #[error("storage: {0}")]
    Storage(#[source] Arc<rusqlite::Error>),
    /// A bug: a writer job panicked or a blocking read task died.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status code this error should be reported with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::Invalid(_) => 400,
            Error::Busy | Error::Closed => 503,
            Error::Storage(_) | Error::Internal(_) => 500,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(Arc::new(e))
    }
}

/// Shorthand for results in this module tree.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch: the one time unit stored by the commerce core.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
