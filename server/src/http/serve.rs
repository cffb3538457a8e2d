//! Serving the router on the hub's listener with the limits `axum::serve`
//! cannot set: each connection must send a request's headers within
//! `http.header_read_timeout_secs` (of opening, or of its previous
//! request), or it is closed, so half-sent requests cannot hold descriptors;
//! `TCP_NODELAY` on every connection (small frames otherwise wait up to
//! ~40 ms for an ACK, see docs/benchmarks.md); the peer's address on every
//! request (`ConnectInfo`), for the per-address connection cap. Accepting
//! stops when `stop` is cancelled; the returned future then waits for open
//! HTTP exchanges (not upgraded WebSocket connections, which the sessions'
//! own shutdown closes).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Pause after an accept error (out of descriptors, say) before the next
/// accept, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Turns Nagle's algorithm off on an accepted connection. Without it, a
/// small frame waits while an earlier one is unacknowledged, and a peer
/// that delays its acknowledgement (up to 40 ms on Linux) delays the frame
/// with it: an `ok` written right after another `ok` on a provider's busy
/// connection waited about 20 ms that way. A connection whose option cannot
/// be set is served anyway.
pub fn without_nagle<A>((stream, peer): (TcpStream, A)) -> (TcpStream, A) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(error = %error, "TCP_NODELAY not set on an accepted connection");
    }
    (stream, peer)
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits for
/// open HTTP exchanges to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted.map(without_nagle) {
            Ok(accepted) => accepted,
            Err(error) => {
                metrics::counter!("consult_accept_errors_total").increment(1);
                tracing::warn!(error = %error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's timer starts once it knows the HTTP version, which it
            // learns from the first bytes: a connection that sends nothing
            // is closed here.
            let mut first = [0_u8; 1];
            if tokio::time::timeout(header_read_timeout, stream.peek(&mut first))
                .await
                .is_err()
            {
                metrics::counter!("consult_http_header_timeouts_total").increment(1);
                return;
            }
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    tower::ServiceExt::oneshot(router.clone(), request)
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
