//! A small in-memory hub for the resilient client's tests: stored messages
//! per room, replay on `join … since`, idempotent `send`, a dashboard
//! snapshot, and switches to drop, close, stall, refuse or reject
//! connections. Sessions run over `tokio::io::duplex`, so paused time works.

use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::handshake::Welcome;
use crate::resilient::connector::Connect;
use chrono::Utc;
use consult_protocol::{
    ChatMessage, ClientFrame, ClinicId, CommandId, CommandResult, ConsultationId,
    ConsultationStatus, ConsultationView, ErrorCode, MessageKind, Role, Seq, ServerFrame, UserId,
    decode_client_frame,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole};
use tokio_tungstenite::tungstenite::{self, Message};

type Socket = WebSocketStream<DuplexStream>;

/// What happens to every session open at the time of [`FakeHub::kill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kill {
    None,
    /// Drop the socket without a close frame (a network failure).
    Drop,
    /// Send a close frame with this code.
    Close(u16),
    /// Stop answering, keeping the socket open (a dead peer).
    Stall,
}

/// Switches and records, behind one lock.
#[derive(Debug, Default)]
pub(super) struct HubState {
    pub(super) rooms: HashMap<ConsultationId, Vec<ChatMessage>>,
    subscribers: Vec<(ConsultationId, mpsc::UnboundedSender<String>)>,
    /// Every `join`, with its `since`, in order.
    pub(super) joins: Vec<(ConsultationId, Option<Seq>)>,
    pub(super) watches: u32,
    pub(super) connects: u32,
    /// Fail connection attempts as if nothing listened.
    pub(super) refuse: bool,
    /// Refuse `hello` with `invalid_token` and close 4001.
    pub(super) reject: bool,
    /// Store the next `send`, then drop the connection without answering.
    pub(super) drop_on_send: bool,
    /// Replay this many messages before `since` too, as a careless hub might.
    pub(super) replay_overlap: u64,
    /// Rooms whose `join` is refused with `forbidden`.
    pub(super) forbidden: HashSet<ConsultationId>,
}

#[derive(Debug, Clone)]
pub(super) struct FakeHub {
    state: Arc<Mutex<HubState>>,
    kill_tx: Arc<watch::Sender<Kill>>,
}

impl Default for FakeHub {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            kill_tx: Arc::new(watch::channel(Kill::None).0),
        }
    }
}

impl FakeHub {
    pub(super) fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap()
    }

    /// Applies `kill` to every session open now; later ones are spared.
    pub(super) fn kill(&self, kill: Kill) {
        self.kill_tx.send_replace(kill);
    }

    /// Stores a provider's message and sends it to the room; its `seq`.
    pub(super) fn publish(&self, consultation: &ConsultationId, body: &str) -> Seq {
        let mut state = self.state();
        store(&mut state, consultation, None, body)
    }

    pub(super) fn connector(&self, config: ClientConfig) -> FakeConnector {
        FakeConnector {
            hub: self.clone(),
            config,
        }
    }

    async fn session(self, mut socket: Socket) {
        let mut kill_rx = self.kill_tx.subscribe();
        let (live_tx, mut live_rx) = mpsc::unbounded_channel::<String>();
        if !self.hello(&mut socket).await {
            return;
        }
        loop {
            tokio::select! {
                biased;
                _ = kill_rx.changed() => {
                    let kill = *kill_rx.borrow_and_update();
                    match kill {
                        Kill::None => {}
                        Kill::Drop => return,
                        Kill::Close(code) => return close(&mut socket, code).await,
                        Kill::Stall => return std::future::pending().await,
                    }
                }
                Some(text) = live_rx.recv() => {
                    if socket.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                inbound = socket.next() => match inbound {
                    Some(Ok(Message::Text(text))) => {
                        if !self.on_command(&mut socket, &live_tx, text.as_str()).await {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => return,
                },
            }
        }
    }

    async fn hello(&self, socket: &mut Socket) -> bool {
        let Some(Ok(Message::Text(_hello))) = socket.next().await else {
            return false;
        };
        let (reject, conn) = {
            let mut state = self.state();
            state.connects += 1;
            (state.reject, state.connects)
        };
        if reject {
            let refusal = ServerFrame::error(None, ErrorCode::InvalidToken, "bad token");
            let _ = socket.send(Message::text(refusal.to_json())).await;
            close(socket, 4001).await;
            return false;
        }
        let welcome = ServerFrame::Welcome {
            protocol: 1,
            conn_id: format!("n{conn}"),
            user: UserId::from("pat-a"),
            role: Role::Patient,
            clinic: ClinicId::from("cl1"),
            heartbeat_secs: 20,
            max_frame_bytes: 65_536,
            server_time: Utc::now(),
            expires_at: None,
        };
        socket.send(Message::text(welcome.to_json())).await.is_ok()
    }

    /// Answers one command; false to drop the connection.
    async fn on_command(
        &self,
        socket: &mut Socket,
        live_tx: &mpsc::UnboundedSender<String>,
        text: &str,
    ) -> bool {
        let frame = decode_client_frame(text).unwrap();
        let id = frame.id().cloned().unwrap();
        let (before, answer) = match frame {
            ClientFrame::Ping { .. } => (Vec::new(), ok(id, pong())),
            ClientFrame::Join {
                consultation_id,
                since,
                ..
            } => self.join(id, &consultation_id, since, live_tx),
            ClientFrame::Send {
                consultation_id,
                client_msg_id,
                body,
                ..
            } => {
                let mut state = self.state();
                let existing = state.rooms.get(&consultation_id).and_then(|messages| {
                    messages
                        .iter()
                        .find(|m| m.client_msg_id.as_deref() == Some(client_msg_id.as_str()))
                        .map(|m| m.seq)
                });
                let (seq, duplicate) = match existing {
                    Some(seq) => (seq, true),
                    None => {
                        let body = body.as_str();
                        let seq = store(&mut state, &consultation_id, Some(client_msg_id), body);
                        (seq, false)
                    }
                };
                if std::mem::take(&mut state.drop_on_send) {
                    return false;
                }
                let sent = CommandResult::Sent {
                    seq,
                    duplicate,
                    sent_at: Utc::now(),
                };
                (Vec::new(), ok(id, Some(sent)))
            }
            ClientFrame::WatchDashboard { .. } => {
                self.state().watches += 1;
                let entries = Vec::new();
                let snapshot = CommandResult::DashboardSnapshot { entries };
                (Vec::new(), ok(id, Some(snapshot)))
            }
            ClientFrame::Leave {
                consultation_id, ..
            } => {
                let mut state = self.state();
                state
                    .subscribers
                    .retain(|(room, tx)| *room != consultation_id || !tx.same_channel(live_tx));
                (Vec::new(), ok(id, None))
            }
            _ => (Vec::new(), ok(id, None)),
        };
        for frame in before.into_iter().chain([answer]) {
            if socket.send(Message::text(frame.to_json())).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Subscribes and collects the replay under one lock, so no live
    /// message can slip between them.
    fn join(
        &self,
        id: CommandId,
        consultation: &ConsultationId,
        since: Option<Seq>,
        live_tx: &mpsc::UnboundedSender<String>,
    ) -> (Vec<ServerFrame>, ServerFrame) {
        let mut state = self.state();
        state.joins.push((consultation.clone(), since));
        if state.forbidden.contains(consultation) {
            let refusal = ServerFrame::error(Some(id), ErrorCode::Forbidden, "not yours");
            return (Vec::new(), refusal);
        }
        state
            .subscribers
            .push((consultation.clone(), live_tx.clone()));
        let messages = state.rooms.get(consultation).cloned().unwrap_or_default();
        let last_seq = messages.last().map_or(Seq(0), |m| m.seq);
        let from = since.map_or(last_seq.get(), |since| {
            since.get().saturating_sub(state.replay_overlap)
        });
        let replay: Vec<ServerFrame> = messages
            .into_iter()
            .filter(|m| m.seq.get() > from)
            .map(|message| ServerFrame::Message { message })
            .collect();
        let joined = CommandResult::Joined {
            consultation: view(consultation, last_seq),
            members: Vec::new(),
            replayed: u32::try_from(replay.len()).unwrap(),
        };
        (replay, ok(id, Some(joined)))
    }
}

/// Stores a message and sends it to the room's subscribers.
fn store(
    state: &mut HubState,
    consultation: &ConsultationId,
    client_msg_id: Option<String>,
    body: &str,
) -> Seq {
    let messages = state.rooms.entry(consultation.clone()).or_default();
    let seq = Seq(messages.len() as u64 + 1);
    let message = ChatMessage {
        consultation_id: consultation.clone(),
        seq,
        sender: UserId::from("dr-a"),
        sender_role: Role::Provider,
        kind: MessageKind::Chat,
        body: body.to_owned(),
        client_msg_id,
        sent_at: Utc::now(),
    };
    messages.push(message.clone());
    let text = ServerFrame::Message { message }.to_json();
    state
        .subscribers
        .retain(|(room, tx)| room != consultation || tx.send(text.clone()).is_ok());
    seq
}

fn ok(id: CommandId, result: Option<CommandResult>) -> ServerFrame {
    ServerFrame::ok(id, result)
}

fn pong() -> Option<CommandResult> {
    Some(CommandResult::Pong {
        server_time: Utc::now(),
    })
}

fn view(consultation: &ConsultationId, last_seq: Seq) -> ConsultationView {
    ConsultationView {
        id: consultation.clone(),
        clinic_id: ClinicId::from("cl1"),
        provider_id: UserId::from("dr-a"),
        patient_id: UserId::from("pat-a"),
        status: ConsultationStatus::InProgress,
        scheduled_at: Utc::now(),
        waiting_since: None,
        staff_messaged_first: false,
        last_seq,
        rev: 1,
    }
}

/// Sends a close frame and reads until the client's echo.
async fn close(socket: &mut Socket, code: u16) {
    let frame = CloseFrame {
        code: code.into(),
        reason: "bye".into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
    while let Some(Ok(_)) = socket.next().await {}
}

/// Connects to a [`FakeHub`] over an in-memory stream.
#[derive(Debug)]
pub(super) struct FakeConnector {
    hub: FakeHub,
    config: ClientConfig,
}

impl Connect for FakeConnector {
    async fn connect(&self) -> Result<(Client, Welcome), ClientError> {
        if self.hub.state().refuse {
            let refused = tungstenite::Error::ConnectionClosed;
            return Err(ClientError::connect(refused));
        }
        let (client_io, hub_io) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
        let hub = WebSocketStream::from_raw_socket(hub_io, WsRole::Server, None).await;
        tokio::spawn(self.hub.clone().session(hub));
        Client::over_socket(client, "token", self.config.clone()).await
    }
}
