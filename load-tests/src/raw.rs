//! A minimal WebSocket client for scenarios with thousands of connections
//! or many deliveries: the fleet's followers (`idle`, `storm`) and
//! `fanout`'s members.
//!
//! The typed client (`consult-client`) runs a socket task and two queues per
//! connection and picks its own socket. At 19,000 connections from one
//! machine the harness must choose the source address (one 127.0.0.x per
//! slice of connections, so ephemeral ports do not run out) and keep
//! per-connection memory small, so this client binds the socket itself,
//! speaks only `hello`, `join`, `send`, `ack` and `watch_dashboard`, and
//! leaves reading to its caller: the
//! task that reads it is woken once per frame, where the typed client costs
//! two wake-ups and a queue, which matters when the harness shares a small
//! machine with the hub. Frames are still the protocol crate's types.

use anyhow::{Context, Result, anyhow, bail};
use consult_protocol::{
    ClientFrame, CommandId, CommandResult, ConsultationId, ReceiptKind, Seq, ServerFrame, UserId,
};
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Per-connection read buffer: the frames here are small, and tungstenite's
/// 128 KiB default would cost gigabytes at 19,000 connections.
const READ_BUFFER_BYTES: usize = 4096;
/// Largest frame accepted from the hub (a replay page is many small frames).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// How long connecting, `hello` or `join` may take each.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// One authenticated connection.
#[derive(Debug)]
pub struct RawConnection {
    socket: WebSocketStream<TcpStream>,
    next_command: u64,
    /// The authenticated user, from `welcome`.
    user: UserId,
}

/// What a frame from the hub means to a follower or member.
#[derive(Debug)]
pub enum Inbound {
    /// A `message` event (live or replayed).
    Message {
        /// Its consultation.
        room: ConsultationId,
        /// Its sequence number.
        seq: u64,
        /// Its body.
        body: String,
        /// Whether this connection's user sent it (the copy every joined
        /// member gets, the sender too).
        mine: bool,
    },
    /// The `ok` for `join`: the room's last `seq` and how many were replayed.
    Joined {
        /// The consultation's `last_seq` when the answer was written.
        last_seq: u64,
        /// Messages replayed before it.
        replayed: u32,
    },
    /// An `ok` without a result (the answer to an `ack`).
    Answered,
    /// The `ok` for a `send`: the command id and the message's `seq`.
    Sent {
        /// The `send`'s command id.
        id: String,
        /// The stored message's sequence number.
        seq: u64,
    },
    /// The `ok` for `watch_dashboard` (its snapshot is not kept).
    Watching,
    /// A `dashboard` delta.
    Dashboard,
    /// An `error` frame: the command id it answers (none for a
    /// connection-level error) and the code with its message.
    Refused {
        /// The refused command's id.
        id: Option<String>,
        /// `code: message`.
        why: String,
    },
    /// Anything else (presence, receipts, pings, ...).
    Other,
    /// The connection ended (close frame, end of stream or error).
    Closed(String),
}

impl RawConnection {
    /// Connects from `source` (port chosen by the kernel) to `ws_url`, and
    /// authenticates with `token`.
    ///
    /// # Errors
    ///
    /// When any step fails, times out, or the hub refuses the token.
    pub async fn connect(ws_url: &str, source: Ipv4Addr, token: &str) -> Result<Self> {
        let target = socket_addr(ws_url)?;
        let socket = TcpSocket::new_v4().context("creating a socket")?;
        // Reuse lets a port still in TIME_WAIT from an earlier connection to
        // another address be picked again; the 4-tuple stays unique.
        socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .with_context(|| format!("binding to {source}"))?;
        let stream = tokio::time::timeout(STEP_TIMEOUT, socket.connect(target))
            .await
            .context("TCP connect timed out")?
            .with_context(|| format!("connecting to {target}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let limits = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let upgrade = tokio_tungstenite::client_async_with_config(ws_url, stream, Some(limits));
        let (socket, _response) = tokio::time::timeout(STEP_TIMEOUT, upgrade)
            .await
            .context("WebSocket upgrade timed out")?
            .context("WebSocket upgrade")?;
        let mut connection = Self {
            socket,
            next_command: 0,
            user: UserId::new(String::new()),
        };
        connection
            .write(&ClientFrame::Hello {
                token: token.to_owned(),
            })
            .await?;
        let welcome = tokio::time::timeout(STEP_TIMEOUT, connection.read_frame())
            .await
            .context("no welcome in time")??;
        match welcome {
            Some(ServerFrame::Welcome { user, .. }) => {
                connection.user = user;
                Ok(connection)
            }
            Some(ServerFrame::Error { code, message, .. }) => {
                bail!("hello refused: {code}: {message}")
            }
            other => bail!("expected welcome, got {other:?}"),
        }
    }

    /// Sends `join` (with `since` to resume); the answer and any replayed
    /// messages arrive through [`Self::next`].
    ///
    /// # Errors
    ///
    /// When the frame cannot be written.
    pub async fn send_join(&mut self, room: &ConsultationId, since: Option<u64>) -> Result<()> {
        self.next_command += 1;
        let frame = ClientFrame::Join {
            id: CommandId::new(format!("j{}", self.next_command)),
            consultation_id: room.clone(),
            since: since.map(Seq),
        };
        self.write(&frame).await
    }

    /// Sends an `ack` (a `delivered` or `read` receipt) for every message up
    /// to `seq`; its answer arrives through [`Self::next`] as
    /// [`Inbound::Answered`] or [`Inbound::Refused`].
    ///
    /// # Errors
    ///
    /// When the frame cannot be written.
    pub async fn send_ack(
        &mut self,
        room: &ConsultationId,
        seq: u64,
        receipt: ReceiptKind,
    ) -> Result<()> {
        self.next_command += 1;
        let frame = ClientFrame::Ack {
            id: CommandId::new(format!("a{}", self.next_command)),
            consultation_id: room.clone(),
            seq: Seq(seq),
            receipt,
        };
        self.write(&frame).await
    }

    /// Sends a chat message with the idempotency key `client_msg_id`;
    /// returns the command id, which its answer ([`Inbound::Sent`] or
    /// [`Inbound::Refused`]) carries.
    ///
    /// # Errors
    ///
    /// When the frame cannot be written.
    pub async fn send_message(
        &mut self,
        room: &ConsultationId,
        client_msg_id: String,
        body: String,
    ) -> Result<String> {
        self.next_command += 1;
        let id = format!("s{}", self.next_command);
        let frame = ClientFrame::Send {
            id: CommandId::new(id.clone()),
            consultation_id: room.clone(),
            client_msg_id,
            body,
        };
        self.write(&frame).await?;
        Ok(id)
    }

    /// Subscribes to the dashboard feed (the principal's own scope) and
    /// reads up to its answer; frames before it are ignored.
    ///
    /// # Errors
    ///
    /// When the hub refuses, the connection ends, or no answer comes within
    /// [`STEP_TIMEOUT`].
    pub async fn watch_dashboard(&mut self) -> Result<()> {
        self.next_command += 1;
        let frame = ClientFrame::WatchDashboard {
            id: CommandId::new(format!("w{}", self.next_command)),
            provider_id: None,
        };
        self.write(&frame).await?;
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let inbound = tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| anyhow!("no answer to watch_dashboard in time"))?;
            match inbound {
                Inbound::Watching => return Ok(()),
                Inbound::Refused { why, .. } => bail!("watch_dashboard refused: {why}"),
                Inbound::Closed(why) => bail!("closed during watch_dashboard: {why}"),
                _ => {}
            }
        }
    }

    /// Reads up to the answer to the `join` just sent, handing any message
    /// replayed before it to `replayed`; the room's `last_seq` and how many
    /// were replayed.
    ///
    /// # Errors
    ///
    /// When the hub refuses the join, the connection ends, or no answer
    /// comes within [`STEP_TIMEOUT`].
    pub async fn joined(&mut self, mut replayed: impl FnMut(Inbound)) -> Result<(u64, u32)> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let inbound = tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| anyhow!("no answer to join in time"))?;
            match inbound {
                Inbound::Joined {
                    last_seq,
                    replayed: count,
                } => return Ok((last_seq, count)),
                Inbound::Refused { why, .. } => bail!("join refused: {why}"),
                Inbound::Closed(why) => bail!("closed during join: {why}"),
                message @ Inbound::Message { .. } => replayed(message),
                Inbound::Answered
                | Inbound::Sent { .. }
                | Inbound::Watching
                | Inbound::Dashboard
                | Inbound::Other => {}
            }
        }
    }

    /// The next frame, classified. Cancel-safe: it awaits only the stream
    /// and, after a ping, the flush of the pong; a frame is decoded and
    /// returned without awaiting, and a pong whose flush is cancelled stays
    /// queued and goes out with the next read (tungstenite flushes queued
    /// replies before reading).
    pub async fn next(&mut self) -> Inbound {
        match self.read_frame().await {
            Ok(Some(frame)) => classify(frame, &self.user),
            Ok(None) => Inbound::Closed("connection ended".to_owned()),
            Err(error) => Inbound::Closed(format!("{error:#}")),
        }
    }

    /// Sends a close frame and waits briefly for the hub's answer.
    pub async fn close(mut self) {
        if self.socket.close(None).await.is_ok() {
            let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
            // A hub that does not answer in time is simply dropped.
            let _timed_out = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
    }

    async fn write(&mut self, frame: &ClientFrame) -> Result<()> {
        let text = serde_json::to_string(frame).context("encoding a frame")?;
        self.socket
            .send(Message::text(text))
            .await
            .context("writing a frame")
    }

    /// Reads until a text frame; `None` when the connection ended.
    async fn read_frame(&mut self) -> Result<Option<ServerFrame>> {
        loop {
            let Some(message) = self.socket.next().await else {
                return Ok(None);
            };
            match message.context("reading from the hub")? {
                Message::Text(text) => {
                    let frame = serde_json::from_str(text.as_str())
                        .context("undecodable frame from the hub")?;
                    return Ok(Some(frame));
                }
                // tungstenite queued the pong; flush it now rather than on
                // the next write, which an idle client may never make.
                Message::Ping(_) => self.socket.flush().await.context("answering a ping")?,
                Message::Close(frame) => {
                    let why = frame
                        .map(|frame| format!("closed by hub: {} {}", frame.code, frame.reason))
                        .unwrap_or_else(|| "closed by hub".to_owned());
                    bail!(why);
                }
                Message::Binary(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

fn classify(frame: ServerFrame, user: &UserId) -> Inbound {
    match frame {
        ServerFrame::Message { message } => Inbound::Message {
            room: message.consultation_id,
            seq: message.seq.get(),
            mine: message.sender == *user,
            body: message.body,
        },
        ServerFrame::Ok {
            result:
                Some(consult_protocol::CommandResult::Joined {
                    consultation,
                    replayed,
                    ..
                }),
            ..
        } => Inbound::Joined {
            last_seq: consultation.last_seq.get(),
            replayed,
        },
        ServerFrame::Ok {
            id,
            result: Some(CommandResult::Sent { seq, .. }),
        } => Inbound::Sent {
            id: id.to_string(),
            seq: seq.get(),
        },
        ServerFrame::Ok {
            result: Some(CommandResult::DashboardSnapshot { .. }),
            ..
        } => Inbound::Watching,
        ServerFrame::Ok { result: None, .. } => Inbound::Answered,
        ServerFrame::Dashboard { .. } => Inbound::Dashboard,
        ServerFrame::Error {
            id, code, message, ..
        } => Inbound::Refused {
            id: id.map(|id| id.to_string()),
            why: format!("{code}: {message}"),
        },
        _ => Inbound::Other,
    }
}

/// The `HOST:PORT` of a `ws://HOST:PORT/...` URL, as a socket address.
///
/// # Errors
///
/// When the URL is not `ws://IP:PORT/...`.
pub(crate) fn socket_addr(ws_url: &str) -> Result<SocketAddr> {
    let rest = ws_url
        .strip_prefix("ws://")
        .with_context(|| format!("not a ws:// URL: {ws_url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .with_context(|| format!("the hub address must be IP:PORT, not {authority}"))
}

/// Source addresses `127.0.0.2`, `127.0.0.3`, ... (`count` of them): each
/// has its own ephemeral port range towards the hub.
pub fn loopback_sources(count: usize) -> Vec<Ipv4Addr> {
    (0..count.clamp(1, 250))
        .map(|i| Ipv4Addr::new(127, 0, 0, u8::try_from(i + 2).unwrap_or(u8::MAX)))
        .collect()
}
