//! The REST API under `/api/v1` (admin token): shows, products, events, orders.

use std::sync::Arc;

use axum::Router;

use super::App;

/// Routes, nested under `/api/v1`.
pub fn router() -> Router<Arc<App>> {
    Router::new()
}
