//! The axum router: the WebSocket upgrade at `/v1/ws`, the REST API for the
//! host platform under `/v1/`, health, readiness and metrics, and the static
//! web console. Nothing else in the crate imports this module.

mod api;
mod error;
mod extract;
mod health;
mod history_api;
mod notify_api;
mod openapi;
mod paging;
mod platform_messages;
mod presence_api;
mod revocation_api;
pub mod serve;
mod templates_api;
mod token_api;
mod ws;

pub use error::ApiError;

use crate::app::AppState;
use axum::routing::get;
use axum::{Extension, Router};
use std::sync::Arc;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Builds the whole router.
pub fn router(state: Arc<AppState>) -> Router {
    let (v1, document) = documented_routes();
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/ws", get(ws::upgrade))
        .merge(v1.layer(Extension(openapi::Served::new(&document))));
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
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The REST API under `/v1/` (every route documented by construction:
/// each is registered with its `#[utoipa::path]`), and its OpenAPI
/// document.
fn documented_routes() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let v1 = api::routes()
        .merge(history_api::routes())
        .merge(token_api::routes())
        .merge(templates_api::routes())
        .merge(notify_api::routes())
        .merge(presence_api::routes())
        .merge(platform_messages::routes())
        .merge(revocation_api::routes())
        .routes(routes!(openapi::get_openapi));
    let (router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/v1", v1)
        .split_for_parts();
    openapi::finish(&mut document);
    (router, document)
}

/// The OpenAPI document of the REST API, as `GET /v1/openapi.json`
/// serves it (pretty-printed JSON).
pub fn openapi_json() -> String {
    openapi::Served::new(&documented_routes().1)
        .0
        .as_str()
        .to_owned()
}
