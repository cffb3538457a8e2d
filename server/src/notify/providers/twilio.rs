//! Twilio Programmable Messaging: sends SMS through the Messages API and
//! verifies the `X-Twilio-Signature` of Twilio's inbound requests.
//!
//! Owns the Messages request shape and the mapping of Twilio's error codes.
//! It knows nothing of users or consent; it is handed a number and a text.

use super::transport::{self, Protocol};
use super::{Delivered, ProviderSetupError, SendError, SmsMessage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::Sha1;

#[cfg(test)]
mod tests;

/// The real Twilio REST API.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

const PROVIDER: &str = "twilio";
/// Twilio's error code for a wrong account SID or auth token.
const AUTHENTICATION_FAILED: u32 = 20003;

/// Twilio settings. Set exactly one of `from_number` and
/// `messaging_service_sid`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// API root; default [`TWILIO_BASE_URL`].
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Account SID (`AC…`), also the basic-auth user name.
    pub account_sid: String,
    /// Auth token, the basic-auth password and inbound signing key.
    pub auth_token: SecretString,
    /// Sender number in E.164 form, sent as `From`.
    #[serde(default)]
    pub from_number: Option<String>,
    /// Messaging service (`MG…`), sent as `MessagingServiceSid` instead of
    /// `From`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Connection timeout; default [`super::CONNECT_TIMEOUT_SECS`].
    #[serde(default = "transport::default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Whole-request timeout; default [`super::REQUEST_TIMEOUT_SECS`].
    #[serde(default = "transport::default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

fn default_base_url() -> String {
    TWILIO_BASE_URL.to_owned()
}

/// Where a message says it comes from.
#[derive(Debug, Clone)]
enum Sender {
    Number(String),
    MessagingService(String),
}

/// Sends SMS through Twilio.
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: SecretString,
    sender: Sender,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Created {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<u32>,
}

impl TwilioClient {
    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`ProviderSetupError::InvalidConfig`] for a bad base URL, an account
    /// SID that is not alphanumeric, an empty auth token, or not exactly one
    /// of `from_number` and `messaging_service_sid`;
    /// [`ProviderSetupError::HttpClient`] if the TLS backend cannot start.
    pub fn new(config: &TwilioConfig) -> Result<Self, ProviderSetupError> {
        let invalid = |field, reason: &str| ProviderSetupError::InvalidConfig {
            field,
            reason: reason.to_owned(),
        };
        let sid = &config.account_sid;
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("twilio.account_sid", "must be letters and digits"));
        }
        if config.auth_token.expose_secret().is_empty() {
            return Err(invalid("twilio.auth_token", "must not be empty"));
        }
        let sender = match (&config.from_number, &config.messaging_service_sid) {
            (Some(number), None) => Sender::Number(number.clone()),
            (None, Some(service)) => Sender::MessagingService(service.clone()),
            _ => {
                return Err(invalid(
                    "twilio.from_number",
                    "set exactly one of from_number and messaging_service_sid",
                ));
            }
        };
        let base_url = transport::base_url("twilio.base_url", &config.base_url)?;
        let http = transport::http_client(
            &base_url,
            Protocol::Any,
            config.connect_timeout_secs,
            config.request_timeout_secs,
        )?;
        Ok(Self {
            http,
            messages_url: format!("{base_url}/2010-04-01/Accounts/{sid}/Messages.json"),
            account_sid: sid.clone(),
            auth_token: config.auth_token.clone(),
            sender,
        })
    }

    /// Sends one SMS.
    ///
    /// # Errors
    ///
    /// [`SendError::Permanent`] for a 4xx such as error 21211 (invalid
    /// number) or 21610 (recipient replied STOP); [`SendError::Retryable`]
    /// on network failure, 429, 5xx, or rejected credentials.
    pub async fn send(&self, message: &SmsMessage<'_>) -> Result<Delivered, SendError> {
        let sender = match &self.sender {
            Sender::Number(number) => ("From", number.as_str()),
            Sender::MessagingService(service) => ("MessagingServiceSid", service.as_str()),
        };
        let request = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .header("I-Twilio-Idempotency-Token", message.idempotency_key)
            .form(&[("To", message.to), sender, ("Body", message.body)]);
        let (status, answer) =
            transport::exchange(PROVIDER, message.idempotency_key, request).await?;
        if status.is_success() {
            let sid = serde_json::from_slice::<Created>(&answer)
                .ok()
                .and_then(|created| created.sid);
            return Ok(Delivered {
                provider_message_id: sid.unwrap_or_else(|| message.idempotency_key.to_owned()),
            });
        }
        let code = serde_json::from_slice::<TwilioError>(&answer)
            .ok()
            .and_then(|error| error.code);
        Err(classify(status, code))
    }
}

/// Maps a failed status and Twilio error code. Twilio's `message` is not
/// kept: it can quote the recipient's number.
fn classify(status: StatusCode, code: Option<u32>) -> SendError {
    let code_text = code.map(|code| format!("error {code}"));
    if status == StatusCode::UNAUTHORIZED || code == Some(AUTHENTICATION_FAILED) {
        return transport::credentials_error(PROVIDER, status, code_text.as_deref());
    }
    transport::status_error(PROVIDER, status, code_text.as_deref())
}

/// Whether `signature_b64` is Twilio's `X-Twilio-Signature` for a request to
/// `url` with form parameters `params`.
///
/// The signature is the base64 HMAC-SHA1, keyed with the auth token, of the
/// full URL Twilio requested (scheme, host, path and query, as configured in
/// Twilio) followed by each parameter's name and value, sorted by name. The
/// comparison is constant-time. Returns `false` for malformed base64.
pub fn verify_inbound_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature_b64: &str,
) -> bool {
    let Ok(signature) = BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return false;
    };
    mac.update(url.as_bytes());
    // Twilio's own validators sort by name, then value, and take a repeated
    // identical pair once.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(&signature).is_ok()
}
