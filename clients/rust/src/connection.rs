//! The socket task: the one owner of a connection's WebSocket.
//!
//! One `select!` over the commands queue and inbound frames. Answers go to
//! their waiting caller through [`Routes`]; every other frame goes to the
//! events queue. It knows nothing of typed commands, and is generic over the
//! socket so tests can drive it over in-memory streams.

use crate::config::EventsFull;
use crate::routing::{Reply, Routes};
use consult_protocol::{CloseCode, CommandId, ServerFrame};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, warn};

/// RFC 6455 1002: the hub sent a frame this client cannot decode.
const PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455 1003: the hub sent a binary frame.
const UNSUPPORTED_DATA: u16 = 1003;
/// RFC 6455 1008: we closed because our events queue overflowed.
const POLICY_VIOLATION: u16 = 1008;
/// Commands fed to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The hub sent a close frame.
    Hub,
    /// This client closed: asked to, dropped, or gave up on the hub.
    Client,
    /// The stream failed or ended without a close frame.
    Network,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Who ended it.
    pub by: ClosedBy,
    /// The close code: the hub's for [`ClosedBy::Hub`], ours for
    /// [`ClosedBy::Client`], none for [`ClosedBy::Network`].
    pub code: Option<u16>,
    /// The close reason, or what went wrong.
    pub reason: String,
}

impl CloseInfo {
    /// The code as one the hub documents, if it is one.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.code.and_then(CloseCode::from_code)
    }

    pub(crate) fn network(reason: impl Into<String>) -> Self {
        Self {
            by: ClosedBy::Network,
            code: None,
            reason: reason.into(),
        }
    }

    fn from_hub(frame: Option<CloseFrame>) -> Self {
        Self {
            by: ClosedBy::Hub,
            code: frame.as_ref().map(|frame| u16::from(frame.code)),
            reason: frame
                .map(|frame| frame.reason.to_string())
                .unwrap_or_default(),
        }
    }
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "closed by {:?}", self.by)?;
        if let Some(code) = self.code {
            write!(f, " with code {code}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a [`crate::Client`] asks the socket task to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send an encoded command and route its answer to `reply_tx`.
    Command {
        id: CommandId,
        text: String,
        reply_tx: oneshot::Sender<Reply>,
    },
    /// Send text as is, answered (if at all) through the events queue.
    Raw(String),
    /// Close the connection normally.
    Close,
}

/// The socket task's state.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    pub(crate) socket: S,
    pub(crate) outbound_rx: mpsc::Receiver<Outbound>,
    pub(crate) events_tx: mpsc::Sender<ServerFrame>,
    pub(crate) events_full: EventsFull,
    pub(crate) closed_tx: watch::Sender<Option<CloseInfo>>,
    pub(crate) close_timeout: Duration,
    pub(crate) routes: Routes,
}

impl<S> Connection<S>
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin,
{
    /// Runs until the connection ends, then publishes why.
    pub(crate) async fn run(mut self) {
        let info = loop {
            // Both branch futures are cancel-safe: `recv` and `next`.
            let flow = tokio::select! {
                command = self.outbound_rx.recv() => self.on_outbound(command).await,
                inbound = self.socket.next() => self.on_inbound(inbound).await,
            };
            if let ControlFlow::Break(info) = flow {
                break info;
            }
        };
        self.finish(info).await;
    }

    async fn on_outbound(&mut self, first: Option<Outbound>) -> ControlFlow<CloseInfo> {
        let mut command = first;
        for _ in 0..WRITE_BATCH {
            self.feed(command).await?;
            match self.outbound_rx.try_recv() {
                Ok(next) => command = Some(next),
                Err(_) => break,
            }
        }
        self.flush().await
    }

    async fn feed(&mut self, command: Option<Outbound>) -> ControlFlow<CloseInfo> {
        match command {
            // `None`: every Client handle is gone, so nobody can read on.
            None | Some(Outbound::Close) => {
                let normal = CloseCode::Normal;
                ControlFlow::Break(self.start_close(normal.code(), normal.reason()).await)
            }
            Some(Outbound::Raw(text)) => self.write(Message::text(text)).await,
            Some(Outbound::Command { id, text, reply_tx }) => {
                if self.routes.insert(id, reply_tx) {
                    self.write(Message::text(text)).await
                } else {
                    ControlFlow::Continue(())
                }
            }
        }
    }

    async fn on_inbound(
        &mut self,
        inbound: Option<Result<Message, tungstenite::Error>>,
    ) -> ControlFlow<CloseInfo> {
        let message = match inbound {
            Some(Ok(message)) => message,
            Some(Err(error)) => return ControlFlow::Break(CloseInfo::network(error.to_string())),
            None => {
                let reason = "connection ended without a close frame";
                return ControlFlow::Break(CloseInfo::network(reason));
            }
        };
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            // tungstenite has queued the pong; send it now, not on the next write.
            Message::Ping(_) => self.flush().await,
            Message::Pong(_) | Message::Frame(_) => ControlFlow::Continue(()),
            Message::Close(frame) => ControlFlow::Break(CloseInfo::from_hub(frame)),
            Message::Binary(_) => {
                let reason = "binary frames are not part of the protocol";
                ControlFlow::Break(self.start_close(UNSUPPORTED_DATA, reason).await)
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> ControlFlow<CloseInfo> {
        let frame = match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => frame,
            Err(error) => {
                warn!(error = %error, "undecodable frame from hub");
                let mut info = self
                    .start_close(PROTOCOL_ERROR, "undecodable frame from hub")
                    .await;
                info.reason = format!("{}: {error}", info.reason);
                return ControlFlow::Break(info);
            }
        };
        match self.routes.route(frame) {
            Some(event) => self.on_event(event).await,
            None => ControlFlow::Continue(()),
        }
    }

    async fn on_event(&mut self, event: ServerFrame) -> ControlFlow<CloseInfo> {
        // A closed receiver means the Client is gone; the commands queue
        // closes with it and ends this task, so the event has no reader.
        match self.events_full {
            EventsFull::Wait => {
                if self.events_tx.send(event).await.is_err() {
                    debug!("event dropped: client is gone");
                }
                ControlFlow::Continue(())
            }
            EventsFull::Close => match self.events_tx.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => ControlFlow::Continue(()),
                Err(TrySendError::Full(_)) => {
                    warn!("client event queue full; closing");
                    let reason = "client event queue full";
                    ControlFlow::Break(self.start_close(POLICY_VIOLATION, reason).await)
                }
            },
        }
    }

    async fn write(&mut self, message: Message) -> ControlFlow<CloseInfo> {
        match self.socket.feed(message).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => ControlFlow::Break(CloseInfo::network(error.to_string())),
        }
    }

    async fn flush(&mut self) -> ControlFlow<CloseInfo> {
        match self.socket.flush().await {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => ControlFlow::Break(CloseInfo::network(error.to_string())),
        }
    }

    /// Sends our close frame. The echo is awaited in [`Self::finish`].
    async fn start_close(&mut self, code: u16, reason: &'static str) -> CloseInfo {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        if let Err(error) = self.socket.send(Message::Close(Some(frame))).await {
            debug!(error = %error, "could not send close frame");
        }
        CloseInfo {
            by: ClosedBy::Client,
            code: Some(code),
            reason: reason.to_owned(),
        }
    }

    /// The one exit path: release callers, finish the close handshake,
    /// publish why, and (by dropping `self`) end the events stream.
    async fn finish(mut self, info: CloseInfo) {
        self.outbound_rx.close();
        self.routes.fail_all();
        if info.by != ClosedBy::Network {
            // Reading on lets tungstenite answer the hub's close, or receive
            // the echo of ours; frames that race the close are dropped.
            let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
            if tokio::time::timeout(self.close_timeout, drain)
                .await
                .is_err()
            {
                debug!("close handshake timed out");
            }
        }
        debug!(%info, "connection ended");
        self.closed_tx.send_replace(Some(info));
    }
}
