//! `/healthz` (the process is up), `/readyz` (send traffic here) and
//! `/metrics` (Prometheus text).

use crate::app::AppState;
use crate::broker::BrokerHealth;
use crate::supervisor::WorkerState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;

pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 503 while shutting down, when the database is unreachable, while a
/// background worker waits to be restarted (`workers` names each worker's
/// state), or while another running node uses this node's id. A degraded broker is reported but stays 200: local rooms are
/// still served.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let accepting = state.is_ready();
    let database = state.store.ping().await;
    let broker = match state.broker.health() {
        BrokerHealth::Healthy => "healthy",
        BrokerHealth::Degraded => "degraded",
    };
    let workers: serde_json::Map<String, serde_json::Value> = state
        .workers
        .states()
        .into_iter()
        .map(|(worker, worker_state)| {
            let shown = match worker_state {
                WorkerState::Running => "running",
                WorkerState::Restarting => "restarting",
            };
            (worker.name().to_owned(), shown.into())
        })
        .collect();
    let workers_running = state.workers.all_running();
    let node_id_shared = state.presence.node_id_in_use_elsewhere();
    let ready = accepting && database && workers_running && !node_id_shared;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else if accepting { "unavailable" } else { "draining" },
        "database": if database { "ok" } else { "down" },
        "broker": broker,
        "node_id": if node_id_shared { "duplicate" } else { "ok" },
        "workers": workers,
    });
    (status, Json(body))
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
