//! OAuth2 access tokens for FCM from a Google service account, by the
//! JWT-bearer grant (RFC 7523): sign an RS256 assertion with the account's
//! key, exchange it at `token_uri`, and cache the access token until shortly
//! before it expires.
//!
//! Owns the service-account file and the token cache; it never sees a push.

use crate::notify::providers::transport;
use crate::notify::providers::{ProviderSetupError, SendError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// The OAuth2 scope FCM HTTP v1 requires.
pub(super) const FIREBASE_MESSAGING_SCOPE: &str =
    "https://www.googleapis.com/auth/firebase.messaging";
/// Lifetime of a signed assertion; Google accepts at most an hour.
pub(super) const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// An access token is replaced this long before Google says it expires.
pub(super) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const PROVIDER: &str = "fcm oauth";

/// The fields used from a Google service-account JSON key file.
#[derive(Deserialize)]
pub(super) struct ServiceAccount {
    pub(super) project_id: String,
    pub(super) client_email: String,
    pub(super) private_key: SecretString,
    pub(super) token_uri: String,
    #[serde(default)]
    pub(super) private_key_id: Option<String>,
}

impl ServiceAccount {
    /// Reads and parses the service-account file.
    pub(super) fn read(path: &Path) -> Result<Self, ProviderSetupError> {
        let bytes = transport::read_file(path)?;
        // serde_json's message names the line and column, never the content.
        serde_json::from_slice(&bytes).map_err(|error| ProviderSetupError::InvalidKeyFile {
            path: path.to_owned(),
            what: "Google service-account JSON key",
            reason: error.to_string(),
        })
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    expires_in: u64,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
}

struct AccessToken {
    value: SecretString,
    refresh_at: Instant,
}

/// Fetches and caches FCM access tokens.
pub(super) struct TokenSource {
    http: reqwest::Client,
    token_uri: String,
    client_email: String,
    key: EncodingKey,
    key_id: Option<String>,
    // A tokio mutex, held across the exchange on purpose: concurrent sends
    // wait for one exchange instead of each starting their own.
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl TokenSource {
    /// Loads the account's key and signs a first assertion, so a bad key
    /// fails at startup rather than on the first push.
    pub(super) fn new(
        account: &ServiceAccount,
        path: &Path,
        token_uri: String,
        http: reqwest::Client,
    ) -> Result<Self, ProviderSetupError> {
        let invalid = |reason: String| ProviderSetupError::InvalidKeyFile {
            path: path.to_owned(),
            what: "Google service-account JSON key",
            reason,
        };
        let key = EncodingKey::from_rsa_pem(account.private_key.expose_secret().as_bytes())
            .map_err(|error| invalid(format!("private_key: {error}")))?;
        let source = Self {
            http,
            token_uri,
            client_email: account.client_email.clone(),
            key,
            key_id: account.private_key_id.clone(),
            cached: tokio::sync::Mutex::new(None),
        };
        source
            .assertion()
            .map_err(|error| invalid(format!("private_key: {error}")))?;
        Ok(source)
    }

    /// A valid access token, exchanging a new assertion when none is cached
    /// or the cached one is within [`TOKEN_REFRESH_MARGIN`] of expiry.
    pub(super) async fn access_token(&self) -> Result<SecretString, SendError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let token = self.exchange().await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// A new access token to replace `rejected`, unless another send
    /// already replaced it.
    pub(super) async fn refresh(&self, rejected: &SecretString) -> Result<SecretString, SendError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.value.expose_secret() != rejected.expose_secret()
        {
            return Ok(token.value.clone());
        }
        let token = self.exchange().await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Every failure is retryable: either Google is unavailable or our
    /// service account is, and neither is the message's fault.
    async fn exchange(&self) -> Result<AccessToken, SendError> {
        let assertion = self.assertion().map_err(|error| {
            SendError::Retryable(format!("{PROVIDER}: cannot sign assertion: {error}"))
        })?;
        let response = self
            .http
            .post(&self.token_uri)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|error| transport::network_error(PROVIDER, error))?;
        let status = response.status();
        let answer = response
            .bytes()
            .await
            .map_err(|error| transport::network_error(PROVIDER, error))?;
        if !status.is_success() {
            let code = serde_json::from_slice::<TokenError>(&answer)
                .ok()
                .and_then(|error| error.error);
            return Err(transport::credentials_error(
                PROVIDER,
                status,
                code.as_deref(),
            ));
        }
        let token: TokenResponse = serde_json::from_slice(&answer).map_err(|error| {
            SendError::Retryable(format!("{PROVIDER}: unreadable token response: {error}"))
        })?;
        tracing::debug!(
            provider = "fcm",
            expires_in = token.expires_in,
            "exchanged an access token"
        );
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(TOKEN_REFRESH_MARGIN);
        Ok(AccessToken {
            value: token.access_token,
            refresh_at: Instant::now() + lifetime,
        })
    }

    fn assertion(&self) -> jsonwebtoken::errors::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        let iat = chrono::Utc::now().timestamp();
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: FIREBASE_MESSAGING_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}
