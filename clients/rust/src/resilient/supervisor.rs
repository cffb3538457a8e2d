//! The supervisor task behind a [`crate::ResilientClient`]: it pumps the
//! current connection's events to the caller (dropping duplicate messages),
//! and when the connection ends it reconnects with backoff and restores
//! rooms and the dashboard before requests flow again.
//!
//! It is the only writer of the caller's events queue, so everything the
//! caller reads is in one order. It never decides what the caller's
//! commands mean; those record their intent in the tracker.

use super::config::Backoff;
use super::connector::Connect;
use super::event::{ConnectionState, ResilientEvent, Stats};
use super::keepalive::Keepalive;
use super::refresher::Refresher;
use super::shared::{Link, Shared};
use crate::client::Client;
use crate::connection::{CloseInfo, ClosedBy};
use crate::error::ClientError;
use consult_protocol::{CloseCode, ServerFrame};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info};

/// Why a reconnect attempt failed.
enum Failure {
    /// Try again after the next backoff.
    Retry(ClientError),
    /// Stop reconnecting.
    Final(CloseInfo),
}

#[derive(Debug)]
pub(crate) struct Supervisor<C> {
    pub(crate) connector: C,
    pub(crate) shared: Arc<Shared>,
    pub(crate) link_tx: watch::Sender<Link>,
    pub(crate) state_tx: watch::Sender<ConnectionState>,
    pub(crate) events_tx: mpsc::Sender<ResilientEvent>,
    /// Turns true on `close`; its sender is dropped with the handle.
    pub(crate) closing_rx: watch::Receiver<bool>,
    pub(crate) backoff: Backoff,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) refresh_before: Option<Duration>,
}

impl<C: Connect> Supervisor<C> {
    /// Runs until the caller closes (or drops) the client or reconnecting
    /// stops, then publishes the final state.
    pub(crate) async fn run(self, first: Arc<Client>) {
        let mut closing_rx = self.closing_rx.clone();
        // Cancelling `supervise` drops any connection it was restoring,
        // which closes that connection normally in the background.
        let ended = tokio::select! {
            info = self.supervise(first) => Some(info),
            () = caller_closed(&mut closing_rx) => None,
        };
        let info = match ended {
            Some(info) => info,
            None => self.close_current().await,
        };
        info!(%info, "resilient client closed");
        self.link_tx.send_replace(Link::Closed(info.clone()));
        let state = ConnectionState::Closed(info);
        self.state_tx.send_replace(state.clone());
        // The caller may have stopped reading; the state watch says it too.
        if self
            .events_tx
            .try_send(ResilientEvent::State(state))
            .is_err()
        {
            debug!("final state not queued: events queue full or gone");
        }
    }

    async fn supervise(&self, first: Arc<Client>) -> CloseInfo {
        let mut client = first;
        // Attempts since the last connection that stayed up long enough;
        // the backoff grows with it.
        let mut streak = 0u32;
        loop {
            let up_since = Instant::now();
            let info = self.serve(&client).await;
            self.link_tx.send_replace(Link::Down);
            if !reconnects_after(&info) {
                return info;
            }
            if up_since.elapsed() >= self.backoff.stable_after {
                streak = 0;
            }
            info!(%info, "connection lost; reconnecting");
            self.set_state(ConnectionState::Disconnected(info)).await;
            client = match self.reconnect(&mut streak).await {
                Ok(client) => client,
                Err(info) => return info,
            };
        }
    }

    /// Delivers the connection's events until it ends; says how it ended.
    async fn serve(&self, client: &Arc<Client>) -> CloseInfo {
        let keepalive = self
            .keepalive
            .map(|every| Keepalive::spawn(client.clone(), every));
        let mut refresher = self
            .refresh_before
            .and_then(|before| Refresher::new(client.welcome(), before));
        loop {
            let next_refresh = refresher.as_ref().map(Refresher::due);
            tokio::select! {
                frame = client.next_event() => match frame {
                    Some(frame) => self.forward(frame).await,
                    None => break,
                },
                () = super::refresher::sleep_until(next_refresh) => {
                    if let Some(refresher) = refresher.as_mut() {
                        refresher.refresh(client, &self.connector).await;
                    }
                }
            }
        }
        if keepalive.as_ref().is_some_and(Keepalive::found_stale) {
            return CloseInfo::network("no answer to a keepalive ping in time");
        }
        client.closed().await
    }

    async fn reconnect(&self, streak: &mut u32) -> Result<Arc<Client>, CloseInfo> {
        let mut last_error: Option<String> = None;
        let mut attempt = 0u32;
        loop {
            if let Some(max) = self.backoff.max_attempts {
                if attempt >= max {
                    let error = last_error.unwrap_or_default();
                    let reason = format!("gave up after {max} reconnect attempts: {error}");
                    return Err(CloseInfo::network(reason));
                }
            }
            attempt = attempt.saturating_add(1);
            *streak = streak.saturating_add(1);
            let delay = self.backoff.delay(*streak, rand::random::<f64>());
            let state = ConnectionState::Reconnecting {
                attempt,
                delay,
                last_error: last_error.clone(),
            };
            self.set_state(state).await;
            tokio::time::sleep(delay).await;
            Stats::bump(&self.shared.stats.attempts);
            match self.attempt().await {
                Ok(client) => return Ok(client),
                Err(Failure::Final(info)) => return Err(info),
                Err(Failure::Retry(error)) => {
                    debug!(attempt, error = %error, "reconnect attempt failed");
                    last_error = Some(error.to_string());
                }
            }
        }
    }

    /// One attempt: connect, then restore rooms and dashboard.
    async fn attempt(&self) -> Result<Arc<Client>, Failure> {
        let (client, welcome) = match self.connector.connect().await {
            Ok(opened) => opened,
            Err(ClientError::Rejected {
                code,
                message,
                close_code,
            }) => {
                return Err(Failure::Final(CloseInfo {
                    by: ClosedBy::Hub,
                    code: close_code,
                    reason: format!("{code}: {message}"),
                }));
            }
            Err(error) => return Err(Failure::Retry(error)),
        };
        let client = Arc::new(client);
        self.resume(&client).await.map_err(Failure::Retry)?;
        Stats::bump(&self.shared.stats.resumed);
        info!(conn_id = %welcome.conn_id, "resumed");
        self.set_state(ConnectionState::Resumed(welcome)).await;
        Ok(client)
    }

    /// Closes the connection for the caller and hands over what it still
    /// had, without waiting for a caller that stopped reading.
    async fn close_current(&self) -> CloseInfo {
        let link = self.link_tx.borrow().clone();
        match link {
            Link::Up(client) => {
                let info = client.close().await;
                while let Some(frame) = client.next_event().await {
                    let admitted = self.shared.tracker().admit(&frame);
                    if admitted
                        && self
                            .events_tx
                            .try_send(ResilientEvent::Frame(frame))
                            .is_err()
                    {
                        debug!("event dropped at close: events queue full");
                    }
                }
                info
            }
            Link::Down => CloseInfo {
                by: ClosedBy::Client,
                code: None,
                reason: "closed while reconnecting".to_owned(),
            },
            Link::Closed(info) => info,
        }
    }

    pub(super) async fn forward(&self, frame: ServerFrame) {
        let admitted = self.shared.tracker().admit(&frame);
        if admitted {
            self.emit(ResilientEvent::Frame(frame)).await;
        } else {
            Stats::bump(&self.shared.stats.duplicates_dropped);
        }
    }

    async fn set_state(&self, state: ConnectionState) {
        self.state_tx.send_replace(state.clone());
        self.emit(ResilientEvent::State(state)).await;
    }

    /// Queues an event, waiting for room: nothing is dropped, and a caller
    /// that stops reading stalls the client (the hub then closes the
    /// connection as a slow consumer).
    pub(super) async fn emit(&self, event: ResilientEvent) {
        if self.events_tx.send(event).await.is_err() {
            debug!("event dropped: the resilient client is gone");
        }
    }
}

/// Every end but an authentication failure is worth a reconnect; a close
/// the caller asked for never reaches this check.
fn reconnects_after(info: &CloseInfo) -> bool {
    !(info.by == ClosedBy::Hub && info.code == Some(CloseCode::AuthFailed.code()))
}

/// Resolves when the caller closes or drops the client.
async fn caller_closed(closing_rx: &mut watch::Receiver<bool>) {
    // An error means the sender (the handle) is gone: treat as closing.
    let _closing = closing_rx.wait_for(|closing| *closing).await;
}
