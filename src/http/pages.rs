//! Pages and the JavaScript SDK, embedded in the binary: `/`, `/studio/{show}`,
//! `/watch/{show}`, `/sdk/*`.

use std::sync::Arc;

use axum::Router;

use super::App;

/// Routes at the root.
pub fn router() -> Router<Arc<App>> {
    Router::new()
}
