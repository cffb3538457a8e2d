//! [`ResilientClient`]: an opt-in layer over [`Client`] that reconnects
//! and resumes.
//!
//! Before the connection's token expires it sends `refresh` with a fresh
//! token from its [`TokenProvider`], so the hub never closes it for expiry.
//! After a network drop or any hub close but 4001 (authentication failed),
//! it reconnects with jittered exponential backoff, sends `hello` with a
//! fresh token from its [`TokenProvider`], joins every room again with
//! `since` = the last sequence number delivered to the caller, and watches
//! the dashboard again. `message` frames reach the caller once each, in
//! order, across reconnects. A close the caller asks for is final.
//!
//! While disconnected, commands fail with [`ClientError::Disconnected`]
//! (retryable), except the idempotent ones (`send`, `quick_message`,
//! `alert`, identified by their `client_msg_id`), which wait for the next
//! connection and are sent again. State changes arrive in order with the
//! events as [`ResilientEvent::State`] and through
//! [`ResilientClient::state_changes`].
//!
//! # Layout
//!
//! - `config`: [`ResilientConfig`], [`Backoff`].
//! - `event`: [`ResilientEvent`], [`ConnectionState`], [`ResilientStats`].
//! - `commands`: the commands, recording rooms and watches in the tracker.
//! - `supervisor`: the task that pumps events and reconnects.
//! - `resume`: restoring rooms and dashboard on a new connection.
//! - `tracker`: rooms, cursors and the watch to restore.
//! - `connector`: [`TokenProvider`] and the connection seam for tests.
//! - `keepalive`: the ping that detects dead connections.
//! - `refresher`: the in-band `refresh` before the token expires.
//! - `shared`: what the handle and the task share.

mod commands;
mod config;
mod connector;
mod event;
mod keepalive;
mod refresher;
mod resume;
mod shared;
mod supervisor;
mod tracker;

pub use config::{
    BACKOFF_BASE, BACKOFF_JITTER, BACKOFF_MAX, Backoff, KEEPALIVE_INTERVAL, REFRESH_BEFORE,
    RETRY_TIMEOUT, ResilientConfig, STABLE_AFTER,
};
pub use connector::TokenProvider;
pub use event::{ConnectionState, ResilientEvent, ResilientStats};

use crate::client::Client;
use crate::connection::CloseInfo;
use crate::error::ClientError;
use crate::handshake::Welcome;
use connector::{Connect, WsConnector};
use shared::{Link, Shared};
use std::sync::Arc;
use std::time::Duration;
use supervisor::Supervisor;
use tokio::sync::{Mutex, mpsc, watch};
use tracing::Instrument;

/// A connection to the hub that survives reconnects. Every method takes
/// `&self`, so it can be shared (in an `Arc`) between a task reading events
/// and tasks sending commands. Dropping it closes the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), consult_client::ClientError> {
/// use consult_client::{ResilientClient, ResilientConfig, ResilientEvent};
/// use consult_protocol::{ConsultationId, Seq};
///
/// let url = "ws://127.0.0.1:8080/v1/ws";
/// // A closure is asked for a fresh token before every reconnect.
/// let tokens = || async { Ok::<_, consult_client::ClientError>("jwt".to_owned()) };
/// let (client, _welcome) = ResilientClient::connect(url, tokens, ResilientConfig::default()).await?;
/// let consultation = ConsultationId::from("k1");
/// client.join(&consultation, Some(Seq(0))).await?;
/// client.send(&consultation, "m-1", "hello").await?; // retried across reconnects
/// while let Some(event) = client.next_event().await {
///     match event {
///         ResilientEvent::Frame(frame) => println!("{frame:?}"),
///         ResilientEvent::State(state) => eprintln!("{state}"),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ResilientClient {
    shared: Arc<Shared>,
    link_rx: watch::Receiver<Link>,
    state_rx: watch::Receiver<ConnectionState>,
    events_rx: Mutex<mpsc::Receiver<ResilientEvent>>,
    closing_tx: watch::Sender<bool>,
    retry_timeout: Duration,
}

impl ResilientClient {
    /// Connects to a `ws://` URL with a token from `tokens` and starts the
    /// supervisor. The first connection is not retried: its failure is
    /// returned, so a wrong URL or token is reported at once.
    ///
    /// # Errors
    ///
    /// As for [`Client::connect`], plus whatever `tokens` returns.
    pub async fn connect(
        url: impl Into<String>,
        tokens: impl TokenProvider,
        config: ResilientConfig,
    ) -> Result<(Self, Welcome), ClientError> {
        let connector = WsConnector {
            url: url.into(),
            tokens,
            config: config.client.clone(),
        };
        Self::start(connector, config).await
    }

    pub(crate) async fn start(
        connector: impl Connect,
        config: ResilientConfig,
    ) -> Result<(Self, Welcome), ClientError> {
        let (client, welcome) = connector.connect().await?;
        let client = Arc::new(client);
        let shared = Arc::new(Shared::default());
        let (link_tx, link_rx) = watch::channel(Link::Up(client.clone()));
        let connected = ConnectionState::Connected(welcome.clone());
        let (state_tx, state_rx) = watch::channel(connected.clone());
        // `mpsc::channel` panics on zero capacity.
        let (events_tx, events_rx) = mpsc::channel(config.client.events_capacity.max(1));
        if events_tx
            .try_send(ResilientEvent::State(connected))
            .is_err()
        {
            // Unreachable: the queue is new and holds at least one event.
            tracing::debug!("initial state not queued");
        }
        let (closing_tx, closing_rx) = watch::channel(false);
        let supervisor = Supervisor {
            connector,
            shared: shared.clone(),
            link_tx,
            state_tx,
            events_tx,
            closing_rx,
            backoff: config.backoff,
            keepalive: config.keepalive,
            refresh_before: config.refresh_before,
        };
        let span = tracing::debug_span!("consult_resilient", user = %welcome.user);
        // Not detached in effect: the task ends when the handle closes or
        // is dropped (its closing sender goes with it).
        tokio::spawn(supervisor.run(client).instrument(span));
        let handle = Self {
            shared,
            link_rx,
            state_rx,
            events_rx: Mutex::new(events_rx),
            closing_tx,
            retry_timeout: config.retry_timeout,
        };
        Ok((handle, welcome))
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        self.state_rx.borrow().clone()
    }

    /// A receiver of state changes, for observers that do not read events
    /// (a load test counting reconnects, a status indicator).
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.state_rx.clone()
    }

    /// Counters: reconnect attempts, completed resumes, dropped duplicates,
    /// retried commands.
    pub fn stats(&self) -> ResilientStats {
        self.shared.stats.snapshot()
    }

    /// The next event: frames that answer no waiting command, state
    /// changes, and what a resume restored. `None` once closed for good and
    /// every event has been read.
    pub async fn next_event(&self) -> Option<ResilientEvent> {
        self.events_rx.lock().await.recv().await
    }

    /// Closes for good (code 1000 if connected) and waits until done.
    /// Events already queued stay readable.
    pub async fn close(&self) -> CloseInfo {
        self.closing_tx.send_replace(true);
        self.closed().await
    }

    /// Waits until closed for good and says why.
    pub async fn closed(&self) -> CloseInfo {
        let mut state_rx = self.state_rx.clone();
        let closed = state_rx
            .wait_for(|state| matches!(state, ConnectionState::Closed(_)))
            .await;
        match closed.as_deref() {
            Ok(ConnectionState::Closed(info)) => info.clone(),
            _ => CloseInfo::network("supervisor ended without saying why"),
        }
    }

    /// The current connection, or why there is none.
    fn up(&self) -> Result<Arc<Client>, ClientError> {
        match &*self.link_rx.borrow() {
            Link::Up(client) => Ok(client.clone()),
            Link::Down => Err(ClientError::Disconnected),
            Link::Closed(_) => Err(ClientError::Closed),
        }
    }

    /// `Closed` from a connection that dropped mid-command is retryable
    /// unless the client is closed for good.
    fn lost(&self, error: ClientError) -> ClientError {
        match error {
            ClientError::Closed if !matches!(*self.link_rx.borrow(), Link::Closed(_)) => {
                ClientError::Disconnected
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
