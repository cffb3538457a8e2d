//! The WebSocket upgrade: explicit size limits and small buffers, then hand
//! the socket to `session`. Tokens are never read from the URL.

use crate::app::AppState;
use crate::connection_slots::Refused;
use crate::session;
use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) async fn upgrade(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.is_ready() {
        return super::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the hub is shutting down; connect to another node",
        )
        .into_response();
    }
    let address = peer.map(|Extension(ConnectInfo(peer))| peer.ip());
    let slot = match state.connection_slots.take(address) {
        Ok(slot) => slot,
        Err(refused) => return refusal(refused).into_response(),
    };
    let limits = &state.config.session;
    upgrade
        .max_message_size(limits.hard_message_bytes)
        .max_frame_size(limits.hard_message_bytes)
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        .max_write_buffer_size(limits.write_ceiling_bytes())
        .on_upgrade(move |socket| async move { session::spawn(socket, state, slot) })
}

/// The answer to an upgrade past a connection cap, logged and counted.
fn refusal(refused: Refused) -> super::ApiError {
    let (status, code, message) = match refused {
        Refused::NodeFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this node holds as many connections as it may; connect to another node or retry later",
        ),
        Refused::AddressFull => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections_from_address",
            "too many connections from this address; close one or retry later",
        ),
    };
    metrics::counter!("consult_connections_refused_total", "code" => code).increment(1);
    tracing::warn!(code, "WebSocket upgrade refused at a connection cap");
    super::ApiError::new(status, code, message)
}
