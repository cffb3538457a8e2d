//! A signed JSON webhook: posts each notification to one configured URL.
//!
//! The receiver verifies `X-Consult-Signature`, an HMAC-SHA256 over
//! `"{X-Consult-Timestamp}.{body}"`, with [`sign`]. This module owns the
//! payload shape and its signature; it knows nothing of the receiver.

use super::transport::{self, Protocol};
use super::{Delivered, ProviderSetupError, SendError, WebhookMessage};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[cfg(test)]
mod tests;

const PROVIDER: &str = "webhook";

/// Webhook settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL every notification is posted to. Required.
    pub url: String,
    /// Shared HMAC secret for `X-Consult-Signature`. Required.
    pub secret: SecretString,
    /// Connection timeout; default [`super::CONNECT_TIMEOUT_SECS`].
    #[serde(default = "transport::default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Whole-request timeout; default [`super::REQUEST_TIMEOUT_SECS`].
    #[serde(default = "transport::default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

/// Posts notifications to a webhook.
pub struct WebhookClient {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    channel: &'a str,
    recipient_id: &'a str,
    consultation_id: &'a str,
    text: &'a str,
    sent_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize)]
struct Acknowledgement {
    id: Option<String>,
}

impl WebhookClient {
    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`ProviderSetupError::InvalidConfig`] for a URL that is not
    /// `http(s)://` or an empty secret; [`ProviderSetupError::HttpClient`] if
    /// the TLS backend cannot start.
    pub fn new(config: &WebhookConfig) -> Result<Self, ProviderSetupError> {
        if config.secret.expose_secret().is_empty() {
            return Err(ProviderSetupError::InvalidConfig {
                field: "webhook.secret",
                reason: "must not be empty".to_owned(),
            });
        }
        let url = transport::endpoint_url("webhook.url", &config.url)?;
        let http = transport::http_client(
            &url,
            Protocol::Any,
            config.connect_timeout_secs,
            config.request_timeout_secs,
        )?;
        Ok(Self {
            http,
            url,
            secret: config.secret.clone(),
        })
    }

    /// Posts one notification.
    ///
    /// # Errors
    ///
    /// [`SendError::Retryable`] on network failure, 429 or 5xx;
    /// [`SendError::Permanent`] on any other non-2xx status.
    pub async fn send(&self, message: &WebhookMessage<'_>) -> Result<Delivered, SendError> {
        let now = chrono::Utc::now();
        let body = serde_json::to_vec(&Payload {
            id: message.idempotency_key,
            channel: message.channel,
            recipient_id: message.recipient_id,
            consultation_id: message.consultation_id,
            text: message.text,
            sent_at: now,
        })
        .map_err(|error| SendError::Permanent(format!("cannot encode payload: {error}")))?;
        let timestamp = now.timestamp();
        let signature = sign(self.secret.expose_secret(), timestamp, &body);

        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", message.idempotency_key)
            .header("X-Consult-Timestamp", timestamp.to_string())
            .header("X-Consult-Signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| transport::network_error(PROVIDER, error))?;
        let status = response.status();
        tracing::debug!(
            provider = PROVIDER,
            idempotency_key = message.idempotency_key,
            status = status.as_u16(),
            "provider answered"
        );
        if !status.is_success() {
            return Err(transport::status_error(PROVIDER, status, None));
        }
        // The receiver accepted the notification; an unreadable answer must
        // not turn that into a failure, so its id is optional.
        let answer = response.bytes().await.unwrap_or_default();
        let provider_message_id = serde_json::from_slice::<Acknowledgement>(&answer)
            .ok()
            .and_then(|ack| ack.id)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| message.idempotency_key.to_owned());
        Ok(Delivered {
            provider_message_id,
        })
    }
}

/// The `X-Consult-Signature` value for a body sent at `timestamp` (Unix
/// seconds): `sha256=` and the lowercase hex HMAC-SHA256 of
/// `"{timestamp}.{body}"` keyed with `secret`.
///
/// Receivers recompute it over the raw body and compare in constant time.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
