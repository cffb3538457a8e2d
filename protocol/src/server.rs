//! Frames the hub sends: command answers and room, dashboard and control
//! events.

use crate::codes::ErrorCode;
use crate::ids::{ClinicId, CommandId, ConsultationId, Seq, UserId};
use crate::model::{
    ChatMessage, ConsultationStatus, ConsultationView, DashboardEntry, Member, NotificationView,
    QuickTemplate, ReceiptKind, Role,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A frame from the hub. Internally tagged by `type`, in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to a successful `hello`.
    Welcome {
        /// Protocol version ([`crate::PROTOCOL_VERSION`]).
        protocol: u32,
        /// This connection's id, for support and logs.
        conn_id: String,
        /// The authenticated user.
        user: UserId,
        /// Its role.
        role: Role,
        /// Its clinic.
        clinic: ClinicId,
        /// How often the hub pings; a client silent for three times this is
        /// disconnected.
        heartbeat_secs: u64,
        /// Largest text frame the hub accepts, in bytes.
        max_frame_bytes: usize,
        /// The hub's clock.
        server_time: DateTime<Utc>,
        /// When the connection closes unless it is refreshed: the token's
        /// `exp` (the hub adds its leeway).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// A command succeeded.
    Ok {
        /// The command's id.
        id: CommandId,
        /// What the command produced, for commands that produce something.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<CommandResult>,
    },
    /// A command or frame was refused.
    Error {
        /// The command's id, when the frame had a readable one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<CommandId>,
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// A new message in a joined room (also used for replay on join).
    Message {
        /// The message.
        message: ChatMessage,
    },
    /// A member acknowledged messages up to `seq`.
    Receipt {
        /// The consultation.
        consultation_id: ConsultationId,
        /// Who acknowledged.
        user: UserId,
        /// Their role.
        role: Role,
        /// Highest sequence number covered.
        seq: Seq,
        /// Delivered or read.
        receipt: ReceiptKind,
    },
    /// A member started or stopped typing.
    Typing {
        /// The consultation.
        consultation_id: ConsultationId,
        /// Who.
        user: UserId,
        /// Their role.
        role: Role,
        /// Typing now or not.
        active: bool,
    },
    /// A member came online in the room or left it.
    Presence {
        /// The consultation.
        consultation_id: ConsultationId,
        /// Who.
        user: UserId,
        /// Their role.
        role: Role,
        /// In the room now or not.
        online: bool,
    },
    /// The consultation's status changed.
    Status {
        /// The consultation.
        consultation_id: ConsultationId,
        /// New status.
        status: ConsultationStatus,
        /// Previous status.
        previous: ConsultationStatus,
        /// Who changed it.
        changed_by: UserId,
        /// When.
        at: DateTime<Utc>,
        /// The consultation's revision after the change.
        rev: u64,
    },
    /// A change to one row of a watched "Active and Waiting" list. Rows whose
    /// status is no longer active or waiting should be removed.
    Dashboard {
        /// The row as it is now.
        entry: DashboardEntry,
    },
    /// A notification was queued or changed status; sent to staff watching
    /// the consultation's provider or clinic dashboard.
    Notification {
        /// The notification as it is now.
        notification: NotificationView,
    },
    /// The notifications one message queued (status `pending`), in one
    /// frame however many devices the patient has; sent to the same staff
    /// as `Notification`, which then reports each one's send attempts.
    Notifications {
        /// The queued notifications, all of one consultation.
        notifications: Vec<NotificationView>,
    },
}

/// The payload of an `ok`, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandResult {
    /// Answer to `ping`.
    Pong {
        /// The hub's clock.
        server_time: DateTime<Utc>,
    },
    /// Answer to `refresh`: the session now lasts until the new token's
    /// expiry.
    Refreshed {
        /// The new token's `exp`.
        expires_at: DateTime<Utc>,
    },
    /// Answer to `send`.
    Sent {
        /// The message's sequence number.
        seq: Seq,
        /// True when this `client_msg_id` was already stored; nothing new was
        /// written.
        duplicate: bool,
        /// When the hub stored it.
        sent_at: DateTime<Utc>,
    },
    /// Answer to `join`, sent after any replayed `message` frames.
    Joined {
        /// The consultation.
        consultation: ConsultationView,
        /// Members connected to the room now, across the cluster's view of
        /// this node.
        members: Vec<Member>,
        /// How many messages were replayed before this answer.
        replayed: u32,
    },
    /// Answer to `history`, oldest first.
    History {
        /// The messages.
        messages: Vec<ChatMessage>,
        /// True when older messages remain.
        has_more: bool,
    },
    /// Answer to `open`, `ready`, `enter`, `end`, `cancel`.
    Status {
        /// The consultation.
        consultation: ConsultationView,
    },
    /// Answer to `watch_dashboard`: the list now; deltas follow as
    /// `dashboard` frames.
    DashboardSnapshot {
        /// Active and waiting consultations, oldest waiting first.
        entries: Vec<DashboardEntry>,
    },
    /// Answer to `quick_message` and `alert`.
    Notified {
        /// The chat message's sequence number.
        seq: Seq,
        /// True when this `client_msg_id` was already stored; nothing new was
        /// written or queued.
        duplicate: bool,
        /// When the hub stored it.
        sent_at: DateTime<Utc>,
        /// The push and SMS notifications queued for it.
        notifications: Vec<NotificationView>,
    },
    /// Answer to `list_templates`.
    Templates {
        /// The templates, in drop-down order.
        templates: Vec<QuickTemplate>,
    },
    /// Answer to `save_template`.
    Template {
        /// The template as stored.
        template: QuickTemplate,
    },
    /// Answer to `list_consultations`, by booked start.
    Consultations {
        /// The consultations.
        consultations: Vec<ConsultationView>,
    },
    /// Answer to `list_notifications`, oldest first.
    Notifications {
        /// The notifications: the newest, as many as fit.
        notifications: Vec<NotificationView>,
        /// Older notifications were left out.
        #[serde(default)]
        has_more: bool,
    },
}

impl ServerFrame {
    /// Builds an `error` frame.
    pub fn error(id: Option<CommandId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }

    /// Builds an `ok` frame.
    pub fn ok(id: CommandId, result: Option<CommandResult>) -> Self {
        Self::Ok { id, result }
    }

    /// Encodes the frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and
        // no field has a fallible Serialize impl.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_owned()
        })
    }
}
