//! The WebSocket upgrade: explicit size limits and small buffers, then hand
//! the socket to `session`. Tokens are never read from the URL.

use crate::app::AppState;
use crate::session;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn upgrade(
    State(state): State<Arc<AppState>>,
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
    let limits = &state.config.session;
    upgrade
        .max_message_size(limits.hard_message_bytes)
        .max_frame_size(limits.hard_message_bytes)
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        .max_write_buffer_size(limits.hard_message_bytes.saturating_mul(4))
        .on_upgrade(move |socket| async move { session::spawn(socket, state) })
}
