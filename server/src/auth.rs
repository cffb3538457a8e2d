//! Authentication: JWTs for people, API keys for the host platform's servers.
//!
//! A token's claims become a [`Principal`] (user, role, clinic). HS256 tokens
//! are checked against the configured or generated secret; RS256 and ES256
//! tokens against the configured public keys, or the identity provider's
//! key set selected by `kid` ([`jwks`]). `nbf`, a future `iat`, the maximum
//! lifetime and, when configured, `iss` and `aud` are checked too. API keys are compared by their
//! SHA-256 digests in constant time. Neither tokens nor keys are ever logged.

pub mod revocation;

use crate::config::AuthConfig;
use crate::secrets;
use consult_protocol::{ClinicId, Role, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use jwks::JwksKeys;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// Who is on the other end of a connection or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (JWT `sub`).
    pub user: UserId,
    /// Patient, provider or admin.
    pub role: Role,
    /// The user's clinic.
    pub clinic: ClinicId,
}

/// The claims of a hub token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// `patient`, `provider` or `admin`.
    pub role: Role,
    /// The clinic id.
    pub clinic: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer; checked when `auth.issuer` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (a string or a list); checked when `auth.audience` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// The token's id, which a revocation can name; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A verified token: who it speaks for, and what revocation and expiry need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Who it speaks for.
    pub principal: Principal,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// `iat`, seconds since the epoch.
    pub issued_at: u64,
    /// `jti`, when the token has one.
    pub jti: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Malformed, forged, wrong key or wrong algorithm.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Failure to set up authentication at start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The IO failure.
        source: std::io::Error,
    },
    /// A public key file could not be read or parsed.
    #[error("public key {path}: {message}")]
    PublicKey {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Verifies and issues tokens; checks API keys.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    verifiers: Vec<(Algorithm, DecodingKey)>,
    api_key_digests: Vec<[u8; 32]>,
    leeway_secs: u64,
    max_lifetime_secs: u64,
    issuer: Option<String>,
    audience: Option<String>,
    jwks: Option<Arc<JwksKeys>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("verifiers", &self.verifiers.len())
            .field("api_keys", &self.api_key_digests.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator, generating secrets into the key file when
    /// none are configured.
    ///
    /// # Errors
    ///
    /// Fails when the key file or a public key file cannot be used.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        // An empty secret (`CONSULT_AUTH__JWT_SECRET=`) counts as unset.
        let jwt_secret = config.jwt_secret();
        let needs_generated = jwt_secret.is_none() || config.api_keys.is_empty();
        let generated = if needs_generated {
            Some(secrets::load_or_create(&config.key_file).map_err(|source| {
                AuthSetupError::KeyFile {
                    path: config.key_file.display().to_string(),
                    source,
                }
            })?)
        } else {
            None
        };
        let secret = match (jwt_secret, &generated) {
            (Some(secret), _) => secret.expose_secret().to_owned(),
            (None, Some(generated)) => generated.jwt_secret.clone(),
            (None, None) => String::new(),
        };
        let mut api_keys: Vec<String> = config
            .api_keys
            .iter()
            .map(|key| key.expose_secret().to_owned())
            .collect();
        if api_keys.is_empty() {
            if let Some(generated) = &generated {
                api_keys.push(generated.api_key.clone());
            }
        }
        let mut verifiers = vec![(
            Algorithm::HS256,
            DecodingKey::from_secret(secret.as_bytes()),
        )];
        for key in &config.public_keys {
            verifiers.push(load_public_key(&key.algorithm, &key.pem_file)?);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            verifiers,
            api_key_digests: api_keys.iter().map(|key| digest(key)).collect(),
            leeway_secs: config.leeway_secs,
            max_lifetime_secs: config.max_token_lifetime_secs,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            jwks: match &config.jwks_url {
                Some(url) => Some(Arc::new(JwksKeys::new(url).map_err(|message| {
                    AuthSetupError::PublicKey {
                        path: url.clone(),
                        message,
                    }
                })?)),
                None => None,
            },
        })
    }

    /// Verifies a token and returns its principal.
    ///
    /// # Errors
    ///
    /// [`AuthError::Expired`] for an expired token, [`AuthError::Invalid`]
    /// for anything else wrong with it.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_token(token).map(|verified| verified.principal)
    }

    /// The configured leeway on `exp`, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// Verifies a token and returns its principal with its expiry, issue
    /// time and id.
    ///
    /// # Errors
    ///
    /// As [`Authenticator::verify`].
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| AuthError::Invalid(error.to_string()))?;
        let mut last_error = AuthError::Invalid(format!("no key for algorithm {:?}", header.alg));
        let from_jwks = header
            .kid
            .as_deref()
            .and_then(|kid| self.jwks.as_ref()?.key(kid))
            .filter(|(alg, _)| *alg == header.alg);
        let configured = self.verifiers.iter().filter(|(alg, _)| *alg == header.alg);
        for (algorithm, key) in from_jwks.iter().chain(configured) {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation(*algorithm)) {
                Ok(data) => {
                    self.check_times(&data.claims)?;
                    return verified_from(data.claims);
                }
                Err(error) if matches!(error.kind(), ErrorKind::ExpiredSignature) => {
                    return Err(AuthError::Expired);
                }
                Err(error) => last_error = AuthError::Invalid(error.to_string()),
            }
        }
        Err(last_error)
    }

    /// [`Authenticator::verify_token`], fetching the JWKS again first when the
    /// token names a `kid` the held set lacks (at most every
    /// [`jwks::ON_DEMAND_GAP`]).
    ///
    /// # Errors
    ///
    /// As [`Authenticator::verify`].
    pub async fn verify_fresh(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let result = self.verify_token(token);
        let Some(jwks) = &self.jwks else {
            return result;
        };
        let unknown_kid = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|header| header.kid)
            .is_some_and(|kid| jwks.key(&kid).is_none());
        if matches!(result, Err(AuthError::Invalid(_)))
            && unknown_kid
            && jwks.refresh_for_unknown_kid().await
        {
            return self.verify_token(token);
        }
        result
    }

    /// Fetches the JWKS (when configured) and keeps it fresh every `every`
    /// until `stop`. A failed first fetch is logged; the hub starts anyway
    /// and JWKS tokens are refused until a fetch succeeds.
    pub async fn start_jwks(
        &self,
        every: std::time::Duration,
        stop: CancellationToken,
        workers: &std::sync::Arc<crate::supervisor::Workers>,
    ) {
        let Some(jwks) = &self.jwks else {
            return;
        };
        match jwks.refresh().await {
            Ok(count) => tracing::info!(keys = count, "JWKS fetched"),
            Err(reason) => tracing::warn!(%reason, "JWKS not fetched at start; retrying"),
        }
        jwks.clone().spawn_refresher(every, stop, workers);
    }

    /// What a token is checked against: signature and algorithm, `exp` and
    /// `nbf` with the leeway, `iss` and `aud` when configured (a token's
    /// `aud` is not checked when no audience is configured).
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Refuses a token issued in the future (beyond the leeway) or living
    /// longer than `auth.max_token_lifetime_secs`.
    fn check_times(&self, claims: &Claims) -> Result<(), AuthError> {
        if claims.iat > unix_now().saturating_add(self.leeway_secs) {
            return Err(AuthError::Invalid("iat is in the future".to_owned()));
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime_secs {
            return Err(AuthError::Invalid(format!(
                "the token lives longer than {} seconds (auth.max_token_lifetime_secs)",
                self.max_lifetime_secs
            )));
        }
        Ok(())
    }

    /// Issues an HS256 token for `principal`, valid for `ttl_secs`, with a
    /// fresh `jti` (a UUID) and the configured `iss` and `aud`.
    ///
    /// # Errors
    ///
    /// Fails only if signing fails, which HS256 with a valid key does not.
    pub fn issue(
        &self,
        principal: &Principal,
        ttl_secs: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_token(principal, ttl_secs)
            .map(|issued| issued.token)
    }

    /// Issues an HS256 token as [`Authenticator::issue`] does, returning its
    /// claims too.
    ///
    /// # Errors
    ///
    /// As [`Authenticator::issue`].
    pub fn issue_token(
        &self,
        principal: &Principal,
        ttl_secs: u64,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let claims = Claims {
            sub: principal.user.to_string(),
            role: principal.role,
            clinic: principal.clinic.to_string(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
            jti: Some(uuid::Uuid::new_v4().to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken { token, claims })
    }

    /// True when `presented` is one of the configured API keys.
    pub fn check_api_key(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.api_key_digests.iter().fold(false, |found, key| {
            found | bool::from(key.ct_eq(&presented))
        })
    }
}

/// A token just issued, with its claims.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The signed JWT.
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

/// The longest token id (`jti`) the hub takes, in a token or a revocation.
pub const MAX_JTI_LEN: usize = 128;

fn verified_from(claims: Claims) -> Result<VerifiedToken, AuthError> {
    if let Some(problem) = consult_protocol::ids::id_problem(&claims.sub) {
        return Err(AuthError::Invalid(format!("sub claim {problem}")));
    }
    if let Some(problem) = consult_protocol::ids::id_problem(&claims.clinic) {
        return Err(AuthError::Invalid(format!("clinic claim {problem}")));
    }
    if claims
        .jti
        .as_ref()
        .is_some_and(|jti| jti.is_empty() || jti.len() > MAX_JTI_LEN)
    {
        // A token id that could not be revoked by it is refused.
        return Err(AuthError::Invalid(format!(
            "jti claim must be 1 to {MAX_JTI_LEN} bytes"
        )));
    }
    Ok(VerifiedToken {
        principal: Principal {
            user: UserId(claims.sub),
            role: claims.role,
            clinic: ClinicId(claims.clinic),
        },
        expires_at: claims.exp,
        issued_at: claims.iat,
        jti: claims.jti,
    })
}

fn load_public_key(
    algorithm: &str,
    path: &std::path::Path,
) -> Result<(Algorithm, DecodingKey), AuthSetupError> {
    let error = |message: String| AuthSetupError::PublicKey {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    match algorithm {
        "RS256" => DecodingKey::from_rsa_pem(&pem)
            .map(|key| (Algorithm::RS256, key))
            .map_err(|e| error(e.to_string())),
        "ES256" => DecodingKey::from_ec_pem(&pem)
            .map(|key| (Algorithm::ES256, key))
            .map_err(|e| error(e.to_string())),
        other => Err(error(format!("unsupported algorithm {other}"))),
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

pub mod jwks;
#[cfg(test)]
mod tests;
