//! One WebSocket connection: handshake, then one task that owns the socket.
//!
//! [`spawn`] runs the connection on the app's task tracker. The handshake
//! ([`handshake::PendingSession`]) waits for `hello` under a timeout and
//! consumes itself into a [`connection::Session`], whose loop selects over
//! what ends it from outside (the shutdown, slow-consumer and revocation
//! tokens, chained in [`ending`] so that one wait covers them), the token's
//! expiry, the bounded outbound queue, inbound frames and the heartbeat
//! tick. Every exit runs the same cleanup.
//!
//! The loop is generic over the socket's `Stream`/`Sink`, so tests can drive
//! it with channels. It must not import `http`.

pub mod commands;
pub mod connection;
mod ending;
pub mod handshake;
mod notify_commands;
pub mod rate_limit;
mod rooms;
pub mod socket;
mod token_life;

use crate::app::AppState;
use axum::extract::ws::{Message, WebSocket};
use futures_util::future::OptionFuture;
use futures_util::{FutureExt, Sink, Stream};
use std::future::Future;
use std::sync::Arc;

/// Runs a freshly upgraded connection on the app's task tracker, holding
/// `slot` (its place under the connection caps) until it ends.
pub fn spawn<T: Send + 'static>(socket: WebSocket, state: Arc<AppState>, slot: T) {
    let tracker = state.tracker.clone();
    tracker.spawn(run(socket, state).map(move |()| drop(slot)));
}

/// Handshake, then the session loop, then cleanup.
///
/// Built from combinators rather than as an `async fn`: an `async fn` would
/// keep room for the authenticated [`connection::Session`] next to the
/// session loop's future that it moved into, for the whole connection. The
/// handshake's future is boxed for the same reason: it is dropped once the
/// session starts.
pub fn run<S>(socket: S, state: Arc<AppState>) -> impl Future<Output = ()> + Send
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    metrics::counter!("consult_connections_total").increment(1);
    let pending = handshake::PendingSession::new(socket, state);
    Box::pin(pending.authenticate())
        .then(|session| OptionFuture::from(session.map(connection::Session::run)))
        .map(|_: Option<()>| ())
}
