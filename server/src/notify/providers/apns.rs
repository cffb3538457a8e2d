//! Apple Push Notification service: the token-based provider API over
//! HTTP/2.
//!
//! Owns the APNs request shape, the `apns-id` derivation and the mapping of
//! APNs reasons to [`SendError`]; provider tokens come from `token`. It
//! knows nothing of users or devices beyond the token it is handed.

mod token;

#[cfg(test)]
mod tests;

use super::transport::{self, Protocol};
use super::{Delivered, ProviderSetupError, PushMessage, SendError};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::path::PathBuf;
use uuid::Uuid;

/// The production APNs endpoint.
pub const APNS_BASE_URL: &str = "https://api.push.apple.com";
/// The development (sandbox) APNs endpoint.
pub const APNS_SANDBOX_BASE_URL: &str = "https://api.sandbox.push.apple.com";

const PROVIDER: &str = "apns";
/// Namespace of the name-based (v5) `apns-id`s derived from idempotency keys
/// that are not UUIDs. Changing it changes every derived id.
const APNS_ID_NAMESPACE: Uuid = Uuid::from_u128(0x1609baac_0028_4456_9fa4_1bb7be64b251);
/// APNs reasons that mean the device token will never work for this app.
const DEVICE_GONE_REASONS: &[&str] = &["Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"];

/// Reasons that mean our key, team or topic is wrong, not the device.
const CONFIGURATION_REASONS: &[&str] = &[
    "BadTopic",
    "MissingTopic",
    "TopicDisallowed",
    "MissingProviderToken",
    "InvalidProviderToken",
    "ExpiredProviderToken",
];

/// APNs settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// API root; default [`APNS_BASE_URL`] (use [`APNS_SANDBOX_BASE_URL`] for
    /// development builds).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The `.p8` signing key (PKCS#8 EC P-256 PEM) from the developer account.
    pub key_file: PathBuf,
    /// The key's 10-character id, sent as the JWT `kid`.
    pub key_id: String,
    /// The developer team id, sent as the JWT `iss`.
    pub team_id: String,
    /// The app's bundle id, sent as `apns-topic`.
    pub bundle_id: String,
    /// Connection timeout; default [`super::CONNECT_TIMEOUT_SECS`].
    #[serde(default = "transport::default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Whole-request timeout; default [`super::REQUEST_TIMEOUT_SECS`].
    #[serde(default = "transport::default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

fn default_base_url() -> String {
    APNS_BASE_URL.to_owned()
}

/// Sends alerts through APNs over one HTTP/2 connection pool.
pub struct ApnsClient {
    http: reqwest::Client,
    base_url: String,
    bundle_id: String,
    tokens: token::ProviderTokens,
}

impl std::fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsClient")
            .field("base_url", &self.base_url)
            .field("bundle_id", &self.bundle_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    aps: Aps<'a>,
    consultation_id: &'a str,
}

#[derive(Serialize)]
struct Aps<'a> {
    alert: Alert<'a>,
    sound: &'static str,
}

#[derive(Serialize)]
struct Alert<'a> {
    title: &'a str,
    body: &'a str,
}

#[derive(Deserialize)]
struct Rejection {
    reason: Option<String>,
}

/// One request's outcome, before the provider-token retry decision.
enum Attempt {
    Delivered(Delivered),
    ExpiredProviderToken,
}

impl ApnsClient {
    /// Builds the client, reading the key file and signing a first token.
    ///
    /// # Errors
    ///
    /// [`ProviderSetupError::ReadFile`] or
    /// [`ProviderSetupError::InvalidKeyFile`] for the key;
    /// [`ProviderSetupError::InvalidConfig`] for a bad base URL or an empty
    /// id; [`ProviderSetupError::HttpClient`] if the TLS backend cannot start.
    pub fn new(config: &ApnsConfig) -> Result<Self, ProviderSetupError> {
        for (field, value) in [
            ("apns.key_id", &config.key_id),
            ("apns.team_id", &config.team_id),
            ("apns.bundle_id", &config.bundle_id),
        ] {
            if value.trim().is_empty() {
                return Err(ProviderSetupError::InvalidConfig {
                    field,
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        let key_pem = transport::read_file(&config.key_file)?;
        let tokens = token::ProviderTokens::new(
            &key_pem,
            &config.key_file,
            &config.key_id,
            &config.team_id,
        )?;
        let base_url = transport::base_url("apns.base_url", &config.base_url)?;
        let http = transport::http_client(
            &base_url,
            Protocol::Http2,
            config.connect_timeout_secs,
            config.request_timeout_secs,
        )?;
        Ok(Self {
            http,
            base_url,
            bundle_id: config.bundle_id.clone(),
            tokens,
        })
    }

    /// Sends one alert. An `ExpiredProviderToken` answer is retried once
    /// with a fresh provider token.
    ///
    /// # Errors
    ///
    /// [`SendError::DeviceGone`] for a malformed device token, 400
    /// `BadDeviceToken` or `DeviceTokenNotForTopic` and 410 `Unregistered`;
    /// [`SendError::Permanent`] for other 4xx;
    /// [`SendError::Retryable`] on network failure, 429, 5xx, or a rejected
    /// key, team or topic.
    pub async fn send(&self, message: &PushMessage<'_>) -> Result<Delivered, SendError> {
        let device_token = message.device_token;
        if device_token.is_empty() || !device_token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SendError::DeviceGone(
                "apns: device token is not hexadecimal".to_owned(),
            ));
        }
        let apns_id = apns_id(message.idempotency_key).to_string();
        let jwt = self.tokens.current()?;
        match self.post(message, &apns_id, &jwt).await? {
            Attempt::Delivered(delivered) => Ok(delivered),
            Attempt::ExpiredProviderToken => {
                let jwt = self.tokens.refresh(&jwt)?;
                match self.post(message, &apns_id, &jwt).await? {
                    Attempt::Delivered(delivered) => Ok(delivered),
                    Attempt::ExpiredProviderToken => Err(transport::credentials_error(
                        PROVIDER,
                        StatusCode::FORBIDDEN,
                        Some("ExpiredProviderToken"),
                    )),
                }
            }
        }
    }

    async fn post(
        &self,
        message: &PushMessage<'_>,
        apns_id: &str,
        jwt: &str,
    ) -> Result<Attempt, SendError> {
        let payload = Payload {
            aps: Aps {
                alert: Alert {
                    title: message.title,
                    body: message.body,
                },
                sound: "default",
            },
            consultation_id: message.consultation_id,
        };
        let response = self
            .http
            .post(format!(
                "{}/3/device/{}",
                self.base_url, message.device_token
            ))
            .header(reqwest::header::AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", &self.bundle_id)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-id", apns_id)
            .json(&payload)
            .send()
            .await
            .map_err(|error| transport::network_error(PROVIDER, error))?;
        let status = response.status();
        tracing::debug!(
            provider = PROVIDER,
            idempotency_key = message.idempotency_key,
            apns_id,
            status = status.as_u16(),
            "provider answered"
        );
        if status.is_success() {
            let echoed = response
                .headers()
                .get("apns-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or(apns_id);
            return Ok(Attempt::Delivered(Delivered {
                provider_message_id: echoed.to_owned(),
            }));
        }
        let answer = response
            .bytes()
            .await
            .map_err(|error| transport::network_error(PROVIDER, error))?;
        let reason = serde_json::from_slice::<Rejection>(&answer)
            .ok()
            .and_then(|rejection| rejection.reason);
        if status == StatusCode::FORBIDDEN && reason.as_deref() == Some("ExpiredProviderToken") {
            return Ok(Attempt::ExpiredProviderToken);
        }
        Err(classify(status, reason.as_deref()))
    }
}

/// Maps a failed status and APNs `reason`.
fn classify(status: StatusCode, reason: Option<&str>) -> SendError {
    let configuration = reason.is_some_and(|reason| CONFIGURATION_REASONS.contains(&reason));
    if status == StatusCode::FORBIDDEN || configuration {
        return transport::credentials_error(PROVIDER, status, reason);
    }
    if status == StatusCode::GONE
        || reason.is_some_and(|reason| DEVICE_GONE_REASONS.contains(&reason))
    {
        return SendError::DeviceGone(transport::describe(PROVIDER, status, reason));
    }
    transport::status_error(PROVIDER, status, reason)
}

/// The `apns-id` for an idempotency key: the key itself when it is a UUID,
/// otherwise a name-based (v5) UUID of it, so every attempt carries the same
/// id.
fn apns_id(idempotency_key: &str) -> Uuid {
    if let Ok(uuid) = Uuid::try_parse(idempotency_key) {
        return uuid;
    }
    let digest = Sha1::new()
        .chain_update(APNS_ID_NAMESPACE.as_bytes())
        .chain_update(idempotency_key.as_bytes())
        .finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}
