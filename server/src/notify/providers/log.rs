//! The embedded default provider: writes one info line per notification and
//! reports it delivered.
//!
//! It logs the channel, the idempotency key and the consultation id, never
//! the recipient or the text. It needs no configuration and no network.

use super::{Delivered, SendError, WebhookMessage};

/// A provider that only logs; used when no real provider is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogClient;

impl LogClient {
    /// Creates the log provider.
    pub fn new() -> Self {
        Self
    }

    /// Logs the notification at info level and reports it delivered as
    /// `log-<idempotency_key>`.
    ///
    /// # Errors
    ///
    /// Never fails; the `Result` matches the other providers.
    pub async fn send(&self, message: &WebhookMessage<'_>) -> Result<Delivered, SendError> {
        tracing::info!(
            provider = "log",
            channel = message.channel,
            idempotency_key = message.idempotency_key,
            consultation_id = message.consultation_id,
            "notification logged instead of sent"
        );
        Ok(Delivered {
            provider_message_id: format!("log-{}", message.idempotency_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::providers::test_support::LogCapture;

    #[tokio::test]
    async fn logs_ids_but_never_the_recipient_or_text() {
        let logs = LogCapture::start();
        let message = WebhookMessage {
            idempotency_key: "key-1",
            channel: "sms",
            recipient_id: "user-secret-recipient",
            consultation_id: "consult-7",
            text: "your results are ready",
        };

        let delivered = LogClient::new().send(&message).await.unwrap();

        assert_eq!(delivered.provider_message_id, "log-key-1");
        let text = logs.contents();
        assert!(text.contains("INFO"), "{text}");
        assert!(text.contains("key-1") && text.contains("consult-7") && text.contains("sms"));
        assert!(!text.contains("user-secret-recipient"), "{text}");
        assert!(!text.contains("results are ready"), "{text}");
    }
}
