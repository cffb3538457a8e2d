//! The campaign's workload: in every room a provider and a patient, each
//! one typed client (`consult-client`) connected to its home node (another
//! node when that one is down), doing what people do: chat both ways,
//! Quick Messages and alerts from the provider (the patient has push
//! devices), receipts, and the patient going offline and coming back with
//! `join … since`. Each actor draws its choices from its own generator,
//! seeded from the campaign's seed.
//!
//! Every command and its outcome, and every frame received, go to the
//! [`Journal`]. Frames are checked as they arrive: a `message` must carry
//! the next `seq` of its room for this member (a gap or a repeat is an
//! anomaly), and every frame must name the member's own room. Commands
//! whose answer was lost are sent again with the same `client_msg_id`
//! after reconnecting, as a real app does.

use super::journal::{FrameRecord, Journal, OpRecord, Outcome};
use anyhow::Result;
use consult_client::{Client, ClientConfig, ClientError};
use consult_protocol::{AlertChannel, ConsultationId, ReceiptKind, Role, Seq, ServerFrame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Times a send whose outcome is unknown is sent again.
const MAX_RESENDS: u32 = 3;
/// Pause between connection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(300);
/// The alert text: generic, so it passes the privacy check.
const ALERT_TEXT: &str = "Please open the app when you can.";

/// What an actor is.
#[derive(Debug, Clone)]
pub struct ActorSpec {
    /// Its index among all actors.
    pub index: usize,
    /// Its room's index.
    pub room: usize,
    /// Its room.
    pub consultation: ConsultationId,
    /// Provider or patient.
    pub role: Role,
    /// Its token.
    pub token: String,
    /// The node it connects to first.
    pub home: usize,
}

/// What every actor shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Each node's WebSocket URL.
    pub nodes: Vec<String>,
    /// Room index by consultation.
    pub rooms: Arc<HashMap<ConsultationId, usize>>,
    /// The clinic (for the Quick Message template id).
    pub clinic: String,
    /// Where everything is recorded.
    pub journal: Journal,
    /// The campaign's seed.
    pub seed: u64,
}

/// One message as a member received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its sender.
    pub sender: String,
    /// Its `client_msg_id`.
    pub client_msg_id: Option<String>,
}

/// An actor's view of its room, written by its connections' readers.
#[derive(Debug, Default)]
pub struct View {
    /// Messages `1..=len`, in `seq` order (a placeholder stands for any
    /// that never came: that gap is an anomaly already recorded).
    pub seen: Vec<Option<Seen>>,
}

/// One actor: its client, its view, and the sends still in doubt.
#[derive(Debug)]
pub struct Actor {
    /// What it is.
    pub spec: ActorSpec,
    /// What it received.
    pub view: Arc<Mutex<View>>,
    shared: Shared,
    client: Option<Arc<Client>>,
    reader: Option<JoinHandle<()>>,
    connections: u32,
    node: Option<usize>,
    rng: StdRng,
    sent: u64,
    in_doubt: BTreeMap<String, (&'static str, u32)>,
}

impl Actor {
    /// A disconnected actor.
    pub fn new(spec: ActorSpec, shared: Shared) -> Self {
        let rng = StdRng::seed_from_u64(
            shared
                .seed
                .wrapping_add(1_000_003_u64.wrapping_mul(spec.index as u64 + 1)),
        );
        Self {
            spec,
            view: Arc::new(Mutex::new(View::default())),
            shared,
            client: None,
            reader: None,
            connections: 0,
            node: None,
            rng,
            sent: 0,
            in_doubt: BTreeMap::new(),
        }
    }

    /// The highest `seq` it holds in order.
    pub fn cursor(&self) -> u64 {
        self.view
            .lock()
            .map(|view| view.seen.len() as u64)
            .unwrap_or(0)
    }

    /// Acts until `stop`, then returns itself (connected if it could).
    pub async fn run(mut self, stop: CancellationToken) -> Self {
        while !stop.is_cancelled() {
            if !self.connected() {
                self.connect(&stop).await;
                continue;
            }
            let pause = self.rng.random_range(250..=1500);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(pause)) => {}
            }
            self.act(&stop).await;
        }
        self
    }

    /// Makes sure it is connected and joined, trying until `deadline`.
    /// True when it is.
    pub async fn ensure_connected(&mut self, deadline: Instant) -> bool {
        let never = CancellationToken::new();
        while !self.connected() && Instant::now() < deadline {
            self.connect(&never).await;
        }
        self.connected()
    }

    /// Closes its connection and waits for its reader.
    pub async fn disconnect(&mut self) {
        if let Some(client) = self.client.take() {
            client.close().await;
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.await;
        }
    }

    fn connected(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| client.close_info().is_none())
    }

    /// One connection attempt: connect to the next node, start reading,
    /// join with `since` = its cursor, and send again what is in doubt.
    async fn connect(&mut self, stop: &CancellationToken) {
        self.disconnect().await;
        let node = (self.spec.home + self.connections as usize) % self.shared.nodes.len();
        self.connections += 1;
        self.node = Some(node);
        let config = ClientConfig {
            request_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(5),
            events_capacity: 8192,
            ..ClientConfig::default()
        };
        let connected =
            Client::connect_with(&self.shared.nodes[node], &self.spec.token, config).await;
        let client = match connected {
            Ok((client, _welcome)) => Arc::new(client),
            Err(_) => {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                }
                return;
            }
        };
        self.reader = Some(tokio::spawn(read_frames(
            client.clone(),
            self.spec.clone(),
            self.shared.clone(),
            self.view.clone(),
            self.connections,
        )));
        self.client = Some(client.clone());
        let since = Seq(self.cursor());
        let joined = client.join(&self.spec.consultation, Some(since)).await;
        let outcome = outcome_of(joined.map(|_| None));
        let failed = !matches!(outcome, Outcome::Ok { .. });
        self.record("join", None, outcome);
        if failed {
            self.disconnect().await;
            tokio::time::sleep(RECONNECT_PAUSE).await;
            return;
        }
        let retries: Vec<(String, &'static str)> = self
            .in_doubt
            .iter()
            .map(|(id, (kind, _))| (id.clone(), *kind))
            .collect();
        for (client_msg_id, kind) in retries {
            self.send(kind, client_msg_id).await;
        }
    }

    async fn act(&mut self, stop: &CancellationToken) {
        let roll = self.rng.random_range(0..100);
        if self.spec.role == Role::Provider {
            match roll {
                0..55 => self.send_new("chat").await,
                55..70 => self.send_new("quick").await,
                70..80 => self.send_new("alert").await,
                _ => self.ack(ReceiptKind::Read).await,
            }
        } else {
            match roll {
                0..45 => self.send_new("chat").await,
                45..65 => self.ack(ReceiptKind::Delivered).await,
                65..85 => self.ack(ReceiptKind::Read).await,
                _ => self.go_offline(stop).await,
            }
        }
    }

    async fn send_new(&mut self, kind: &'static str) {
        self.sent += 1;
        let client_msg_id = format!("a{}-{}", self.spec.index, self.sent);
        self.send(kind, client_msg_id).await;
    }

    /// Sends (or sends again) one message; keeps it in doubt when no
    /// answer came.
    async fn send(&mut self, kind: &'static str, client_msg_id: String) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let room = &self.spec.consultation;
        let result = match kind {
            "quick" => {
                let minutes =
                    (client_msg_id.bytes().map(u64::from).sum::<u64>() % 25 + 5).to_string();
                let variables = BTreeMap::from([("minutes".to_owned(), minutes)]);
                let template = format!("{}:running-behind", self.shared.clinic);
                client
                    .quick_message(room, template, variables, client_msg_id.clone())
                    .await
                    .map(|notified| Some((notified.seq, notified.duplicate)))
            }
            "alert" => client
                .alert(
                    room,
                    ALERT_TEXT,
                    &[AlertChannel::Push],
                    client_msg_id.clone(),
                )
                .await
                .map(|notified| Some((notified.seq, notified.duplicate))),
            _ => client
                .send(
                    room,
                    client_msg_id.clone(),
                    format!("chaos {client_msg_id}"),
                )
                .await
                .map(Some),
        };
        let outcome = outcome_of(result);
        match &outcome {
            Outcome::Unknown { .. } => {
                let tries = self
                    .in_doubt
                    .get(&client_msg_id)
                    .map_or(0, |(_, tries)| *tries);
                if tries < MAX_RESENDS {
                    self.in_doubt
                        .insert(client_msg_id.clone(), (kind, tries + 1));
                } else {
                    self.in_doubt.remove(&client_msg_id);
                }
            }
            _ => {
                self.in_doubt.remove(&client_msg_id);
            }
        }
        self.record(kind, Some(client_msg_id), outcome);
    }

    async fn ack(&mut self, receipt: ReceiptKind) {
        let cursor = self.cursor();
        let Some(client) = self.client.clone() else {
            return;
        };
        if cursor == 0 {
            return;
        }
        let result = client
            .ack(&self.spec.consultation, Seq(cursor), receipt)
            .await;
        self.record("ack", None, outcome_of(result.map(|()| None)));
    }

    /// The patient closes the app for a while and comes back with
    /// `join … since` (on whichever node it reaches).
    async fn go_offline(&mut self, stop: &CancellationToken) {
        self.disconnect().await;
        self.record(
            "offline",
            None,
            Outcome::Ok {
                seq: None,
                duplicate: false,
            },
        );
        let away = self.rng.random_range(1000..=6000);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(away)) => {}
        }
    }

    fn record(&self, kind: &'static str, client_msg_id: Option<String>, outcome: Outcome) {
        let at_ms = self.shared.journal.now_ms();
        self.shared.journal.lock().ops.push(OpRecord {
            at_ms,
            actor: self.spec.index,
            node: self.node,
            room: self.spec.room,
            kind,
            client_msg_id,
            outcome,
        });
    }
}

/// Codes that say the command may have taken effect after all (the
/// database answered badly, or the node was going away).
fn in_doubt_code(code: &str) -> bool {
    matches!(code, "internal" | "unavailable")
}

fn outcome_of(result: Result<Option<(Seq, bool)>, ClientError>) -> Outcome {
    match result {
        Ok(sent) => Outcome::Ok {
            seq: sent.map(|(seq, _)| seq.0),
            duplicate: sent.is_some_and(|(_, duplicate)| duplicate),
        },
        Err(error @ ClientError::Command { .. }) if !in_doubt_code(error.kind()) => {
            Outcome::Refused {
                code: error.kind().to_owned(),
            }
        }
        Err(error) => Outcome::Unknown {
            error: error.kind().to_owned(),
        },
    }
}

/// Reads one connection's events until it ends, checking and recording
/// each.
async fn read_frames(
    client: Arc<Client>,
    spec: ActorSpec,
    shared: Shared,
    view: Arc<Mutex<View>>,
    connection: u32,
) {
    while let Some(frame) = client.next_event().await {
        let (kind, consultation, seq) = describe(&frame);
        let room = consultation.and_then(|id| shared.rooms.get(id).copied());
        if consultation.is_some() && room != Some(spec.room) {
            shared.journal.anomaly(
                "cross_room",
                format!(
                    "actor {} of room {} received a {kind} frame of room {room:?}",
                    spec.index, spec.room
                ),
            );
        }
        if let (ServerFrame::Message { message }, Some(room)) = (&frame, room)
            && room == spec.room
        {
            check_order(&spec, &shared, &view, message, connection);
        }
        let at_ms = shared.journal.now_ms();
        shared.journal.lock().frames.push(FrameRecord {
            at_ms,
            actor: spec.index,
            connection,
            kind,
            room,
            seq,
        });
    }
}

/// A message must be the next one: anything else is a gap or a repeat.
fn check_order(
    spec: &ActorSpec,
    shared: &Shared,
    view: &Mutex<View>,
    message: &consult_protocol::ChatMessage,
    connection: u32,
) {
    let Ok(mut held) = view.lock() else {
        return;
    };
    let next = held.seen.len() as u64 + 1;
    let seq = message.seq.0;
    let seen = Seen {
        sender: message.sender.as_str().to_owned(),
        client_msg_id: message.client_msg_id.clone(),
    };
    if seq == next {
        held.seen.push(Some(seen));
        return;
    }
    drop(held);
    if seq < next {
        shared.journal.anomaly(
            "duplicate_delivery",
            format!(
                "actor {} (room {}, connection {connection}) received seq {seq} again (holds 1..{})",
                spec.index,
                spec.room,
                next - 1
            ),
        );
    } else {
        shared.journal.anomaly(
            "gap",
            format!(
                "actor {} (room {}, connection {connection}) received seq {seq} after {}",
                spec.index,
                spec.room,
                next - 1
            ),
        );
        if let Ok(mut view) = view.lock() {
            view.seen.resize((seq - 1) as usize, None);
            view.seen.push(Some(seen));
        }
    }
}

/// A frame's type, the consultation it names, and its `seq`.
fn describe(frame: &ServerFrame) -> (&'static str, Option<&ConsultationId>, Option<u64>) {
    match frame {
        ServerFrame::Message { message } => (
            "message",
            Some(&message.consultation_id),
            Some(message.seq.0),
        ),
        ServerFrame::Receipt {
            consultation_id,
            seq,
            ..
        } => ("receipt", Some(consultation_id), Some(seq.0)),
        ServerFrame::Typing {
            consultation_id, ..
        } => ("typing", Some(consultation_id), None),
        ServerFrame::Presence {
            consultation_id, ..
        } => ("presence", Some(consultation_id), None),
        ServerFrame::Status {
            consultation_id, ..
        } => ("status", Some(consultation_id), None),
        ServerFrame::Notification { notification } => {
            ("notification", Some(&notification.consultation_id), None)
        }
        ServerFrame::Notifications { .. } => ("notifications", None, None),
        ServerFrame::Error { .. } => ("error", None, None),
        _ => ("other", None, None),
    }
}

/// Connects `actor` (if it is not) and waits until it holds `target`
/// messages, reconnecting when its connection drops, until `deadline`.
/// True when it got there, connected.
pub async fn settle(actor: &mut Actor, target: u64, deadline: Instant) -> Result<bool> {
    loop {
        if !actor.ensure_connected(deadline).await {
            return Ok(false);
        }
        if actor.cursor() >= target {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
