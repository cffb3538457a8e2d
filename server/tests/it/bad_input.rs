//! Bad input from an authenticated client: malformed, binary, oversized and
//! too-frequent frames, and out-of-range values. Each test writes the frame
//! raw, asserts the refusal, then proves the connection and the room still
//! work and that the store holds exactly what was accepted.

use crate::harness::raw::RawSocket;
use crate::harness::{CLINIC, TestHub, expect_event};
use consult_client::Client;
use consult_hub::Config;
use consult_protocol::{ConsultationId, Role, ServerFrame};
use serde_json::{Value, json};
use std::time::Duration;

/// A consultation with its provider on a raw socket (the misbehaving side)
/// and its patient on the typed client, joined, after one stored message.
struct Room {
    hub: TestHub,
    consultation: ConsultationId,
    provider: RawSocket,
    patient: Client,
    /// Bodies the store must hold, in order.
    stored: Vec<String>,
}

impl Room {
    async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    /// The provider does not join, so it has spent no command yet: a
    /// rate-limit test starts from a full bucket.
    async fn open_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let hub = TestHub::start_with(adjust).await;
        let consultation = hub
            .consultation("dr-a", "pat-a", "waiting_for_patient")
            .await
            .id;
        let token = hub.token("dr-a", Role::Provider, CLINIC);
        let provider = RawSocket::authenticated(&hub.ws_url(), &token).await;
        let patient = hub.connect("pat-a", Role::Patient).await;
        patient.join(&consultation, None).await.unwrap();
        patient
            .send(&consultation, "before-1", "before")
            .await
            .unwrap();
        Self {
            hub,
            consultation,
            provider,
            patient,
            stored: vec!["before".to_owned()],
        }
    }

    /// A `send` command from the provider, as JSON.
    fn send_frame(&self, client_msg_id: &str, body: &str) -> Value {
        json!({
            "type": "send",
            "consultation_id": self.consultation,
            "client_msg_id": client_msg_id,
            "body": body,
        })
    }

    /// Writes `frame` raw from the provider and returns the answer.
    async fn provider_answer(&mut self, frame: impl Into<String>) -> Value {
        self.provider.send_text(frame).await;
        self.provider.recv_answer().await
    }

    /// The provider sends a message on the same connection: it is accepted
    /// with the next sequence number, reaches the patient, and the store
    /// holds exactly what was accepted so far.
    async fn assert_provider_still_sends(&mut self) {
        let body = format!("after {}", self.stored.len());
        let frame = self.send_frame(&format!("m-{}", self.stored.len()), &body);
        let answer = self.provider.command(frame, "still-works").await;
        assert_eq!(answer["type"], "ok", "{answer}");
        let seq = self.stored.len() as u64 + 1;
        assert_eq!(answer["result"]["seq"], seq, "{answer}");
        self.stored.push(body.clone());
        self.assert_patient_receives(&body, seq).await;
        self.assert_store_holds_exactly_what_was_accepted().await;
    }

    async fn assert_patient_receives(&self, body: &str, seq: u64) {
        let received = expect_event(&self.patient, |event| match event {
            ServerFrame::Message { message } if message.body == body => Some(message.seq),
            _ => None,
        })
        .await;
        assert_eq!(received.get(), seq);
    }

    async fn assert_store_holds_exactly_what_was_accepted(&self) {
        let (status, page) = self
            .hub
            .api_get(&format!("/v1/consultations/{}/messages", self.consultation))
            .await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().unwrap();
        let bodies: Vec<&str> = messages
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        assert_eq!(bodies, self.stored, "nothing lost, nothing duplicated");
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=self.stored.len() as u64).collect::<Vec<_>>());
    }

    /// After the provider's connection was closed: the room tells the
    /// patient, the patient can still send, and a fresh provider connection
    /// can send to the patient.
    async fn assert_room_survives_the_provider_closing(&mut self) {
        expect_event(&self.patient, |event| match event {
            ServerFrame::Presence {
                user,
                online: false,
                ..
            } if user.as_str() == "dr-a" => Some(()),
            _ => None,
        })
        .await;
        let (seq, _) = self
            .patient
            .send(&self.consultation, "after-close", "are you there?")
            .await
            .unwrap();
        self.stored.push("are you there?".to_owned());
        assert_eq!(seq.get(), self.stored.len() as u64);
        let token = self.hub.token("dr-a", Role::Provider, CLINIC);
        self.provider = RawSocket::authenticated(&self.hub.ws_url(), &token).await;
        self.assert_provider_still_sends().await;
    }
}

fn assert_error(answer: &Value, code: &str, id: Option<&str>) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
    match id {
        Some(id) => assert_eq!(answer["id"], id, "{answer}"),
        None => assert!(answer.get("id").is_none(), "{answer}"),
    }
}

#[tokio::test]
async fn non_json_text_is_invalid_json_and_the_room_keeps_working() {
    let mut room = Room::open().await;
    let answer = room
        .provider_answer(r#"{"type": "send", "id": "x-1""#)
        .await;
    assert_error(&answer, "invalid_json", None);
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn an_unknown_type_is_unknown_type_echoing_the_id() {
    let mut room = Room::open().await;
    let frame = json!({"type": "shout", "id": "u-1", "consultation_id": room.consultation});
    let answer = room.provider_answer(frame.to_string()).await;
    assert_error(&answer, "unknown_type", Some("u-1"));
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn a_missing_field_is_invalid_frame_naming_it_and_echoing_the_id() {
    let mut room = Room::open().await;
    let mut frame = room.send_frame("m-missing", "unused");
    frame.as_object_mut().unwrap().remove("body");
    frame["id"] = json!("f-1");
    let answer = room.provider_answer(frame.to_string()).await;
    assert_error(&answer, "invalid_frame", Some("f-1"));
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("body"), "names the field: {message}");
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_invalid_frame_and_stores_nothing() {
    let mut room = Room::open().await;
    let mut frame = room.send_frame("m-wrong", "unused");
    frame["body"] = json!(42);
    frame["id"] = json!("f-2");
    let answer = room.provider_answer(frame.to_string()).await;
    assert_error(&answer, "invalid_frame", Some("f-2"));
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn a_binary_frame_is_binary_not_supported() {
    let mut room = Room::open().await;
    let frame = room.send_frame("m-binary", "sent as binary");
    room.provider
        .send_binary(frame.to_string().into_bytes())
        .await;
    let answer = room.provider.recv_answer().await;
    assert_error(&answer, "binary_not_supported", None);
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn a_frame_over_the_size_limit_is_frame_too_large_and_the_connection_continues() {
    let mut room = Room::open_with(|config| config.session.max_message_bytes = 1_024).await;
    // A valid send whose body is within max_body_chars: only the frame
    // size is wrong with it.
    let mut frame = room.send_frame("m-large", &"x".repeat(2_000));
    frame["id"] = json!("big-1");
    let answer = room.provider_answer(frame.to_string()).await;
    assert_error(&answer, "frame_too_large", None);
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn a_frame_over_the_hard_cap_closes_with_1009_and_the_room_keeps_working() {
    let mut room = Room::open_with(|config| {
        config.session.max_message_bytes = 1_024;
        config.session.hard_message_bytes = 4_096;
    })
    .await;
    // The provider must be in the room for its departure to be announced.
    let join = json!({"type": "join", "consultation_id": room.consultation});
    let answer = room.provider.command(join, "j-1").await;
    assert_eq!(answer["type"], "ok", "{answer}");

    let frame = room.send_frame("m-huge", &"x".repeat(8_192));
    room.provider.send_text(frame.to_string()).await;
    assert_eq!(room.provider.recv_close().await, Some(1009));
    room.assert_room_survives_the_provider_closing().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_the_room_keeps_working() {
    let mut room = Room::open().await;
    let join = json!({"type": "join", "consultation_id": room.consultation});
    let answer = room.provider.command(join, "j-1").await;
    assert_eq!(answer["type"], "ok", "{answer}");

    room.provider.send_invalid_utf8_text().await;
    assert_eq!(room.provider.recv_close().await, Some(1007));
    room.assert_room_survives_the_provider_closing().await;
}

#[tokio::test]
async fn the_command_beyond_the_burst_is_rate_limited_echoing_its_id() {
    let mut room = Room::open_with(|config| {
        config.session.rate_limit_per_sec = 1;
        config.session.rate_limit_burst = 3;
    })
    .await;
    // Written back to back, so all four arrive well within the one second
    // the bucket needs to refill a token.
    for id in ["r-1", "r-2", "r-3"] {
        room.provider
            .send_json(json!({"type": "ping", "id": id}))
            .await;
    }
    let mut limited = room.send_frame("m-limited", "refused");
    limited["id"] = json!("r-4");
    room.provider.send_json(limited).await;

    for id in ["r-1", "r-2", "r-3"] {
        let answer = room.provider.recv_answer().await;
        assert_eq!(answer["type"], "ok", "{answer}");
        assert_eq!(answer["id"], id);
    }
    let answer = room.provider.recv_answer().await;
    assert_error(&answer, "rate_limited", Some("r-4"));

    // One token per second is the configured rate: this wait is the
    // contract under test, not a guess at timing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn commands_while_rate_limited_close_the_connection_with_4004_after_the_strikes() {
    let mut room = Room::open_with(|config| {
        config.session.rate_limit_per_sec = 1;
        config.session.rate_limit_burst = 3;
        config.session.rate_limit_strikes = 2;
    })
    .await;
    // Joined, so that its departure is announced to the room.
    let join = json!({"type": "join", "consultation_id": room.consultation, "id": "r-1"});
    room.provider.send_json(join).await;
    for id in ["r-2", "r-3"] {
        room.provider
            .send_json(json!({"type": "ping", "id": id}))
            .await;
    }
    for id in ["r-4", "r-5", "r-6"] {
        let mut frame = room.send_frame(id, "flood");
        frame["id"] = json!(id);
        room.provider.send_json(frame).await;
    }

    for id in ["r-1", "r-2", "r-3"] {
        let answer = room.provider.recv_answer().await;
        assert_eq!(answer["type"], "ok", "{answer}");
        assert_eq!(answer["id"], id);
    }
    for id in ["r-4", "r-5"] {
        let answer = room.provider.recv_answer().await;
        assert_error(&answer, "rate_limited", Some(id));
    }
    // The third refusal in a row is past the two strikes: no answer, a close.
    assert_eq!(room.provider.recv_close().await, Some(4004));
    room.assert_store_holds_exactly_what_was_accepted().await;
    room.assert_room_survives_the_provider_closing().await;
}

#[tokio::test]
async fn an_empty_or_spaced_client_msg_id_is_invalid_value() {
    let mut room = Room::open().await;
    for (client_msg_id, id) in [("", "v-1"), ("has spaces", "v-2")] {
        let frame = room.send_frame(client_msg_id, "not stored");
        let answer = room.provider.command(frame, id).await;
        assert_error(&answer, "invalid_value", Some(id));
    }
    room.assert_provider_still_sends().await;
}

#[tokio::test]
async fn a_history_limit_of_0_or_500_is_invalid_value() {
    let mut room = Room::open().await;
    for (limit, id) in [(0, "h-0"), (500, "h-500")] {
        let history = json!({
            "type": "history",
            "consultation_id": room.consultation,
            "limit": limit,
        });
        let answer = room.provider.command(history, id).await;
        assert_error(&answer, "invalid_value", Some(id));
    }
    let history = json!({"type": "history", "consultation_id": room.consultation, "limit": 200});
    let answer = room.provider.command(history, "h-200").await;
    assert_eq!(
        answer["type"], "ok",
        "the largest limit is accepted: {answer}"
    );
    assert_eq!(answer["result"]["messages"][0]["body"], "before");
    room.assert_provider_still_sends().await;
}
