//! Firebase Cloud Messaging HTTP v1: sends one notification to one
//! registration token.
//!
//! Owns the FCM request shape and the mapping of FCM's errors to
//! [`SendError`]; access tokens come from `oauth`. It knows nothing of
//! users or devices beyond the token it is handed.

mod oauth;

#[cfg(test)]
mod tests;

use super::transport::{self, Protocol};
use super::{Delivered, ProviderSetupError, PushMessage, SendError};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;

/// The real FCM API root.
pub const FCM_BASE_URL: &str = "https://fcm.googleapis.com";

const PROVIDER: &str = "fcm";

/// FCM settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// API root; default [`FCM_BASE_URL`].
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Google service-account JSON key (`project_id`, `client_email`,
    /// `private_key`, `token_uri`), read at startup.
    pub service_account_file: PathBuf,
    /// Overrides the key file's `token_uri` (also the assertion's `aud`).
    #[serde(default)]
    pub token_uri: Option<String>,
    /// Connection timeout; default [`super::CONNECT_TIMEOUT_SECS`].
    #[serde(default = "transport::default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Whole-request timeout; default [`super::REQUEST_TIMEOUT_SECS`].
    #[serde(default = "transport::default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

fn default_base_url() -> String {
    FCM_BASE_URL.to_owned()
}

/// Sends notifications through FCM.
pub struct FcmClient {
    http: reqwest::Client,
    send_url: String,
    tokens: oauth::TokenSource,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Sent {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: GoogleStatus,
}

#[derive(Deserialize)]
struct GoogleStatus {
    status: Option<String>,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

/// One request's outcome, before the access-token retry decision.
enum Attempt {
    Delivered(Delivered),
    Unauthorized,
}

impl FcmClient {
    /// Builds the client, reading the service-account file.
    ///
    /// # Errors
    ///
    /// [`ProviderSetupError::ReadFile`] or
    /// [`ProviderSetupError::InvalidKeyFile`] for the service account;
    /// [`ProviderSetupError::InvalidConfig`] for a bad base URL, token URI or
    /// project id; [`ProviderSetupError::HttpClient`] if the TLS backend
    /// cannot start.
    pub fn new(config: &FcmConfig) -> Result<Self, ProviderSetupError> {
        let path = &config.service_account_file;
        let account = oauth::ServiceAccount::read(path)?;
        let project = &account.project_id;
        if project.is_empty()
            || !project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ProviderSetupError::InvalidKeyFile {
                path: path.clone(),
                what: "Google service-account JSON key",
                reason: "project_id must be letters, digits and hyphens".to_owned(),
            });
        }
        let base_url = transport::base_url("fcm.base_url", &config.base_url)?;
        let token_uri = config.token_uri.as_deref().unwrap_or(&account.token_uri);
        let token_uri = transport::endpoint_url("fcm.token_uri", token_uri)?;
        let http = transport::http_client(
            &base_url,
            Protocol::Any,
            config.connect_timeout_secs,
            config.request_timeout_secs,
        )?;
        let tokens = oauth::TokenSource::new(&account, path, token_uri, http.clone())?;
        Ok(Self {
            http,
            send_url: format!("{base_url}/v1/projects/{project}/messages:send"),
            tokens,
        })
    }

    /// Sends one notification. A 401 is retried once with a fresh access
    /// token.
    ///
    /// # Errors
    ///
    /// [`SendError::DeviceGone`] for `UNREGISTERED` and
    /// `SENDER_ID_MISMATCH`; [`SendError::Permanent`] for 400
    /// `INVALID_ARGUMENT` and other 4xx;
    /// [`SendError::Retryable`] on network failure, 429, 5xx, or when the
    /// service account or its token is rejected.
    pub async fn send(&self, message: &PushMessage<'_>) -> Result<Delivered, SendError> {
        let token = self.tokens.access_token().await?;
        match self.post(message, &token).await? {
            Attempt::Delivered(delivered) => Ok(delivered),
            Attempt::Unauthorized => {
                let token = self.tokens.refresh(&token).await?;
                match self.post(message, &token).await? {
                    Attempt::Delivered(delivered) => Ok(delivered),
                    Attempt::Unauthorized => Err(transport::credentials_error(
                        PROVIDER,
                        StatusCode::UNAUTHORIZED,
                        None,
                    )),
                }
            }
        }
    }

    async fn post(
        &self,
        message: &PushMessage<'_>,
        token: &SecretString,
    ) -> Result<Attempt, SendError> {
        let body = json!({
            "message": {
                "token": message.device_token,
                "notification": {"title": message.title, "body": message.body},
                "data": {"consultation_id": message.consultation_id},
                "android": {"priority": "high"},
                "apns": {"headers": {"apns-priority": "10"}},
            }
        });
        let request = self
            .http
            .post(&self.send_url)
            .bearer_auth(token.expose_secret())
            .json(&body);
        let (status, answer) =
            transport::exchange(PROVIDER, message.idempotency_key, request).await?;
        if status.is_success() {
            let name = serde_json::from_slice::<Sent>(&answer)
                .ok()
                .and_then(|sent| sent.name);
            return Ok(Attempt::Delivered(Delivered {
                provider_message_id: name.unwrap_or_else(|| message.idempotency_key.to_owned()),
            }));
        }
        let code = error_code(&answer);
        // A third-party (APNs) auth error is not about our access token.
        if status == StatusCode::UNAUTHORIZED && code.as_deref() != Some("THIRD_PARTY_AUTH_ERROR") {
            return Ok(Attempt::Unauthorized);
        }
        Err(classify(status, code.as_deref()))
    }
}

/// FCM's own error code when present (`UNREGISTERED`), else the Google
/// status (`INVALID_ARGUMENT`). The free-text message is not kept.
fn error_code(answer: &[u8]) -> Option<String> {
    let body: ErrorBody = serde_json::from_slice(answer).ok()?;
    body.error
        .details
        .into_iter()
        .find_map(|detail| detail.error_code)
        .or(body.error.status)
}

/// Maps a failed status (other than a first 401) and FCM error code.
fn classify(status: StatusCode, code: Option<&str>) -> SendError {
    match code {
        // The app was uninstalled or the token expired, or the token belongs
        // to another Firebase project: never deliverable to this device.
        Some("UNREGISTERED" | "SENDER_ID_MISMATCH") => {
            SendError::DeviceGone(transport::describe(PROVIDER, status, code))
        }
        // Firebase's stored APNs credentials were rejected by Apple.
        Some("THIRD_PARTY_AUTH_ERROR") => transport::credentials_error(PROVIDER, status, code),
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            transport::credentials_error(PROVIDER, status, code)
        }
        _ => transport::status_error(PROVIDER, status, code),
    }
}
