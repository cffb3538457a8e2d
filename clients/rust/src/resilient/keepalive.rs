//! The liveness probe: a `ping` every interval on the current connection.
//! A ping that times out means the peer is gone without the operating
//! system noticing (a dead NAT mapping, a suspended laptop), so the probe
//! closes the connection and the supervisor reconnects.

use crate::client::Client;
use crate::error::ClientError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// A running probe; dropping it stops the probe.
#[derive(Debug)]
pub(crate) struct Keepalive {
    task: JoinHandle<()>,
    stale: Arc<AtomicBool>,
}

impl Keepalive {
    pub(crate) fn spawn(client: Arc<Client>, every: Duration) -> Self {
        let stale = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(probe(client, every, stale.clone()));
        Self { task, stale }
    }

    /// True once a ping went unanswered and the probe closed the connection.
    pub(crate) fn found_stale(&self) -> bool {
        // Set before the close that ends the connection; the supervisor
        // reads it after seeing that end.
        self.stale.load(Ordering::Acquire)
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn probe(client: Arc<Client>, every: Duration, stale: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(every).await;
        match client.ping().await {
            // A refusal (`rate_limited`) still proves the hub is there.
            Ok(_) | Err(ClientError::Command { .. }) => {}
            Err(ClientError::Timeout) => {
                warn!("keepalive ping unanswered; dropping the connection");
                stale.store(true, Ordering::Release);
                client.close().await;
                return;
            }
            Err(error) => {
                debug!(error = %error, "keepalive stopped");
                return;
            }
        }
    }
}
