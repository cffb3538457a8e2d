//! [`Client`]: connecting, sending commands and reading events.
//!
//! The client is a handle to the socket task in [`crate::connection`]; it
//! never touches the socket itself. Typed commands live in
//! [`crate::commands`].

use crate::config::ClientConfig;
use crate::connection::{CloseInfo, Connection, Outbound};
use crate::error::ClientError;
use crate::handshake::{self, Outcome, Welcome};
use crate::routing::{CommandIds, Routes};
use consult_protocol::{ClientFrame, CommandId, CommandResult, ServerFrame};
use futures_util::{Sink, Stream};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument;

/// The codec's read buffer: hub frames are well under this.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// A connection to the hub. Every method takes `&self`, so one client can be
/// shared (for example in an `Arc`) between a task reading events and tasks
/// sending commands. Dropping it closes the connection.
#[derive(Debug)]
pub struct Client {
    outbound_tx: mpsc::Sender<Outbound>,
    events_rx: Mutex<mpsc::Receiver<ServerFrame>>,
    closed_rx: watch::Receiver<Option<CloseInfo>>,
    command_ids: CommandIds,
    request_timeout: Duration,
    welcome: Welcome,
}

impl Client {
    /// Connects to a `ws://` URL (such as `ws://127.0.0.1:8080/v1/ws`) with
    /// the default [`ClientConfig`] and authenticates with `token`, which is
    /// sent only inside the `hello` frame.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] if the connection or upgrade fails,
    /// [`ClientError::Rejected`] if the hub refuses the token,
    /// [`ClientError::Timeout`] if a step takes longer than the connect
    /// timeout, and [`ClientError::Protocol`] if the hub answers with
    /// anything but `welcome` or `error`.
    pub async fn connect(url: &str, token: &str) -> Result<(Self, Welcome), ClientError> {
        Self::connect_with(url, token, ClientConfig::default()).await
    }

    /// [`Client::connect`] with explicit settings.
    ///
    /// # Errors
    ///
    /// As for [`Client::connect`].
    pub async fn connect_with(
        url: &str,
        token: &str,
        config: ClientConfig,
    ) -> Result<(Self, Welcome), ClientError> {
        // tungstenite zeroes its whole read buffer (128 KiB by default)
        // before every socket read; hub frames are small, so a small buffer
        // (grown while a larger frame lasts) saves that work on every read.
        let limits = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        let upgrade = tokio_tungstenite::connect_async_with_config(url, Some(limits), true);
        let (socket, _response) = timeout(config.connect_timeout, upgrade)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::connect)?;
        Self::over_socket(socket, token, config).await
    }

    /// Runs the `hello` exchange over an upgraded socket and starts the
    /// socket task.
    pub(crate) async fn over_socket<S>(
        mut socket: S,
        token: &str,
        config: ClientConfig,
    ) -> Result<(Self, Welcome), ClientError>
    where
        S: Stream<Item = Result<Message, tungstenite::Error>>
            + Sink<Message, Error = tungstenite::Error>
            + Unpin
            + Send
            + 'static,
    {
        let outcome = timeout(config.connect_timeout, handshake::hello(&mut socket, token))
            .await
            .map_err(|_| ClientError::Timeout)??;
        match outcome {
            Outcome::Welcome(welcome) => {
                Ok((Self::start(socket, welcome.clone(), config), welcome))
            }
            Outcome::Rejected { code, message } => {
                let close_code = timeout(
                    config.close_timeout,
                    handshake::read_close_code(&mut socket),
                )
                .await
                .ok()
                .flatten();
                Err(ClientError::Rejected {
                    code,
                    message,
                    close_code,
                })
            }
        }
    }

    fn start<S>(socket: S, welcome: Welcome, config: ClientConfig) -> Self
    where
        S: Stream<Item = Result<Message, tungstenite::Error>>
            + Sink<Message, Error = tungstenite::Error>
            + Unpin
            + Send
            + 'static,
    {
        // `mpsc::channel` panics on zero capacity.
        let (outbound_tx, outbound_rx) = mpsc::channel(config.commands_capacity.max(1));
        let (events_tx, events_rx) = mpsc::channel(config.events_capacity.max(1));
        let (closed_tx, closed_rx) = watch::channel(None);
        let connection = Connection {
            socket,
            outbound_rx,
            events_tx,
            events_full: config.events_full,
            closed_tx,
            close_timeout: config.close_timeout,
            routes: Routes::default(),
        };
        let span = tracing::debug_span!(
            "consult_client",
            conn_id = %welcome.conn_id,
            user = %welcome.user
        );
        // Not detached in effect: the task ends once every handle to it (the
        // commands queue) is dropped, after a close bounded by close_timeout.
        tokio::spawn(connection.run().instrument(span));
        Self {
            outbound_tx,
            events_rx: Mutex::new(events_rx),
            closed_rx,
            command_ids: CommandIds::default(),
            request_timeout: config.request_timeout,
            welcome,
        }
    }

    /// What the hub said in `welcome`.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// A command id not used before by this client (`c1`, `c2`, ...), for
    /// building frames to pass to [`Client::request`].
    pub fn next_command_id(&self) -> CommandId {
        self.command_ids.next()
    }

    /// Sends a command and waits for its answer: `Ok` with the `ok` frame's
    /// result, which is `None` for commands that produce nothing.
    ///
    /// # Errors
    ///
    /// [`ClientError::Command`] when the hub answers `error`,
    /// [`ClientError::Timeout`] after the request timeout,
    /// [`ClientError::Closed`] when the connection ends first, and
    /// [`ClientError::Protocol`] for `hello` (sent only by connect) or an id
    /// already waiting for an answer.
    pub async fn request(&self, frame: ClientFrame) -> Result<Option<CommandResult>, ClientError> {
        let id = frame.id().cloned().ok_or_else(|| {
            ClientError::Protocol("hello is sent by connect, not request".to_owned())
        })?;
        let text = serde_json::to_string(&frame)
            .map_err(|error| ClientError::Protocol(format!("cannot encode command: {error}")))?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let exchange = async {
            let command = Outbound::Command { id, text, reply_tx };
            self.outbound_tx
                .send(command)
                .await
                .map_err(|_| ClientError::Closed)?;
            reply_rx.await.map_err(|_| ClientError::Closed)?
        };
        timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends text exactly as given, for testing how the hub treats bad
    /// frames. Any answer arrives through [`Client::next_event`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] when the connection has ended.
    pub async fn send_raw_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.outbound_tx
            .send(Outbound::Raw(text.into()))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The next frame that is not an answer to a waiting command: room,
    /// dashboard and status events, `error` frames without an id, and
    /// answers nobody waits for (such as those to [`Client::send_raw_text`]).
    /// `None` once the connection has ended and every event has been read;
    /// [`Client::close_info`] then says why.
    pub async fn next_event(&self) -> Option<ServerFrame> {
        self.events_rx.lock().await.recv().await
    }

    /// The next event if one is queued now, without waiting.
    pub(crate) async fn try_next_event(&self) -> Option<ServerFrame> {
        self.events_rx.lock().await.try_recv().ok()
    }

    /// Why the connection ended, or `None` while it is open.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.closed_rx.borrow().clone()
    }

    /// Waits until the connection has ended and says why.
    pub async fn closed(&self) -> CloseInfo {
        let mut closed_rx = self.closed_rx.clone();
        match closed_rx.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(task_gone),
            Err(_) => task_gone(),
        }
    }

    /// Closes the connection with code 1000 and waits until the close
    /// handshake is done (or the close timeout passes). Closing a closed
    /// client does nothing and returns how it ended.
    pub async fn close(&self) -> CloseInfo {
        // A send error means the socket task has already stopped taking
        // commands; `closed` then reports how the connection ended.
        let _already_closing = self.outbound_tx.send(Outbound::Close).await.is_err();
        self.closed().await
    }
}

/// Only reachable if the socket task panicked before publishing.
fn task_gone() -> CloseInfo {
    CloseInfo::network("socket task ended without saying why")
}

#[cfg(test)]
mod tests;
