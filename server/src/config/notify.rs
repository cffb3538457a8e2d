//! The `[notify]` section: push and SMS routes, provider credentials, the
//! hub's default escalation policy, alert rate limits and the outbox
//! worker's timing.

use crate::notify::providers::{ApnsConfig, FcmConfig, TwilioConfig, WebhookConfig};
use serde::{Deserialize, Serialize};

/// No delivered receipt within this → push (milliseconds).
pub const PUSH_AFTER_MS: u64 = 30_000;
/// Patient offline → push after this grace window (milliseconds).
pub const OFFLINE_GRACE_MS: u64 = 10_000;
/// How often the outbox worker looks for due notifications (milliseconds).
pub const OUTBOX_POLL_MS: u64 = 500;
/// Send attempts before a notification fails for good.
pub const OUTBOX_MAX_ATTEMPTS: u32 = 5;
/// First retry delay; doubles with every attempt (milliseconds).
pub const OUTBOX_RETRY_BASE_MS: u64 = 2_000;
/// How long a claimed notification is reserved for its sender (seconds).
pub const OUTBOX_LEASE_SECS: u64 = 60;
/// How long a patient's devices and SMS consent are cached (milliseconds).
pub const REACH_CACHE_MS: u64 = 5_000;

/// The most `notify.max_devices_per_patient` may be: one message queues a
/// push per device, and staff get a frame (and the sender an `ok`) listing
/// them all.
pub const MAX_DEVICES_PER_PATIENT: u32 = 100;

/// How push notifications are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushRoute {
    /// Logged only (the embedded default); the outbox shows them.
    Log,
    /// FCM and APNs, by the device's platform.
    Native,
    /// Posted to the signed webhook.
    Webhook,
}

/// How SMS are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsRoute {
    /// Logged only (the embedded default).
    Log,
    /// Twilio's Messages API.
    Twilio,
    /// Posted to the signed webhook.
    Webhook,
}

/// At most `max` per `window_secs` per consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// How many.
    pub max: u32,
    /// Per how many seconds.
    pub window_secs: u64,
}

/// Push, SMS and escalation settings. Clinics may override the escalation
/// times with their own policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `log`, `native` or `webhook`.
    pub push: PushRoute,
    /// `log`, `twilio` or `webhook`.
    pub sms: SmsRoute,
    /// FCM HTTP v1, for `push = "native"`.
    #[serde(serialize_with = "super::redact::hidden")]
    pub fcm: Option<FcmConfig>,
    /// APNs, for `push = "native"`.
    #[serde(serialize_with = "super::redact::hidden")]
    pub apns: Option<ApnsConfig>,
    /// Twilio, for `sms = "twilio"`.
    #[serde(serialize_with = "super::redact::hidden")]
    pub twilio: Option<TwilioConfig>,
    /// The signed webhook, for either route.
    #[serde(serialize_with = "super::redact::hidden")]
    pub webhook: Option<WebhookConfig>,
    /// Default: no delivered receipt within this → push (milliseconds).
    pub push_after_ms: u64,
    /// Default: patient offline → push after this (milliseconds).
    pub offline_grace_ms: u64,
    /// Default: still unread after this → SMS (milliseconds); unset never.
    pub sms_after_unread_ms: Option<u64>,
    /// Default: put message text in pushes (when it passes the privacy
    /// check) instead of a generic line.
    pub push_include_text: bool,
    /// Health terms refused in alert and SMS text, added to the built-in list.
    pub health_terms: Vec<String>,
    /// Alerts by push per consultation.
    pub alert_push_limit: RateLimit,
    /// Alerts by SMS per consultation.
    pub alert_sms_limit: RateLimit,
    /// Push devices kept per patient (per clinic); registering one more
    /// forgets the least recently registered.
    pub max_devices_per_patient: u32,
    /// Device registrations per patient, on one node.
    pub device_registration_limit: RateLimit,
    /// Outbox poll interval (milliseconds).
    pub poll_interval_ms: u64,
    /// Consultations whose notifications the outbox worker sends at once
    /// (each consultation's in order).
    pub send_concurrency: usize,
    /// Send attempts before failing.
    pub max_attempts: u32,
    /// First retry delay, doubling (milliseconds).
    pub retry_base_ms: u64,
    /// Claim lease (seconds).
    pub lease_secs: u64,
    /// Cache of a patient's devices and SMS consent (milliseconds).
    pub reach_cache_ms: u64,
    /// The public URL Twilio posts inbound SMS to (`…/v1/sms/inbound`), used
    /// to check `X-Twilio-Signature`. Required when `notify.twilio` is set:
    /// Twilio signs the URL it was given, which a hub behind a
    /// TLS-terminating proxy cannot rebuild from the request.
    pub sms_inbound_url: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            push: PushRoute::Log,
            sms: SmsRoute::Log,
            fcm: None,
            apns: None,
            twilio: None,
            webhook: None,
            push_after_ms: PUSH_AFTER_MS,
            offline_grace_ms: OFFLINE_GRACE_MS,
            sms_after_unread_ms: None,
            push_include_text: false,
            health_terms: Vec::new(),
            alert_push_limit: RateLimit {
                max: 3,
                window_secs: 600,
            },
            alert_sms_limit: RateLimit {
                max: 2,
                window_secs: 1800,
            },
            max_devices_per_patient: 10,
            device_registration_limit: RateLimit {
                max: 10,
                window_secs: 600,
            },
            poll_interval_ms: OUTBOX_POLL_MS,
            send_concurrency: 8,
            max_attempts: OUTBOX_MAX_ATTEMPTS,
            retry_base_ms: OUTBOX_RETRY_BASE_MS,
            lease_secs: OUTBOX_LEASE_SECS,
            reach_cache_ms: REACH_CACHE_MS,
            sms_inbound_url: None,
        }
    }
}

impl NotifyConfig {
    /// Adds this section's problems to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        let notify = self;
        if notify.push == PushRoute::Native && notify.fcm.is_none() && notify.apns.is_none() {
            problems.push("notify.push = \"native\" needs notify.fcm or notify.apns".into());
        }
        if notify.sms == SmsRoute::Twilio && notify.twilio.is_none() {
            problems.push("notify.sms = \"twilio\" needs notify.twilio".into());
        }
        if (notify.push == PushRoute::Webhook || notify.sms == SmsRoute::Webhook)
            && notify.webhook.is_none()
        {
            problems.push("a \"webhook\" route needs notify.webhook".into());
        }
        if notify.twilio.is_some() {
            match notify.sms_inbound_url.as_deref().map(url::Url::parse) {
                None => problems.push(
                    "notify.sms_inbound_url must be set when notify.twilio is: the public \
                     https URL Twilio posts inbound SMS to (Twilio signs that URL)"
                        .into(),
                ),
                Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {}
                Some(_) => problems.push(
                    "notify.sms_inbound_url must be an http(s) URL, like \
                     https://hub.example.org/v1/sms/inbound"
                        .into(),
                ),
            }
        }
        if notify.max_attempts == 0 {
            problems.push("notify.max_attempts must be at least 1".into());
        }
        if notify.poll_interval_ms == 0 {
            problems.push("notify.poll_interval_ms must be at least 1".into());
        }
        if !(1..=256).contains(&notify.send_concurrency) {
            problems.push("notify.send_concurrency must be between 1 and 256".into());
        }
        if !(1..=MAX_DEVICES_PER_PATIENT).contains(&notify.max_devices_per_patient) {
            problems.push(format!(
                "notify.max_devices_per_patient must be between 1 and {MAX_DEVICES_PER_PATIENT}"
            ));
        }
        for (name, limit) in [
            ("alert_push_limit", notify.alert_push_limit),
            ("alert_sms_limit", notify.alert_sms_limit),
            (
                "device_registration_limit",
                notify.device_registration_limit,
            ),
        ] {
            if limit.window_secs == 0 {
                problems.push(format!("notify.{name}.window_secs must be at least 1"));
            }
        }
    }
}
