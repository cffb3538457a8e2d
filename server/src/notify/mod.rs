//! Notifications outside the app: push (FCM, APNs) and SMS (Twilio), or a
//! signed webhook, or the log (the embedded default).
//!
//! Messages that need a notification write outbox rows in their own
//! transaction (`store::outbox`); the [`worker`] sends due rows through the
//! [`Notifier`], which picks the provider client each row names. Provider
//! clients live in [`providers`] and know nothing of the store or sessions.

pub mod providers;
pub mod worker;

use crate::config::{NotifyConfig, PushRoute, SmsRoute};
use crate::store::outbox::OutboxRow;
use consult_protocol::{AlertChannel, DevicePlatform};
use providers::{
    ApnsClient, Delivered, FcmClient, LogClient, ProviderSetupError, PushMessage, SendError,
    SmsMessage, TwilioClient, WebhookClient, WebhookMessage,
};

/// The configured provider clients.
pub struct Notifier {
    push_route: PushRoute,
    sms_route: SmsRoute,
    log: LogClient,
    fcm: Option<FcmClient>,
    apns: Option<ApnsClient>,
    twilio: Option<TwilioClient>,
    webhook: Option<WebhookClient>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("push_route", &self.push_route)
            .field("sms_route", &self.sms_route)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Builds the clients the configuration names.
    ///
    /// # Errors
    ///
    /// [`ProviderSetupError`] when a key file cannot be read or parsed.
    pub fn from_config(config: &NotifyConfig) -> Result<Self, ProviderSetupError> {
        Ok(Self {
            push_route: config.push,
            sms_route: config.sms,
            log: LogClient::new(),
            fcm: config.fcm.as_ref().map(FcmClient::new).transpose()?,
            apns: config.apns.as_ref().map(ApnsClient::new).transpose()?,
            twilio: config.twilio.as_ref().map(TwilioClient::new).transpose()?,
            webhook: config
                .webhook
                .as_ref()
                .map(WebhookClient::new)
                .transpose()?,
        })
    }

    /// The provider a push to a device of `platform` goes through.
    pub fn push_provider(&self, platform: DevicePlatform) -> &'static str {
        match (self.push_route, platform) {
            (PushRoute::Log, _) => "log",
            (PushRoute::Webhook, _) => "webhook",
            (PushRoute::Native, DevicePlatform::Fcm) if self.fcm.is_some() => "fcm",
            (PushRoute::Native, DevicePlatform::Apns) if self.apns.is_some() => "apns",
            // A platform without configured credentials cannot be reached.
            (PushRoute::Native, _) => "unavailable",
        }
    }

    /// The provider SMS go through.
    pub fn sms_provider(&self) -> &'static str {
        match self.sms_route {
            SmsRoute::Log => "log",
            SmsRoute::Twilio => "twilio",
            SmsRoute::Webhook => "webhook",
        }
    }

    /// Sends one outbox row through the provider it names.
    ///
    /// # Errors
    ///
    /// [`SendError::Retryable`] or [`SendError::Permanent`] from the provider;
    /// `Permanent` when the row names a provider that is not configured.
    pub async fn send(&self, row: &OutboxRow) -> Result<Delivered, SendError> {
        let push = PushMessage {
            idempotency_key: &row.idempotency_key,
            device_token: &row.target,
            title: &row.title,
            body: &row.body,
            consultation_id: row.consultation_id.as_str(),
        };
        let neutral = WebhookMessage {
            idempotency_key: &row.idempotency_key,
            channel: row.channel.as_str(),
            recipient_id: row.recipient.as_str(),
            consultation_id: row.consultation_id.as_str(),
            text: &row.body,
        };
        let missing =
            || SendError::Permanent(format!("provider {} is not configured", row.provider));
        match (row.channel, row.provider.as_str()) {
            (_, "log") => self.log.send(&neutral).await,
            (_, "webhook") => {
                self.webhook
                    .as_ref()
                    .ok_or_else(missing)?
                    .send(&neutral)
                    .await
            }
            (AlertChannel::Push, "fcm") => self.fcm.as_ref().ok_or_else(missing)?.send(&push).await,
            (AlertChannel::Push, "apns") => {
                self.apns.as_ref().ok_or_else(missing)?.send(&push).await
            }
            (AlertChannel::Sms, "twilio") => {
                let sms = SmsMessage {
                    idempotency_key: &row.idempotency_key,
                    to: &row.target,
                    body: &row.body,
                };
                self.twilio.as_ref().ok_or_else(missing)?.send(&sms).await
            }
            _ => Err(missing()),
        }
    }
}
