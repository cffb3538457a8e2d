//! Roles, statuses and the records that frames carry.

use crate::ids::{ClinicId, ConsultationId, Seq, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who a principal is. Carried in the JWT `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// A patient: may act only on its own consultations.
    Patient,
    /// A provider: may act on the consultations it is assigned to.
    Provider,
    /// A clinic admin: may act on every consultation of its clinic.
    Admin,
}

impl Role {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Provider => "provider",
            Self::Admin => "admin",
        }
    }

    /// Providers and admins are "staff": the clinic side of a consultation.
    pub fn is_staff(self) -> bool {
        matches!(self, Self::Provider | Self::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "patient" => Ok(Self::Patient),
            "provider" => Ok(Self::Provider),
            "admin" => Ok(Self::Admin),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A name that does not match any variant of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName(pub String);

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown name `{}`", self.0)
    }
}

impl std::error::Error for UnknownName {}

/// Where a consultation stands. The console shows `waiting_for_patient` in
/// gold ("Waiting for Patient") and `patient_ready` in green ("Patient is
/// Ready").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConsultationStatus {
    /// Booked; not yet open.
    Scheduled,
    /// Open and waiting for the patient (gold).
    WaitingForPatient,
    /// The patient tapped "I'm Ready for My Appointment" (green).
    PatientReady,
    /// The provider has entered.
    InProgress,
    /// Finished.
    Ended,
    /// Called off before it ended.
    Cancelled,
}

impl ConsultationStatus {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::WaitingForPatient => "waiting_for_patient",
            Self::PatientReady => "patient_ready",
            Self::InProgress => "in_progress",
            Self::Ended => "ended",
            Self::Cancelled => "cancelled",
        }
    }

    /// Ended and cancelled consultations accept no more changes or messages.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ended | Self::Cancelled)
    }

    /// Shown on the "Active and Waiting" list.
    pub fn is_active_or_waiting(self) -> bool {
        matches!(
            self,
            Self::WaitingForPatient | Self::PatientReady | Self::InProgress
        )
    }
}

impl fmt::Display for ConsultationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsultationStatus {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "scheduled" => Ok(Self::Scheduled),
            "waiting_for_patient" => Ok(Self::WaitingForPatient),
            "patient_ready" => Ok(Self::PatientReady),
            "in_progress" => Ok(Self::InProgress),
            "ended" => Ok(Self::Ended),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// What kind of message a chat entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MessageKind {
    /// Typed by a participant.
    Chat,
    /// Sent from a Quick Message template.
    Quick,
    /// Sent with the "Alert Patient" button.
    Alert,
    /// Written by the hub itself.
    System,
}

impl MessageKind {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Quick => "quick",
            Self::Alert => "alert",
            Self::System => "system",
        }
    }
}

impl FromStr for MessageKind {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "chat" => Ok(Self::Chat),
            "quick" => Ok(Self::Quick),
            "alert" => Ok(Self::Alert),
            "system" => Ok(Self::System),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A delivery receipt sent by a client for a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReceiptKind {
    /// The app received the message.
    Delivered,
    /// The person saw the message.
    Read,
}

/// One persisted chat entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessage {
    /// The consultation it belongs to.
    pub consultation_id: ConsultationId,
    /// Its position in the consultation.
    pub seq: Seq,
    /// Who sent it.
    pub sender: UserId,
    /// The sender's role.
    pub sender_role: Role,
    /// Chat, quick, alert or system.
    pub kind: MessageKind,
    /// The text.
    pub body: String,
    /// The sender's idempotency key, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// When the hub stored it.
    pub sent_at: DateTime<Utc>,
}

/// A consultation as a member of its room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsultationView {
    /// Its id.
    pub id: ConsultationId,
    /// The clinic it belongs to.
    pub clinic_id: ClinicId,
    /// The assigned provider.
    pub provider_id: UserId,
    /// The patient.
    pub patient_id: UserId,
    /// Current status.
    pub status: ConsultationStatus,
    /// Booked start time.
    pub scheduled_at: DateTime<Utc>,
    /// When it started waiting for the patient, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// Whether staff messaged the patient before the patient was ready.
    pub staff_messaged_first: bool,
    /// Highest message sequence number.
    pub last_seq: Seq,
    /// Revision, bumped by every status change.
    pub rev: u64,
}

/// One connected member of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// The member's user id.
    pub user: UserId,
    /// The member's role.
    pub role: Role,
}

/// One row of the "Active and Waiting" list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardEntry {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// Its provider.
    pub provider_id: UserId,
    /// Its patient.
    pub patient_id: UserId,
    /// The patient's display name, for the console list only.
    pub patient_name: String,
    /// Current status.
    pub status: ConsultationStatus,
    /// Booked start time.
    pub scheduled_at: DateTime<Utc>,
    /// When it started waiting for the patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// Messages from the patient the provider has not read.
    pub unread: u64,
    /// Revision of the entry; a client keeps the highest it has seen.
    pub rev: u64,
}

/// A channel the "Alert Patient" form can tick, and the channels
/// notifications go out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertChannel {
    /// Push notification to the patient's devices.
    Push,
    /// Text message to the patient's phone.
    Sms,
}

impl AlertChannel {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Sms => "sms",
        }
    }
}

impl FromStr for AlertChannel {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "push" => Ok(Self::Push),
            "sms" => Ok(Self::Sms),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A push platform a device registers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DevicePlatform {
    /// Firebase Cloud Messaging (Android, and iOS through Firebase).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl DevicePlatform {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fcm => "fcm",
            Self::Apns => "apns",
        }
    }
}

impl FromStr for DevicePlatform {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "fcm" => Ok(Self::Fcm),
            "apns" => Ok(Self::Apns),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A Quick Message template: a clinic default (`provider_id` absent) or one
/// provider's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuickTemplate {
    /// Its id.
    pub id: String,
    /// The clinic.
    pub clinic_id: ClinicId,
    /// The provider it belongs to; absent for a clinic default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<UserId>,
    /// Short label for the drop-down.
    pub title: String,
    /// The text, with `{variable}` placeholders.
    pub body: String,
    /// Order in the drop-down, lowest first.
    pub position: i32,
    /// The placeholders `body` uses, in order of first use.
    pub variables: Vec<String>,
}

/// Why a notification was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NotificationReason {
    /// The patient had no live connection.
    Offline,
    /// No delivered receipt within the clinic's escalation time.
    Escalation,
    /// Still unread after the clinic's SMS escalation time.
    Unread,
    /// A Quick Message while the patient's app was in the background.
    Quick,
    /// The provider pressed "Alert Patient".
    Alert,
}

impl NotificationReason {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Escalation => "escalation",
            Self::Unread => "unread",
            Self::Quick => "quick",
            Self::Alert => "alert",
        }
    }
}

impl FromStr for NotificationReason {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "offline" => Ok(Self::Offline),
            "escalation" => Ok(Self::Escalation),
            "unread" => Ok(Self::Unread),
            "quick" => Ok(Self::Quick),
            "alert" => Ok(Self::Alert),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NotificationStatus {
    /// Waiting for its time, or for a retry.
    Pending,
    /// Being sent by a worker now.
    Sending,
    /// Accepted by the provider.
    Sent,
    /// Given up after retries, or refused for good by the provider.
    Failed,
    /// Not needed any more: the patient came back or acknowledged.
    Cancelled,
}

impl NotificationStatus {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for NotificationStatus {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "pending" => Ok(Self::Pending),
            "sending" => Ok(Self::Sending),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// One push or SMS notification, as staff see it. Carries no text and no
/// device token or phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationView {
    /// Its id.
    pub id: String,
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The patient.
    pub recipient: UserId,
    /// Push or SMS.
    pub channel: AlertChannel,
    /// `fcm`, `apns`, `twilio`, `webhook` or `log`.
    pub provider: String,
    /// Why it was queued.
    pub reason: NotificationReason,
    /// Where it stands.
    pub status: NotificationStatus,
    /// Send attempts so far.
    pub attempts: u32,
    /// The message that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_seq: Option<Seq>,
    /// When it is (or was) due.
    pub due_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Why the last attempt failed, as a short code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
