//! Tokens verified with the identity provider's JWKS (`auth.jwks_url`): a
//! local HTTP server plays the provider, serving a key set the test changes
//! to rotate keys while the hub runs.

use crate::harness::{CLINIC, TestHub};
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consult_client::{Client, ClientError};
use consult_hub::auth::Claims;
use consult_protocol::{ErrorCode, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// A P-256 signing key and its public JWK under `kid`.
struct ProviderKey {
    kid: &'static str,
    private_pem: String,
    jwk: Value,
}

impl ProviderKey {
    fn generate(kid: &'static str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        let point = pair.public_key_raw();
        assert_eq!(
            (point.len(), point[0]),
            (65, 4),
            "an uncompressed P-256 point"
        );
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            kid,
            private_pem: pair.serialize_pem(),
            jwk,
        }
    }

    fn token(&self, user: &str, role: Role) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = Claims {
            sub: user.to_owned(),
            role,
            clinic: CLINIC.to_owned(),
            iat: now,
            exp: now + 600,
            nbf: None,
            iss: None,
            aud: Some(json!("platform-api")),
            jti: None,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_owned());
        let key = EncodingKey::from_ec_pem(self.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

/// Serves `{"keys": …}` from `keys`, which the test may change.
async fn key_server(keys: Arc<Mutex<Vec<Value>>>) -> String {
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let keys = keys.clone();
            async move { axum::Json(json!({ "keys": *keys.lock().unwrap() })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/.well-known/jwks.json")
}

async fn refused(hub: &TestHub, token: &str) -> ErrorCode {
    match Client::connect(&hub.ws_url(), token).await {
        Err(ClientError::Rejected { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn tokens_verify_with_the_key_set_and_a_rotated_key_works_without_a_restart() {
    let first = ProviderKey::generate("key-2026-11");
    let second = ProviderKey::generate("key-2026-12");
    let served = Arc::new(Mutex::new(vec![first.jwk.clone()]));
    let url = key_server(served.clone()).await;
    let hub = TestHub::start_with(|config| config.auth.jwks_url = Some(url)).await;

    let (client, welcome) = Client::connect(&hub.ws_url(), &first.token("dr-a", Role::Provider))
        .await
        .unwrap();
    assert_eq!(welcome.user.as_str(), "dr-a");
    client.ping().await.unwrap();

    // The provider rotates: the set now holds only the new key. A token
    // with the new `kid` makes the hub fetch the set again at once.
    *served.lock().unwrap() = vec![second.jwk.clone()];
    let (client, _) = Client::connect(&hub.ws_url(), &second.token("dr-a", Role::Provider))
        .await
        .unwrap();
    client.ping().await.unwrap();
    assert_eq!(
        refused(&hub, &first.token("dr-a", Role::Provider)).await,
        ErrorCode::InvalidToken,
        "the retired key no longer verifies"
    );
    // A forged `kid` is refused, whatever key signed it.
    let stranger = ProviderKey::generate("key-2026-12");
    assert_eq!(
        refused(&hub, &stranger.token("dr-a", Role::Provider)).await,
        ErrorCode::InvalidToken
    );
}

#[tokio::test]
async fn a_key_set_that_cannot_be_fetched_keeps_the_last_good_keys() {
    let key = ProviderKey::generate("k1");
    let served = Arc::new(Mutex::new(vec![key.jwk.clone()]));
    let url = key_server(served.clone()).await;
    let hub = TestHub::start_with(|config| config.auth.jwks_url = Some(url)).await;
    // The provider now answers an empty set (as a broken deploy might).
    served.lock().unwrap().clear();
    let jwks_refresh = hub
        .state
        .auth
        .verify_fresh(&key.token("dr-a", Role::Provider))
        .await;
    assert!(jwks_refresh.is_ok(), "{jwks_refresh:?}");
    // A token naming an unknown kid triggers a fetch, which finds no key:
    // the held key still verifies afterwards.
    let other = ProviderKey::generate("k2");
    assert!(
        hub.state
            .auth
            .verify_fresh(&other.token("dr-a", Role::Provider))
            .await
            .is_err()
    );
    assert!(
        hub.state
            .auth
            .verify_fresh(&key.token("dr-a", Role::Provider))
            .await
            .is_ok()
    );
}

/// The key set's refresher is a supervised worker: made to fail, it is
/// reported on `/readyz` and restarted.
#[tokio::test]
async fn the_key_set_refresher_is_supervised() {
    let key = ProviderKey::generate("key-2026-11");
    let url = key_server(Arc::new(Mutex::new(vec![key.jwk.clone()]))).await;
    let hub = TestHub::start_with(|config| config.auth.jwks_url = Some(url)).await;
    let worker = consult_hub::supervisor::Worker::Jwks;
    let state_of = || async {
        let (status, body) = hub.api_get("/readyz").await;
        (status, body["workers"]["jwks"].as_str().map(str::to_owned))
    };
    assert_eq!(state_of().await, (200, Some("running".to_owned())));
    hub.state.workers.fail(worker);
    crate::harness::cluster::wait_until(
        std::time::Duration::from_secs(3),
        "readyz names the refresher",
        || async { state_of().await == (503, Some("restarting".to_owned())) },
    )
    .await;
    hub.state.workers.heal(worker);
    crate::harness::cluster::wait_until(
        std::time::Duration::from_secs(5),
        "the refresher runs again",
        || async { state_of().await == (200, Some("running".to_owned())) },
    )
    .await;
}
