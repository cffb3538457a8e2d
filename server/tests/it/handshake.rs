//! The handshake: `hello` → `welcome`, what happens before it (commands,
//! junk, silence), and which tokens authenticate: HS256 with the hub's
//! secret, RS256/ES256 with a configured public key, never a URL query.

use crate::harness::raw::{RawSocket, Received};
use crate::harness::{CLINIC, TestHub};
use consult_client::Client;
use consult_hub::auth::Claims;
use consult_hub::config::PublicKeyConfig;
use consult_protocol::{ErrorCode, PROTOCOL_VERSION, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The HS256 secret of every test hub (`harness::test_config`).
const TEST_SECRET: &[u8] = crate::harness::JWT_SECRET.as_bytes();

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `dr-a`, a provider in [`CLINIC`], expiring `ttl_secs` from now
/// (in the past when negative).
fn claims(ttl_secs: i64) -> Claims {
    let now = unix_now();
    Claims {
        sub: "dr-a".to_owned(),
        role: Role::Provider,
        clinic: CLINIC.to_owned(),
        iat: now - 3_600,
        exp: now.checked_add_signed(ttl_secs).unwrap(),
        nbf: None,
        iss: None,
        aud: None,
        jti: None,
    }
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn hs256_token(secret: &[u8], claims: &Claims) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(secret), claims)
}

fn rs256_token(private_pem: &str) -> String {
    let pem = std::fs::read(fixture(private_pem)).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    sign(Algorithm::RS256, &key, &claims(600))
}

fn es256_token() -> String {
    let pem = std::fs::read(fixture("ec-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    sign(Algorithm::ES256, &key, &claims(600))
}

/// A hub that also accepts RS256 and ES256 tokens from the fixture keys.
async fn hub_with_public_keys() -> TestHub {
    TestHub::start_with(|config| {
        config.auth.public_keys = vec![
            PublicKeyConfig {
                algorithm: "RS256".to_owned(),
                pem_file: fixture("rsa-public.pem"),
            },
            PublicKeyConfig {
                algorithm: "ES256".to_owned(),
                pem_file: fixture("ec-public.pem"),
            },
        ];
    })
    .await
}

/// Sends `hello` with `token` and asserts it is refused with `code` (no id)
/// and then closed with 4001.
async fn assert_hello_refused(hub: &TestHub, token: &str, code: ErrorCode) {
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    let answer = socket.hello(token).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], code.as_str(), "{answer}");
    assert!(answer.get("id").is_none(), "hello has no id: {answer}");
    assert_eq!(socket.recv_close().await, Some(4001));
}

/// Asserts that `token` is welcomed as `dr-a` and the connection then works.
async fn assert_welcomed_as_dr_a(hub: &TestHub, token: &str) {
    let (client, welcome) = Client::connect(&hub.ws_url(), token)
        .await
        .expect("token accepted");
    assert_eq!(welcome.user.as_str(), "dr-a");
    assert_eq!(welcome.role, Role::Provider);
    assert_eq!(welcome.clinic.as_str(), CLINIC);
    client.ping().await.expect("authenticated connection works");
}

fn ping(id: &str) -> Value {
    json!({"type": "ping", "id": id})
}

#[tokio::test]
async fn hello_with_a_valid_token_is_welcomed_with_identity_and_limits() {
    let hub = TestHub::start_with(|config| {
        config.session.heartbeat_interval_secs = 7;
        config.session.max_message_bytes = 4_096;
    })
    .await;
    let token = hub.token("pat-a", Role::Patient, "clinic-9");
    let (client, welcome) = Client::connect(&hub.ws_url(), &token).await.unwrap();
    assert_eq!(welcome.protocol, 1);
    assert_eq!(welcome.protocol, PROTOCOL_VERSION);
    assert_eq!(welcome.user.as_str(), "pat-a");
    assert_eq!(welcome.role, Role::Patient);
    assert_eq!(welcome.clinic.as_str(), "clinic-9");
    assert_eq!(welcome.heartbeat_secs, 7);
    assert_eq!(welcome.max_frame_bytes, 4_096);
    assert!(!welcome.conn_id.is_empty());
    client.ping().await.expect("authenticated connection works");
}

#[tokio::test]
async fn a_command_before_hello_gets_hello_required_and_hello_still_works() {
    let hub = TestHub::start().await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    socket.send_json(ping("early-1")).await;
    let refusal = socket.recv_json().await;
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_eq!(refusal["code"], "hello_required");
    assert_eq!(refusal["id"], "early-1");

    let token = hub.token("dr-a", Role::Provider, CLINIC);
    let welcome = socket.hello(&token).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], "dr-a");
    let pong = socket.command(ping("x"), "p-1").await;
    assert_eq!(pong["type"], "ok", "{pong}");
}

#[tokio::test]
async fn non_json_before_hello_is_invalid_json_and_hello_still_works() {
    let hub = TestHub::start().await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    socket.send_text("hello, hub?").await;
    let refusal = socket.recv_json().await;
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_eq!(refusal["code"], "invalid_json");

    let welcome = socket
        .hello(&hub.token("dr-a", Role::Provider, CLINIC))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[tokio::test]
async fn no_hello_within_the_handshake_timeout_closes_with_4000() {
    let hub = TestHub::start_with(|config| config.session.handshake_timeout_ms = 200).await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    match socket.recv().await {
        Received::Closed(code) => assert_eq!(code, Some(4000)),
        Received::Json(frame) => panic!("expected the close, got {frame}"),
    }
}

#[tokio::test]
async fn more_than_ten_frames_before_hello_close_with_4001() {
    let hub = TestHub::start().await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    for i in 1..=10 {
        socket.send_json(ping(&format!("early-{i}"))).await;
        let refusal = socket.recv_json().await;
        assert_eq!(refusal["code"], "hello_required", "{refusal}");
    }
    socket.send_json(ping("early-11")).await;
    assert_eq!(socket.recv_close().await, Some(4001));
}

#[tokio::test]
async fn binary_frames_before_hello_count_toward_the_ten_frame_limit() {
    let hub = TestHub::start().await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    for _ in 1..=10 {
        socket.send_binary(vec![0xde, 0xad]).await;
        let refusal = socket.recv_json().await;
        assert_eq!(refusal["code"], "binary_not_supported", "{refusal}");
    }
    socket.send_binary(vec![0xbe, 0xef]).await;
    assert_eq!(socket.recv_close().await, Some(4001));
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_before_hello_closes_with_1007() {
    let hub = TestHub::start().await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    socket.send_invalid_utf8_text().await;
    assert_eq!(socket.recv_close().await, Some(1007));
}

#[tokio::test]
async fn an_expired_token_gets_token_expired_then_close_4001() {
    let hub = TestHub::start().await;
    // Well past the hub's 30 s leeway.
    let token = hs256_token(TEST_SECRET, &claims(-600));
    assert_hello_refused(&hub, &token, ErrorCode::TokenExpired).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_invalid_and_closed_with_4001() {
    let hub = TestHub::start().await;
    let token = hs256_token(b"not-the-hub-secret-0123456789", &claims(600));
    assert_hello_refused(&hub, &token, ErrorCode::InvalidToken).await;
}

#[tokio::test]
async fn a_garbage_token_is_invalid_and_closed_with_4001() {
    let hub = TestHub::start().await;
    for token in ["not-a-jwt", "a.b.c", ""] {
        assert_hello_refused(&hub, token, ErrorCode::InvalidToken).await;
    }
}

#[tokio::test]
async fn a_token_in_the_url_query_does_not_authenticate() {
    let hub = TestHub::start().await;
    let token = hub.token("dr-a", Role::Provider, CLINIC);
    let mut socket = RawSocket::connect(&format!("{}?token={token}", hub.ws_url())).await;
    socket.send_json(ping("q-1")).await;
    let refusal = socket.recv_json().await;
    assert_eq!(refusal["code"], "hello_required", "{refusal}");
    assert_eq!(refusal["id"], "q-1");

    let welcome = socket.hello(&token).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[tokio::test]
async fn a_second_hello_is_already_authenticated_and_the_connection_survives() {
    let hub = TestHub::start().await;
    let token = hub.token("dr-a", Role::Provider, CLINIC);
    let mut socket = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let other = hub.token("dr-b", Role::Provider, CLINIC);
    let refusal = socket.hello(&other).await;
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_eq!(refusal["code"], "already_authenticated");

    let pong = socket.command(ping("x"), "p-1").await;
    assert_eq!(pong["type"], "ok", "{pong}");
    // Still dr-a: the second hello changed nothing.
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let joined = socket
        .command(
            json!({"type": "join", "consultation_id": consultation.id}),
            "j-1",
        )
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");
}

#[tokio::test]
async fn an_rs256_token_verifies_with_the_configured_public_key() {
    let hub = hub_with_public_keys().await;
    assert_welcomed_as_dr_a(&hub, &rs256_token("rsa-private.pem")).await;
}

#[tokio::test]
async fn an_es256_token_verifies_with_the_configured_public_key() {
    let hub = hub_with_public_keys().await;
    assert_welcomed_as_dr_a(&hub, &es256_token()).await;
}

#[tokio::test]
async fn an_rs256_token_signed_by_an_unconfigured_key_is_refused() {
    let hub = hub_with_public_keys().await;
    let token = rs256_token("rsa-other-private.pem");
    assert_hello_refused(&hub, &token, ErrorCode::InvalidToken).await;
}

#[tokio::test]
async fn asymmetric_tokens_are_refused_when_no_public_key_is_configured() {
    let hub = TestHub::start().await;
    assert_hello_refused(
        &hub,
        &rs256_token("rsa-private.pem"),
        ErrorCode::InvalidToken,
    )
    .await;
    assert_hello_refused(&hub, &es256_token(), ErrorCode::InvalidToken).await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    // The classic algorithm-confusion forgery: the public key is public.
    let hub = hub_with_public_keys().await;
    let public_pem = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let token = hs256_token(&public_pem, &claims(600));
    assert_hello_refused(&hub, &token, ErrorCode::InvalidToken).await;
}

#[tokio::test]
async fn a_token_with_an_audience_is_welcomed_when_the_hub_checks_none() {
    let hub = TestHub::start().await;
    let mut with_aud = claims(600);
    with_aud.aud = Some(serde_json::json!("platform-api"));
    assert_welcomed_as_dr_a(&hub, &hs256_token(TEST_SECRET, &with_aud)).await;
}

#[tokio::test]
async fn a_token_not_yet_valid_or_living_too_long_is_refused_at_hello() {
    let hub = TestHub::start_with(|config| config.auth.max_token_lifetime_secs = 7_200).await;
    let mut early = claims(600);
    early.nbf = Some(unix_now() + 600);
    assert_hello_refused(
        &hub,
        &hs256_token(TEST_SECRET, &early),
        ErrorCode::InvalidToken,
    )
    .await;
    // iat an hour ago, exp two hours from now: three hours in all.
    let long = claims(7_200);
    assert_hello_refused(
        &hub,
        &hs256_token(TEST_SECRET, &long),
        ErrorCode::InvalidToken,
    )
    .await;
    assert_welcomed_as_dr_a(&hub, &hs256_token(TEST_SECRET, &claims(600))).await;
}
