//! `/healthz` (the process is up), `/readyz` (send traffic here) and
//! `/metrics` (Prometheus text).

use crate::app::AppState;
use crate::broker::BrokerHealth;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;

pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 503 while shutting down or when the database is unreachable. A degraded
/// broker is reported but stays 200: local rooms are still served.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let accepting = state.is_ready();
    let database = state.store.ping().await;
    let broker = match state.broker.health() {
        BrokerHealth::Healthy => "healthy",
        BrokerHealth::Degraded => "degraded",
    };
    let ready = accepting && database;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else if accepting { "unavailable" } else { "draining" },
        "database": if database { "ok" } else { "down" },
        "broker": broker,
    });
    (status, Json(body))
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
