//! The floor: a room hub that speaks the same protocol over the same
//! WebSocket stack as consult-hub (axum on tokio-tungstenite with the hub's
//! buffer sizes, `TCP_NODELAY`, a multi-threaded runtime) and does nothing
//! else. No storage, no token
//! check, no membership check, no notifications, no presence, no rate
//! limits: `send` gets the room's next `seq`, a `message` frame to every
//! connection joined to the room (the sender's own included) and an `ok`;
//! an `ack` in a joined room gets a `receipt` frame to every connection
//! joined to it and an `ok`.
//!
//! `consult-floor serve` is started by the harness exactly as a hub is
//! (`--spawn-hub target/release/consult-floor`): it listens on
//! `CONSULT_LISTEN` and answers the two REST calls the scenarios set up
//! with (`POST /v1/consultations`, `POST /v1/tokens`), `/readyz` and
//! `/metrics`. Measured beside the hub in the same session it gives the
//! cost of the message path's sockets and framing alone, so the hub's
//! figures can be read as a multiple of it (docs/benchmarks.md) on a
//! machine whose speed moves from day to day.
//!
//! With a [`StoreConfig`] it is the stored floor (`store.rs`): every
//! message is also written to a SQLite file as the hub's writer writes it,
//! so that the hub's cost beyond storage can be read too; or to an
//! append-only file (`log_store.rs`), to see what storing would cost that
//! way.
//!
//! A token is the JSON of `(user, role, clinic)`, signed by nothing: this
//! is a yardstick for a loopback benchmark, never a server to expose.

mod log_store;
mod session;
mod store;

pub use store::{StoreConfig, StoreKind};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use chrono::Utc;
use consult_protocol::{
    ClinicId, ConsultationId, ConsultationStatus, ConsultationView, Member, Role, Seq, UserId,
};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;

/// Where the floor listens unless `CONSULT_LISTEN` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Frames a connection may have queued before further ones are dropped
/// (and counted): as deep as the hub's default outbound queue.
const OUTBOUND_CAPACITY: usize = 1024;

/// The WebSocket codec's buffers and limits, as the hub's defaults set them
/// (`session.read_buffer_bytes`, `session.write_buffer_bytes`,
/// `session.hard_message_bytes` and four times that for the write ceiling):
/// the codec's own defaults (128 KiB buffers, zeroed as reads grow them)
/// would make the floor slower than the hub.
const READ_BUFFER_BYTES: usize = 1024;
const WRITE_BUFFER_BYTES: usize = 1024;
const HARD_MESSAGE_BYTES: usize = 256 * 1024;

/// Serves the floor on `listen` until the process ends; with `store`, the
/// stored floor.
///
/// # Errors
///
/// When the address cannot be bound, the store cannot start, or serving
/// fails.
pub async fn serve(listen: SocketAddr, store: Option<StoreConfig>) -> Result<()> {
    let floor = Floor {
        store: store.as_ref().map(store::Store::start).transpose()?,
        ..Floor::default()
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (address in use?)"))?;
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, router(Arc::new(floor)))
        .await
        .context("serving")
}

fn router(floor: Arc<Floor>) -> Router {
    Router::new()
        .route("/readyz", get(|| async { StatusCode::OK }))
        .route("/metrics", get(|| async { "" }))
        .route("/v1/consultations", post(create_consultation))
        .route("/v1/tokens", post(issue_token))
        .route("/v1/ws", get(upgrade))
        .with_state(floor)
}

/// The rooms, the counter connection ids are made from, and the stored
/// floor's writer.
#[derive(Debug, Default)]
pub(crate) struct Floor {
    rooms: Mutex<HashMap<ConsultationId, Room>>,
    next_conn: AtomicU64,
    store: Option<store::Store>,
}

/// One room: its view, its last `seq`, and who is joined.
#[derive(Debug)]
struct Room {
    view: ConsultationView,
    members: Vec<Joined>,
}

/// A connection joined to a room.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    conn: u64,
    member: Member,
    outbound: mpsc::Sender<Utf8Bytes>,
}

impl Floor {
    fn rooms(&self) -> MutexGuard<'_, HashMap<ConsultationId, Room>> {
        // Every change under the lock is a single insert or removal.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `joined` to the room and returns its view and members; `None`
    /// for an unknown room.
    pub(crate) fn join(
        &self,
        room: &ConsultationId,
        joined: Joined,
    ) -> Option<(ConsultationView, Vec<Member>)> {
        let mut rooms = self.rooms();
        let room = rooms.get_mut(room)?;
        if !room.members.iter().any(|member| member.conn == joined.conn) {
            room.members.push(joined);
        }
        let members = room
            .members
            .iter()
            .map(|joined| joined.member.clone())
            .collect();
        Some((room.view.clone(), members))
    }

    /// Removes connection `conn` from `room`.
    pub(crate) fn leave(&self, room: &ConsultationId, conn: u64) {
        if let Some(room) = self.rooms().get_mut(room) {
            room.members.retain(|joined| joined.conn != conn);
        }
    }

    /// The room's next `seq` and the connections joined to it; `None` for an
    /// unknown room.
    pub(crate) fn next_seq(&self, room: &ConsultationId) -> Option<(Seq, Vec<Joined>)> {
        let mut rooms = self.rooms();
        let room = rooms.get_mut(room)?;
        room.view.last_seq = Seq(room.view.last_seq.get() + 1);
        Some((room.view.last_seq, room.members.clone()))
    }

    /// The connections joined to `room` (none for an unknown room).
    pub(crate) fn members(&self, room: &ConsultationId) -> Vec<Joined> {
        self.rooms()
            .get(room)
            .map(|room| room.members.clone())
            .unwrap_or_default()
    }

    /// True when the room exists.
    pub(crate) fn has_room(&self, room: &ConsultationId) -> bool {
        self.rooms().contains_key(room)
    }

    /// Records that the stored floor wrote `seq` in the room, and returns
    /// the connections joined to it.
    pub(crate) fn stored(&self, room: &ConsultationId, seq: Seq) -> Vec<Joined> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(room) else {
            return Vec::new();
        };
        room.view.last_seq = room.view.last_seq.max(seq);
        room.members.clone()
    }
}

impl Joined {
    pub(crate) fn new(conn: u64, member: Member, outbound: mpsc::Sender<Utf8Bytes>) -> Self {
        Self {
            conn,
            member,
            outbound,
        }
    }

    /// Queues `frame` for this connection; a full queue drops it.
    pub(crate) fn deliver(&self, frame: &Utf8Bytes) {
        if self.outbound.try_send(frame.clone()).is_err() {
            tracing::warn!(conn = self.conn, "outbound queue full: frame dropped");
        }
    }
}

#[derive(Deserialize)]
struct NewConsultation {
    clinic_id: ClinicId,
    provider: Person,
    patient: Person,
}

#[derive(Deserialize)]
struct Person {
    id: UserId,
}

async fn create_consultation(
    State(floor): State<Arc<Floor>>,
    Json(new): Json<NewConsultation>,
) -> impl IntoResponse {
    // Named as the hub names a consultation (a random UUID): the stored
    // floor's index keys are then as wide, and as scattered, as the hub's.
    let id = ConsultationId(uuid::Uuid::new_v4().to_string());
    if let Some(store) = &floor.store {
        let stored = store
            .add_room(
                id.as_str(),
                new.clinic_id.as_str(),
                new.provider.id.as_str(),
                new.patient.id.as_str(),
            )
            .await;
        if let Err(error) = stored {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "code": "internal", "message": error })),
            );
        }
    }
    let view = ConsultationView {
        id: id.clone(),
        clinic_id: new.clinic_id,
        provider_id: new.provider.id,
        patient_id: new.patient.id,
        status: ConsultationStatus::Scheduled,
        scheduled_at: Utc::now(),
        waiting_since: None,
        staff_messaged_first: false,
        last_seq: Seq(0),
        rev: 1,
    };
    floor.rooms().insert(
        id.clone(),
        Room {
            view,
            members: Vec::new(),
        },
    );
    (StatusCode::CREATED, Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct TokenRequest {
    user: UserId,
    role: Role,
    clinic: ClinicId,
}

async fn issue_token(Json(request): Json<TokenRequest>) -> impl IntoResponse {
    let token = json!([request.user, request.role, request.clinic]).to_string();
    (StatusCode::CREATED, Json(json!({ "token": token })))
}

async fn upgrade(State(floor): State<Arc<Floor>>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade
        .max_message_size(HARD_MESSAGE_BYTES)
        .max_frame_size(HARD_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(HARD_MESSAGE_BYTES * 4)
        .on_upgrade(move |socket| session::run(socket, floor, OUTBOUND_CAPACITY))
}

#[cfg(test)]
mod tests;
