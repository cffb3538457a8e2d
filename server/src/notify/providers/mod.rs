//! Push and SMS provider clients: FCM, APNs, Twilio, a signed webhook, and
//! the log-only default.
//!
//! Each client holds its configured base URL and one shared
//! `reqwest::Client`. `send` makes exactly one delivery attempt (plus at most
//! one retry after refreshing an expired provider credential) and maps the
//! answer to [`Delivered`] or [`SendError`]. Scheduling, backoff and attempt
//! counting belong to the outbox worker, not here.
//!
//! These modules must not import the store, sessions or the hub, and must
//! never log secrets, access tokens, device tokens, phone numbers or message
//! text: only idempotency keys, consultation ids, provider ids and statuses.
//!
//! A [`SendError::Permanent`] means this message can never succeed as it is
//! (invalid number, rejected payload); [`SendError::DeviceGone`], that the
//! push service will never deliver to this device token. Failures of our own
//! provider credentials are [`SendError::Retryable`]: fixing the
//! configuration makes the same message deliverable.

pub mod apns;
pub mod fcm;
pub mod log;
mod transport;
pub mod twilio;
pub mod webhook;

#[cfg(test)]
mod test_support;

use std::path::PathBuf;

pub use apns::{ApnsClient, ApnsConfig};
pub use fcm::{FcmClient, FcmConfig};
pub use log::LogClient;
pub use twilio::{TwilioClient, TwilioConfig, verify_inbound_signature};
pub use webhook::{WebhookClient, WebhookConfig};

/// Default time to establish a connection to a provider.
pub const CONNECT_TIMEOUT_SECS: u64 = 5;
/// Default time one provider request may take, connection included.
pub const REQUEST_TIMEOUT_SECS: u64 = 10;

/// A push notification for one device.
#[derive(Clone, Copy)]
pub struct PushMessage<'a> {
    /// Stable key of this notification; the same on every attempt.
    pub idempotency_key: &'a str,
    /// The FCM registration token or APNs device token.
    pub device_token: &'a str,
    /// Notification title.
    pub title: &'a str,
    /// Notification body.
    pub body: &'a str,
    /// Consultation the notification is about, passed as data.
    pub consultation_id: &'a str,
}

/// A text message for one phone number.
#[derive(Clone, Copy)]
pub struct SmsMessage<'a> {
    /// Stable key of this notification; the same on every attempt.
    pub idempotency_key: &'a str,
    /// Destination number in E.164 form.
    pub to: &'a str,
    /// Message text.
    pub body: &'a str,
}

/// A channel-neutral notification, as posted to a webhook or logged.
#[derive(Clone, Copy)]
pub struct WebhookMessage<'a> {
    /// Stable key of this notification; the same on every attempt.
    pub idempotency_key: &'a str,
    /// `"push"` or `"sms"`.
    pub channel: &'a str,
    /// The user the notification is for.
    pub recipient_id: &'a str,
    /// Consultation the notification is about.
    pub consultation_id: &'a str,
    /// Notification text.
    pub text: &'a str,
}

// Hand-written so that a stray `{:?}` can never print a device token, a
// phone number or message text.
impl std::fmt::Debug for PushMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushMessage")
            .field("idempotency_key", &self.idempotency_key)
            .field("consultation_id", &self.consultation_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SmsMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsMessage")
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookMessage")
            .field("idempotency_key", &self.idempotency_key)
            .field("channel", &self.channel)
            .field("consultation_id", &self.consultation_id)
            .finish_non_exhaustive()
    }
}

/// A provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The provider's id for the message (FCM name, APNs id, Twilio SID…).
    pub provider_message_id: String,
}

/// Why a delivery attempt failed. The text names statuses and provider
/// error codes only, never recipients or content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: network failure, 429, 5xx, or our own
    /// provider credentials rejected.
    #[error("retryable delivery failure: {0}")]
    Retryable(String),
    /// This message can never be delivered as it is: invalid or
    /// unsubscribed number, rejected payload, other 4xx.
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
    /// The push service says this device token will never work again
    /// (FCM `UNREGISTERED` or `SENDER_ID_MISMATCH`; APNs `Unregistered`,
    /// `BadDeviceToken`, `DeviceTokenNotForTopic`, or a token that is not
    /// hexadecimal): permanent, and the registration can be forgotten.
    #[error("permanent delivery failure: {0}")]
    DeviceGone(String),
}

impl SendError {
    /// Whether the outbox should schedule another attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// Whether the device token itself is dead, so its registration can go.
    pub fn device_is_gone(&self) -> bool {
        matches!(self, Self::DeviceGone(_))
    }
}

/// A provider client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    /// A key or credentials file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    ReadFile {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A key or credentials file was read but is not usable.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    InvalidKeyFile {
        /// The configured path.
        path: PathBuf,
        /// What the file should have been.
        what: &'static str,
        /// What is wrong with it (never its contents).
        reason: String,
    },
    /// A configuration value is unusable.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The configuration field, e.g. `base_url`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
}
