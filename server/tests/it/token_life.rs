//! Token lifetime on a live connection: a session closes at its token's
//! `exp` (plus leeway) with `token_expired` and close 4005, and can do
//! nothing after; an in-band `refresh` with a fresh token for the same user,
//! clinic and role keeps it open past the first `exp`; a refresh with any
//! other token is refused and changes nothing.

use crate::harness::raw::{RawSocket, Received};
use crate::harness::{CLINIC, TestHub};
use consult_hub::auth::Principal;
use consult_protocol::{ClinicId, Role, UserId};
use futures_util::SinkExt;
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hub whose tokens get no leeway, so a session ends exactly at `exp`.
pub(crate) async fn hub_without_leeway() -> TestHub {
    TestHub::start_with(|config| config.auth.leeway_secs = 0).await
}

/// A token for `user` in [`CLINIC`] valid for `ttl_secs`, and its `exp`.
pub(crate) fn short_token(hub: &TestHub, user: &str, role: Role, ttl_secs: u64) -> (String, u64) {
    let issued = hub
        .state
        .auth
        .issue_token(
            &Principal {
                user: UserId::from(user),
                role,
                clinic: ClinicId::from(CLINIC),
            },
            ttl_secs,
        )
        .unwrap();
    (issued.token, issued.claims.exp)
}

/// Reads frames until the close; returns the frames and the close code.
pub(crate) async fn frames_until_close(socket: &mut RawSocket) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match socket.recv().await {
            Received::Json(frame) => frames.push(frame),
            Received::Closed(code) => return (frames, code),
        }
    }
}

fn message_bodies(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|frame| frame["type"] == "message")
        .map(|frame| frame["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_session_closes_with_4005_when_its_token_expires_and_gets_nothing_after() {
    let hub = hub_without_leeway().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let (token, exp) = short_token(&hub, "dr-a", Role::Provider, 3);
    let mut provider = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let joined = provider
        .command(
            json!({"type": "join", "consultation_id": consultation.id}),
            "j",
        )
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");
    patient
        .send(&consultation.id, "m-1", "before expiry")
        .await
        .unwrap();

    let (frames, code) = frames_until_close(&mut provider).await;
    assert!(unix_now() >= exp, "closed before exp");
    assert_eq!(code, Some(4005));
    assert_eq!(message_bodies(&frames), ["before expiry"]);
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["code"], "token_expired");

    // Nothing sent on the closed connection is stored, and what others send
    // later goes nowhere near it.
    let _ = provider
        .stream
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"type": "send", "id": "s", "consultation_id": consultation.id,
                   "client_msg_id": "late", "body": "after expiry"})
            .to_string(),
        ))
        .await;
    patient
        .send(&consultation.id, "m-2", "after expiry")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = hub
        .api_get(&format!("/v1/consultations/{}/messages", consultation.id))
        .await;
    assert_eq!(status, 200, "{body}");
    let senders: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["sender"].as_str().unwrap())
        .collect();
    assert_eq!(senders, ["pat-a", "pat-a"]);
}

#[tokio::test]
async fn a_refreshed_session_stays_open_past_the_first_expiry_and_keeps_receiving() {
    let hub = hub_without_leeway().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let (first, first_exp) = short_token(&hub, "dr-a", Role::Provider, 2);
    let mut provider = RawSocket::authenticated(&hub.ws_url(), &first).await;
    let joined = provider
        .command(
            json!({"type": "join", "consultation_id": consultation.id}),
            "j",
        )
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");

    let (fresh, fresh_exp) = short_token(&hub, "dr-a", Role::Provider, 30);
    let refreshed = provider
        .command(json!({"type": "refresh", "token": fresh}), "r")
        .await;
    assert_eq!(refreshed["type"], "ok", "{refreshed}");
    assert_eq!(refreshed["result"]["kind"], "refreshed", "{refreshed}");
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(refreshed["result"]["expires_at"].clone()).unwrap();
    assert_eq!(expires_at.timestamp(), i64::try_from(fresh_exp).unwrap());

    while unix_now() <= first_exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    patient
        .send(&consultation.id, "m-1", "after the first expiry")
        .await
        .unwrap();
    let frame = provider.recv_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(frame["message"]["body"], "after the first expiry");
    let pong = provider.command(json!({"type": "ping"}), "p").await;
    assert_eq!(pong["type"], "ok", "{pong}");
}

#[tokio::test]
async fn a_refresh_with_any_other_token_is_refused_and_the_deadline_stays() {
    let hub = hub_without_leeway().await;
    let (token, exp) = short_token(&hub, "dr-a", Role::Provider, 3);
    let mut provider = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let other_user = short_token(&hub, "dr-b", Role::Provider, 60).0;
    let other_role = short_token(&hub, "dr-a", Role::Admin, 60).0;
    let other_clinic = hub.token("dr-a", Role::Provider, "clinic-2");
    for (index, refused) in [other_user, other_role, other_clinic, "junk".to_owned()]
        .into_iter()
        .enumerate()
    {
        let id = format!("r{index}");
        let answer = provider
            .command(json!({"type": "refresh", "token": refused}), &id)
            .await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], "invalid_token", "{answer}");
    }
    let (frames, code) = frames_until_close(&mut provider).await;
    assert!(unix_now() >= exp, "closed before exp");
    assert_eq!(code, Some(4005), "{frames:?}");
}

#[tokio::test]
async fn a_refresh_with_an_expired_token_is_refused_with_token_expired() {
    let hub = hub_without_leeway().await;
    let (token, _) = short_token(&hub, "dr-a", Role::Provider, 60);
    let mut provider = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let (expired, exp) = short_token(&hub, "dr-a", Role::Provider, 1);
    while unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = provider
        .command(json!({"type": "refresh", "token": expired}), "r")
        .await;
    assert_eq!(answer["code"], "token_expired", "{answer}");
    let pong = provider.command(json!({"type": "ping"}), "p").await;
    assert_eq!(pong["type"], "ok", "{pong}");
}

/// An `ack` whose receipt cannot be written yet (another transaction holds
/// the receipts) does not keep the session open past its token's expiry,
/// and nothing is delivered to it after: the wait ends with the session.
#[tokio::test]
async fn a_session_waiting_on_an_ack_closes_at_expiry_and_gets_nothing_after() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, TransactionTrait};

    let hub = hub_without_leeway().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let (token, exp) = short_token(&hub, "pat-a", Role::Patient, 3);
    let mut patient = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let joined = patient
        .command(
            json!({"type": "join", "consultation_id": consultation.id}),
            "j",
        )
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");
    provider
        .send(&consultation.id, "m-1", "before expiry")
        .await
        .unwrap();

    // Hold the receipts: on SQLite the write lock, on PostgreSQL the table.
    let db = hub.state.store.connection();
    let holder = db.begin().await.unwrap();
    let hold = match db.get_database_backend() {
        DatabaseBackend::Postgres => "LOCK TABLE receipts IN EXCLUSIVE MODE",
        _ => "UPDATE consultations SET last_seq = last_seq WHERE 0",
    };
    holder.execute_unprepared(hold).await.unwrap();
    patient
        .stream
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"type": "ack", "id": "a", "consultation_id": consultation.id,
                   "seq": 1, "receipt": "read"})
            .to_string(),
        ))
        .await
        .unwrap();

    // After the expiry, the provider sends again (on SQLite this waits for
    // the lock too; on PostgreSQL it is stored and published at once).
    while unix_now() < exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let room = consultation.id.clone();
    let late = tokio::spawn(async move { provider.send(&room, "m-2", "after expiry").await });

    let closed =
        tokio::time::timeout(Duration::from_secs(3), frames_until_close(&mut patient)).await;
    holder.rollback().await.unwrap();
    let (frames, code) = closed.expect("the session closes while the ack still waits");
    assert_eq!(code, Some(4005), "{frames:?}");
    assert!(
        !message_bodies(&frames).contains(&"after expiry".to_owned()),
        "{frames:?}"
    );
    assert!(
        !frames
            .iter()
            .any(|frame| frame["type"] == "ok" && frame["id"] == "a"),
        "the ack is not answered after the expiry: {frames:?}"
    );
    late.await.unwrap().unwrap();
}
