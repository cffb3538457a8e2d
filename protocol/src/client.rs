//! Frames a client sends, and the decoder that classifies bad ones.
//!
//! Every command carries a client-chosen `id`, echoed by the hub's `ok` or
//! `error`. `hello` is the only frame without one and must come first.

use crate::codes::ErrorCode;
use crate::ids::{CommandId, ConsultationId, Seq, UserId};
use crate::model::{AlertChannel, DevicePlatform, ReceiptKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A frame from a client. Internally tagged by `type`, in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticates the connection. Must be the first frame.
    Hello {
        /// A JWT issued by the host platform (or `consult-hub token`).
        token: String,
    },
    /// Replaces the connection's token with a fresh one for the same user,
    /// clinic and role, moving the session's expiry; answered by `ok` with a
    /// `refreshed` result.
    Refresh {
        /// Command id.
        id: CommandId,
        /// The new JWT.
        token: String,
    },
    /// Round-trip check; answered by `ok` with a `pong` result.
    Ping {
        /// Command id.
        id: CommandId,
    },
    /// Joins a consultation's room; with `since`, replays what came after.
    Join {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// The last sequence number the client saw; omitted for none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Seq>,
    },
    /// Leaves a room.
    Leave {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
    /// Sends a chat message. Retrying with the same `client_msg_id` is safe.
    Send {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// The sender's idempotency key for this message.
        client_msg_id: String,
        /// The text.
        body: String,
    },
    /// Starts or stops the typing indicator.
    Typing {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// Typing now or not.
        active: bool,
    },
    /// Acknowledges messages up to and including `seq`.
    Ack {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// Highest sequence number covered.
        seq: Seq,
        /// Delivered or read.
        receipt: ReceiptKind,
    },
    /// Pages through stored messages, newest first before `before`.
    History {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// Only messages with a lower sequence number; omitted for the newest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Seq>,
        /// At most this many (1 to 200, default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Staff: opens a scheduled consultation (it starts waiting for the patient).
    Open {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
    /// Patient: "I'm Ready for My Appointment".
    Ready {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
    /// Enters the consultation. A provider entering starts it; a patient may
    /// enter once ready, or earlier if staff messaged first.
    Enter {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
    /// Staff: ends a consultation in progress.
    End {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
    /// Staff: cancels a consultation that has not ended.
    Cancel {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
    /// Staff: subscribes to the "Active and Waiting" list. A provider sees its
    /// own; an admin sees the whole clinic, or one provider's if named.
    WatchDashboard {
        /// Command id.
        id: CommandId,
        /// Admins only: restrict to this provider.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_id: Option<UserId>,
    },
    /// Stops the dashboard subscription.
    UnwatchDashboard {
        /// Command id.
        id: CommandId,
    },
    /// Staff: sends a Quick Message from a template, with or without having
    /// entered (or joined) the consultation.
    QuickMessage {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// The template.
        template_id: String,
        /// Values for the template's `{variables}`.
        #[serde(default)]
        variables: BTreeMap<String, String>,
        /// The sender's idempotency key.
        client_msg_id: String,
    },
    /// Staff: "Alert Patient". A short generic text, checked for privacy,
    /// sent in the chat and on the ticked channels.
    Alert {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
        /// The text: no names, no health details.
        body: String,
        /// Push and/or SMS.
        channels: Vec<AlertChannel>,
        /// The sender's idempotency key.
        client_msg_id: String,
    },
    /// Staff: the Quick Message templates available (clinic defaults plus
    /// the provider's own).
    ListTemplates {
        /// Command id.
        id: CommandId,
        /// Admins: the provider whose list to show; default: clinic only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_id: Option<UserId>,
    },
    /// Staff: creates or updates a template.
    SaveTemplate {
        /// Command id.
        id: CommandId,
        /// The template to update; absent to create one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template_id: Option<String>,
        /// Whose template it is. Providers may only name themselves, and a
        /// provider leaving it out creates its own; an admin leaving it out
        /// creates a clinic default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_id: Option<UserId>,
        /// Short label.
        title: String,
        /// Text with `{variable}` placeholders.
        body: String,
        /// Order in the drop-down.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<i32>,
    },
    /// Staff: deletes a template.
    DeleteTemplate {
        /// Command id.
        id: CommandId,
        /// The template.
        template_id: String,
    },
    /// Patient: registers (or updates) a push token of this device.
    RegisterDevice {
        /// Command id.
        id: CommandId,
        /// FCM or APNs.
        platform: DevicePlatform,
        /// The platform's device token.
        token: String,
        /// Whether the person allows notifications on this device.
        notifications_enabled: bool,
    },
    /// Patient: gives or withdraws consent to text messages.
    SetSmsConsent {
        /// Command id.
        id: CommandId,
        /// Consent now.
        consent: bool,
    },
    /// Patient app: it went to the foreground or the background.
    Visibility {
        /// Command id.
        id: CommandId,
        /// In the foreground now.
        foreground: bool,
    },
    /// The consultations the principal may act on: a patient its own, a
    /// provider those it is assigned to, an admin its clinic's. Ended and
    /// cancelled ones only when asked.
    ListConsultations {
        /// Command id.
        id: CommandId,
        /// Include ended and cancelled consultations.
        #[serde(default)]
        include_closed: bool,
    },
    /// Staff: the notifications of a consultation.
    ListNotifications {
        /// Command id.
        id: CommandId,
        /// The consultation.
        consultation_id: ConsultationId,
    },
}

impl ClientFrame {
    /// The command id, for every frame but `hello`.
    pub fn id(&self) -> Option<&CommandId> {
        match self {
            Self::Hello { .. } => None,
            Self::Ping { id }
            | Self::Refresh { id, .. }
            | Self::Join { id, .. }
            | Self::Leave { id, .. }
            | Self::Send { id, .. }
            | Self::Typing { id, .. }
            | Self::Ack { id, .. }
            | Self::History { id, .. }
            | Self::Open { id, .. }
            | Self::Ready { id, .. }
            | Self::Enter { id, .. }
            | Self::End { id, .. }
            | Self::Cancel { id, .. }
            | Self::WatchDashboard { id, .. }
            | Self::UnwatchDashboard { id }
            | Self::QuickMessage { id, .. }
            | Self::Alert { id, .. }
            | Self::ListTemplates { id, .. }
            | Self::SaveTemplate { id, .. }
            | Self::DeleteTemplate { id, .. }
            | Self::RegisterDevice { id, .. }
            | Self::SetSmsConsent { id, .. }
            | Self::Visibility { id, .. }
            | Self::ListConsultations { id, .. }
            | Self::ListNotifications { id, .. } => Some(id),
        }
    }

    /// The consultation a command names, for the commands that name one.
    pub fn consultation_id(&self) -> Option<&ConsultationId> {
        match self {
            Self::Join {
                consultation_id, ..
            }
            | Self::Leave {
                consultation_id, ..
            }
            | Self::Send {
                consultation_id, ..
            }
            | Self::Typing {
                consultation_id, ..
            }
            | Self::Ack {
                consultation_id, ..
            }
            | Self::History {
                consultation_id, ..
            }
            | Self::Open {
                consultation_id, ..
            }
            | Self::Ready {
                consultation_id, ..
            }
            | Self::Enter {
                consultation_id, ..
            }
            | Self::End {
                consultation_id, ..
            }
            | Self::Cancel {
                consultation_id, ..
            }
            | Self::QuickMessage {
                consultation_id, ..
            }
            | Self::Alert {
                consultation_id, ..
            }
            | Self::ListNotifications {
                consultation_id, ..
            } => Some(consultation_id),
            _ => None,
        }
    }

    /// Every `type` a client frame may have, as [`Self::kind`] names them.
    pub const KINDS: [&'static str; 26] = [
        "hello",
        "ping",
        "refresh",
        "join",
        "leave",
        "send",
        "typing",
        "ack",
        "history",
        "open",
        "ready",
        "enter",
        "end",
        "cancel",
        "watch_dashboard",
        "unwatch_dashboard",
        "quick_message",
        "alert",
        "list_templates",
        "save_template",
        "delete_template",
        "register_device",
        "set_sms_consent",
        "visibility",
        "list_consultations",
        "list_notifications",
    ];

    /// The frame's `type` as sent on the wire, for logs and metrics (one of
    /// [`Self::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Ping { .. } => "ping",
            Self::Refresh { .. } => "refresh",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Send { .. } => "send",
            Self::Typing { .. } => "typing",
            Self::Ack { .. } => "ack",
            Self::History { .. } => "history",
            Self::Open { .. } => "open",
            Self::Ready { .. } => "ready",
            Self::Enter { .. } => "enter",
            Self::End { .. } => "end",
            Self::Cancel { .. } => "cancel",
            Self::WatchDashboard { .. } => "watch_dashboard",
            Self::UnwatchDashboard { .. } => "unwatch_dashboard",
            Self::QuickMessage { .. } => "quick_message",
            Self::Alert { .. } => "alert",
            Self::ListTemplates { .. } => "list_templates",
            Self::SaveTemplate { .. } => "save_template",
            Self::DeleteTemplate { .. } => "delete_template",
            Self::RegisterDevice { .. } => "register_device",
            Self::SetSmsConsent { .. } => "set_sms_consent",
            Self::Visibility { .. } => "visibility",
            Self::ListConsultations { .. } => "list_consultations",
            Self::ListNotifications { .. } => "list_notifications",
        }
    }
}

/// Why a text frame could not be decoded, with the command id if one was
/// readable so the `error` frame can echo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// `invalid_json`, `unknown_type` or `invalid_frame`.
    pub code: ErrorCode,
    /// A human-readable explanation, safe to send to the client.
    pub message: String,
    /// The frame's `id`, when it had a string one.
    pub id: Option<CommandId>,
}

/// Decodes one text frame.
///
/// # Errors
///
/// Returns a [`DecodeError`] with `invalid_json` when the text is not JSON,
/// `unknown_type` when `type` names no frame, and `invalid_frame` when a field
/// is missing or malformed.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, DecodeError> {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => Ok(frame),
        Err(first_error) => Err(classify(text, first_error)),
    }
}

/// Works out which kind of bad frame `text` is. Only runs on the error path.
fn classify(text: &str, first_error: serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return DecodeError {
                code: ErrorCode::InvalidJson,
                message: format!("frame is not valid JSON: {error}"),
                id: None,
            };
        }
    };
    let id = value
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(CommandId::from);
    let Some(object) = value.as_object() else {
        return DecodeError {
            code: ErrorCode::InvalidFrame,
            message: "frame must be a JSON object".to_owned(),
            id,
        };
    };
    match object.get("type") {
        None => DecodeError {
            code: ErrorCode::InvalidFrame,
            message: "missing field `type`".to_owned(),
            id,
        },
        Some(serde_json::Value::String(kind)) if !is_known_type(kind) => DecodeError {
            code: ErrorCode::UnknownType,
            message: format!("unknown frame type `{kind}`"),
            id,
        },
        Some(_) => DecodeError {
            code: ErrorCode::InvalidFrame,
            message: first_error.to_string(),
            id,
        },
    }
}

fn is_known_type(kind: &str) -> bool {
    ClientFrame::KINDS.contains(&kind)
}

#[cfg(test)]
mod tests;
