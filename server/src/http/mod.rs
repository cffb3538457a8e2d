//! The axum router: the WebSocket upgrade at `/v1/ws`, the REST API for the
//! host platform under `/v1/`, health, readiness and metrics, and the static
//! web console. Nothing else in the crate imports this module.

mod api;
mod error;
mod extract;
mod health;
mod notify_api;
mod platform_messages;
mod presence_api;
mod revocation_api;
pub mod serve;
mod ws;

pub use error::ApiError;

use crate::app::AppState;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

/// Builds the whole router.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/ws", get(ws::upgrade))
        .nest(
            "/v1",
            api::routes()
                .merge(notify_api::routes())
                .merge(presence_api::routes())
                .merge(platform_messages::routes())
                .merge(revocation_api::routes()),
        );
    if let Some(dir) = &state.config.web.static_dir {
        router = router
            .nest_service("/console", ServeDir::new(dir.join("console")))
            .nest_service("/patient", ServeDir::new(dir.join("patient")));
    }
    if let Some(dir) = &state.config.web.sdk_dir {
        router = router.nest_service("/sdk", ServeDir::new(dir));
    }
    router
        .fallback(error::not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
