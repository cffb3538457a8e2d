//! APNs provider authentication tokens: ES256 JWTs signed with the team's
//! `.p8` key, reused for [`PROVIDER_TOKEN_REFRESH`] as Apple asks.
//!
//! Owns the key and the current token only; it never sees a request.

use crate::notify::providers::{ProviderSetupError, SendError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one provider token is used. Apple rejects tokens older than an
/// hour and refreshes more often than every 20 minutes.
pub(super) const PROVIDER_TOKEN_REFRESH: Duration = Duration::from_secs(50 * 60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

struct Issued {
    jwt: String,
    at: Instant,
}

/// Signs and caches provider tokens.
pub(super) struct ProviderTokens {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    current: Mutex<Issued>,
}

impl ProviderTokens {
    /// Loads the key from `key_pem` (PKCS#8 EC P-256) and signs a first
    /// token, so a bad key fails at startup rather than on the first push.
    pub(super) fn new(
        key_pem: &[u8],
        key_file: &Path,
        key_id: &str,
        team_id: &str,
    ) -> Result<Self, ProviderSetupError> {
        let invalid = |reason: String| ProviderSetupError::InvalidKeyFile {
            path: key_file.to_owned(),
            what: "PKCS#8 EC P-256 private key (.p8)",
            reason,
        };
        let key = EncodingKey::from_ec_pem(key_pem).map_err(|error| invalid(error.to_string()))?;
        let jwt = sign(&key, key_id, team_id).map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            key,
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            current: Mutex::new(Issued {
                jwt,
                at: Instant::now(),
            }),
        })
    }

    /// The token to send now, signing a new one when the current one is due.
    pub(super) fn current(&self) -> Result<String, SendError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.at.elapsed() >= PROVIDER_TOKEN_REFRESH {
            *current = self.issue()?;
        }
        Ok(current.jwt.clone())
    }

    /// A new token to replace `rejected`, unless another send already
    /// replaced it.
    pub(super) fn refresh(&self, rejected: &str) -> Result<String, SendError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.jwt == rejected {
            *current = self.issue()?;
        }
        Ok(current.jwt.clone())
    }

    fn issue(&self) -> Result<Issued, SendError> {
        let jwt = sign(&self.key, &self.key_id, &self.team_id).map_err(|error| {
            SendError::Retryable(format!("apns: cannot sign provider token: {error}"))
        })?;
        tracing::debug!(provider = "apns", "signed a new provider token");
        Ok(Issued {
            jwt,
            at: Instant::now(),
        })
    }
}

fn sign(key: &EncodingKey, key_id: &str, team_id: &str) -> jsonwebtoken::errors::Result<String> {
    // Apple's documented header is exactly {alg, kid}.
    let mut header = Header::new(Algorithm::ES256);
    header.typ = None;
    header.kid = Some(key_id.to_owned());
    let claims = Claims {
        iss: team_id,
        iat: chrono::Utc::now().timestamp(),
    };
    jsonwebtoken::encode(&header, &claims, key)
}
