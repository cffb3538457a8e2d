//! Revocation: one token by `jti`, every token of a user in a clinic issued
//! up to a time, and "disconnect now", through the REST API. A covered live
//! session gets `token_revoked` and close 4006; a covered token is refused at
//! `hello` and `refresh`; revocations survive a restart and reach every node
//! of a cluster within a second; each revocation and each token issued by
//! `POST /v1/tokens` is audited.

use crate::harness::cluster::Cluster;
use crate::harness::raw::RawSocket;
use crate::harness::{CLINIC, TestHub};
use crate::token_life::{frames_until_close, unix_now};
use consult_protocol::Role;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A token from `POST /v1/tokens` and its `jti`.
async fn api_token(hub: &TestHub, user: &str, role: &str, clinic: &str) -> (String, String) {
    let (status, body) = hub
        .api_post(
            "/v1/tokens",
            json!({"user": user, "role": role, "clinic": clinic, "ttl_secs": 600}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["token"].as_str().unwrap().to_owned(),
        body["jti"].as_str().unwrap().to_owned(),
    )
}

/// `POST /v1/revocations/users` for `user` in [`CLINIC`], without a time;
/// asserts 200 and returns the body.
async fn revoke_user(hub: &TestHub, user: &str) -> Value {
    let (status, body) = hub
        .api_post(
            "/v1/revocations/users",
            json!({"clinic": CLINIC, "user": user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Asserts the session gets `token_revoked` then close 4006 within `within`.
async fn assert_revoked_close(socket: &mut RawSocket, within: Duration) {
    let started = Instant::now();
    let (frames, code) = frames_until_close(socket).await;
    assert!(started.elapsed() <= within, "took {:?}", started.elapsed());
    assert_eq!(code, Some(4006), "{frames:?}");
    let last = frames.last().unwrap();
    assert_eq!(last["code"], "token_revoked", "{last}");
}

async fn assert_hello_refused(hub: &TestHub, token: &str, code: &str) {
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    let answer = socket.hello(token).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(socket.recv_close().await, Some(4001));
}

/// The audit rows not tied to a consultation: (action, detail).
async fn platform_audit(hub: &TestHub) -> Vec<(String, Value)> {
    let db = hub.state.store.connection();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT action, detail FROM audit_log WHERE consultation_id IS NULL ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let action: String = row.try_get("", "action").unwrap();
            let detail: String = row.try_get("", "detail").unwrap();
            (action, serde_json::from_str(&detail).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn revoking_a_jti_closes_its_session_and_refuses_it_at_hello() {
    let hub = TestHub::start().await;
    let (token, jti) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let (other, _) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let mut revoked = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let mut kept = RawSocket::authenticated(&hub.ws_url(), &other).await;

    let (status, body) = hub
        .api_post("/v1/revocations/tokens", json!({"jti": jti}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closed_here"], 1);
    assert_revoked_close(&mut revoked, Duration::from_secs(1)).await;
    assert_hello_refused(&hub, &token, "token_revoked").await;
    let pong = kept.command(json!({"type": "ping"}), "p").await;
    assert_eq!(pong["type"], "ok", "{pong}");

    let audit = platform_audit(&hub).await;
    let actions: Vec<&str> = audit.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(actions, ["token.issue", "token.issue", "token.revoke"]);
    assert_eq!(audit[0].1["jti"], jti);
    assert_eq!(audit[0].1["sub"], "dr-a");
    assert_eq!(audit[2].1["jti"], jti);
    assert!(
        !audit
            .iter()
            .any(|(_, detail)| detail.to_string().contains(&token))
    );
}

#[tokio::test]
async fn a_refresh_with_a_revoked_token_is_refused_and_the_session_stays() {
    let hub = TestHub::start().await;
    let (token, _) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let (fresh, jti) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let mut socket = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let (status, _) = hub
        .api_post("/v1/revocations/tokens", json!({"jti": jti}))
        .await;
    assert_eq!(status, 200);
    let answer = socket
        .command(json!({"type": "refresh", "token": fresh}), "r")
        .await;
    assert_eq!(answer["code"], "token_revoked", "{answer}");
    let pong = socket.command(json!({"type": "ping"}), "p").await;
    assert_eq!(pong["type"], "ok", "{pong}");
}

#[tokio::test]
async fn revoking_a_users_tokens_covers_those_issued_up_to_the_time_in_that_clinic_only() {
    // A leeway of 1 s: the cutoff is then a second ahead of the hub's clock.
    let hub = TestHub::start_with(|config| config.auth.leeway_secs = 1).await;
    let (old, _) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let (elsewhere, _) = api_token(&hub, "dr-a", "provider", "clinic-2").await;
    let mut session = RawSocket::authenticated(&hub.ws_url(), &old).await;
    let mut other_clinic = RawSocket::authenticated(&hub.ws_url(), &elsewhere).await;

    revoke_user(&hub, "dr-a").await;
    assert_revoked_close(&mut session, Duration::from_secs(1)).await;
    assert_hello_refused(&hub, &old, "token_revoked").await;
    let pong = other_clinic.command(json!({"type": "ping"}), "p").await;
    assert_eq!(pong["type"], "ok", "{pong}");

    // A token issued after the cutoff (the revocation's time plus the
    // leeway) works.
    let cutoff = unix_now() + 1;
    while unix_now() <= cutoff {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (new, _) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let mut socket = RawSocket::connect(&hub.ws_url()).await;
    assert_eq!(socket.hello(&new).await["type"], "welcome");
    let audit = platform_audit(&hub).await;
    let (_, detail) = audit
        .iter()
        .find(|(action, _)| action == "token.revoke_user")
        .expect("the revocation is audited");
    assert_eq!(detail["user"], "dr-a");
    assert_eq!(detail["clinic"], CLINIC);
}

#[tokio::test]
async fn disconnecting_a_user_closes_their_sessions_but_leaves_tokens_valid() {
    let hub = TestHub::start().await;
    let (token, _) = api_token(&hub, "pat-a", "patient", CLINIC).await;
    let mut first = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let mut second = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let (status, body) = hub
        .api_post(
            "/v1/disconnections",
            json!({"clinic": CLINIC, "user": "pat-a"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closed_here"], 2);
    assert_revoked_close(&mut first, Duration::from_secs(1)).await;
    assert_revoked_close(&mut second, Duration::from_secs(1)).await;
    let mut again = RawSocket::connect(&hub.ws_url()).await;
    assert_eq!(again.hello(&token).await["type"], "welcome");
    let audit = platform_audit(&hub).await;
    assert_eq!(audit.last().unwrap().0, "session.disconnect_user");
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let hub = TestHub::start().await;
    let (by_id, jti) = api_token(&hub, "dr-a", "provider", CLINIC).await;
    let (by_user, _) = api_token(&hub, "dr-b", "provider", CLINIC).await;
    assert_eq!(
        hub.api_post("/v1/revocations/tokens", json!({"jti": jti}))
            .await
            .0,
        200
    );
    assert_eq!(
        hub.api_post(
            "/v1/revocations/users",
            json!({"clinic": CLINIC, "user": "dr-b"})
        )
        .await
        .0,
        200
    );
    let hub = hub.restart_with(|_| {}).await;
    assert_hello_refused(&hub, &by_id, "token_revoked").await;
    assert_hello_refused(&hub, &by_user, "token_revoked").await;
}

#[tokio::test]
async fn bad_revocation_requests_are_refused_with_a_clear_error() {
    let hub = TestHub::start().await;
    // Empty or overlong ids: 400; a body of the wrong shape: 422.
    let cases = [
        ("/v1/revocations/tokens", json!({"jti": ""}), 400),
        (
            "/v1/revocations/tokens",
            json!({"jti": "x".repeat(129)}),
            400,
        ),
        ("/v1/revocations/tokens", json!({}), 422),
        (
            "/v1/revocations/tokens",
            json!({"jti": "a", "extra": 1}),
            422,
        ),
        ("/v1/revocations/users", json!({"clinic": CLINIC}), 422),
        (
            "/v1/revocations/users",
            json!({"clinic": "", "user": "dr-a"}),
            400,
        ),
        (
            "/v1/revocations/users",
            json!({"clinic": CLINIC, "user": "dr-a", "issued_before": "yesterday"}),
            422,
        ),
        (
            "/v1/disconnections",
            json!({"clinic": CLINIC, "user": ""}),
            400,
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = hub.api_post(path, body.clone()).await;
        assert_eq!(status, expected, "{path} {body} -> {answer}");
        assert!(answer["code"].is_string(), "{answer}");
    }
    let response = hub
        .http
        .post(hub.url("/v1/revocations/tokens"))
        .json(&json!({"jti": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(platform_audit(&hub).await.is_empty());
}

#[tokio::test]
async fn a_revocation_on_one_node_closes_a_provider_on_another_within_a_second() {
    let (_cluster, [node_a, node_b]) = Cluster::start::<2>().await;
    let consultation = node_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let (token, _) = api_token(&node_a, "dr-a", "provider", CLINIC).await;
    let mut provider = RawSocket::authenticated(&node_b.ws_url(), &token).await;
    let joined = provider
        .command(
            json!({"type": "join", "consultation_id": consultation.id}),
            "j",
        )
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");
    let patient = node_a.connect("pat-a", Role::Patient).await;

    let body = revoke_user(&node_a, "dr-a").await;
    assert_eq!(body["closed_here"], 0);
    assert_revoked_close(&mut provider, Duration::from_secs(1)).await;
    patient
        .send(&consultation.id, "m-1", "after removal")
        .await
        .unwrap();
    assert_hello_refused(&node_b, &token, "token_revoked").await;
}

/// A token signed by the hub's secret for `dr-a` in [`CLINIC`], issued
/// `iat_ahead_secs` ahead of this clock (an issuer whose clock runs fast),
/// with `jti`.
fn token_issued_ahead(iat_ahead_secs: u64, jti: Option<String>) -> String {
    let now = unix_now();
    let claims = consult_hub::auth::Claims {
        sub: "dr-a".to_owned(),
        role: Role::Provider,
        clinic: CLINIC.to_owned(),
        iat: now + iat_ahead_secs,
        exp: now + 600,
        nbf: None,
        iss: None,
        aud: None,
        jti,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::harness::JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn revoking_a_users_tokens_covers_a_token_whose_issuer_clock_runs_ahead() {
    let hub = TestHub::start().await;
    // 20 s ahead: within the default 30 s leeway, so `hello` takes it.
    let ahead = token_issued_ahead(20, None);
    let mut session = RawSocket::authenticated(&hub.ws_url(), &ahead).await;
    let body = revoke_user(&hub, "dr-a").await;
    assert_eq!(body["closed_here"], 1, "{body}");
    assert_revoked_close(&mut session, Duration::from_secs(1)).await;
    assert_hello_refused(&hub, &ahead, "token_revoked").await;
}

#[tokio::test]
async fn a_token_id_that_could_not_be_revoked_is_refused() {
    let hub = TestHub::start().await;
    for jti in [String::new(), "j".repeat(129)] {
        let token = token_issued_ahead(0, Some(jti));
        assert_hello_refused(&hub, &token, "invalid_token").await;
    }
    let longest = "j".repeat(128);
    let token = token_issued_ahead(0, Some(longest.clone()));
    let mut session = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let (status, body) = hub
        .api_post("/v1/revocations/tokens", json!({"jti": longest}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_revoked_close(&mut session, Duration::from_secs(1)).await;
}
