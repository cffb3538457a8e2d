//! Verification keys from the identity provider's JWKS URL
//! (`auth.jwks_url`), selected by a token's `kid`.
//!
//! The set is fetched at start, refreshed every `auth.jwks_refresh_secs`,
//! and fetched again (at most every [`ON_DEMAND_GAP`]) when a token names a
//! `kid` the set does not hold, so the provider can rotate keys without a
//! restart. A failed fetch, or an answer with no usable key, keeps the last
//! good set. Only asymmetric keys are taken (RSA and P-256 EC; RS*, PS*,
//! ES256): a shared secret published in a key set would let anyone sign.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shortest pause between fetches made because a token named an unknown
/// `kid` (a flood of forged `kid`s must not become a flood of fetches).
pub const ON_DEMAND_GAP: Duration = Duration::from_secs(10);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of one JWKS URL.
pub struct JwksKeys {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    /// Serialises fetches.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch for an unknown `kid` started.
    last_on_demand: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKeys")
            .field("url", &self.url)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl JwksKeys {
    /// Keys of `url`, none fetched yet.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(url: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            url: url.to_owned(),
            client,
            keys: RwLock::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            last_on_demand: tokio::sync::Mutex::new(None),
        })
    }

    /// The key with id `kid`, if the set holds one.
    pub fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no usable key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches the set now and replaces the held keys with its usable ones.
    /// Returns how many are held; on failure the old keys stay.
    ///
    /// # Errors
    ///
    /// A short reason (never key material) when the fetch or parse fails or
    /// the set holds no usable key.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetching.lock().await;
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("fetching the key set failed: {}", error.without_url()))?
            .json()
            .await
            .map_err(|_| "the key set is not a JWKS document".to_owned())?;
        let usable: HashMap<_, _> = set.keys.iter().filter_map(usable_key).collect();
        if usable.is_empty() {
            return Err("the key set holds no usable key".to_owned());
        }
        let count = usable.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = usable;
        Ok(count)
    }

    /// Fetches again for an unknown `kid`, unless a fetch started within
    /// [`ON_DEMAND_GAP`]; true when it fetched successfully.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        {
            let mut last = self.last_on_demand.lock().await;
            if last.is_some_and(|at| at.elapsed() < ON_DEMAND_GAP) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.refresh().await {
            Ok(_) => true,
            Err(reason) => {
                tracing::warn!(%reason, "JWKS refresh for an unknown kid failed; keeping the keys held");
                false
            }
        }
    }

    /// Refreshes every `every` until `stop`, supervised by `workers`.
    pub fn spawn_refresher(
        self: Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        workers: &Arc<crate::supervisor::Workers>,
    ) {
        workers.spawn(crate::supervisor::Worker::Jwks, move || {
            Arc::clone(&self).refresh_every(every, stop.clone())
        });
    }

    async fn refresh_every(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(reason) = self.refresh().await {
                tracing::warn!(%reason, "JWKS refresh failed; keeping the keys held");
            }
        }
    }
}

/// A key's id, algorithm and decoding key, if it is one the hub accepts.
fn usable_key(jwk: &Jwk) -> Option<(String, (Algorithm, DecodingKey))> {
    let kid = jwk.common.key_id.clone()?;
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::OctetKey(_) | AlgorithmParameters::OctetKeyPair(_), _) => {
            return None;
        }
        (_, Some(declared)) => match declared {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::PS384 => Algorithm::PS384,
            KeyAlgorithm::PS512 => Algorithm::PS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            _ => return None,
        },
        (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(params), None)
            if params.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::EllipticCurve(_), None) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, (algorithm, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(value: serde_json::Value) -> Jwk {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_shared_secret_or_a_key_without_an_id_is_never_taken() {
        let secret =
            jwk(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "s1", "alg": "HS256"}));
        assert!(usable_key(&secret).is_none());
        use base64::Engine as _;
        let pair = rcgen::KeyPair::generate().unwrap();
        let point = pair.public_key_raw();
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let ec = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": encode(&point[1..33]), "y": encode(&point[33..65]),
        });
        let mut with_kid = ec.clone();
        with_kid["kid"] = serde_json::json!("e1");
        assert!(
            usable_key(&jwk(ec)).is_none(),
            "no kid: nothing can select it"
        );
        assert_eq!(
            usable_key(&jwk(with_kid)).map(|(kid, (alg, _))| (kid, alg)),
            Some(("e1".to_owned(), Algorithm::ES256))
        );
    }
}
