//! Messages: sequence numbers, idempotent sends, history, resume with no gap
//! and no duplicate, receipts.

use crate::harness::{TestHub, expect_event};
use consult_protocol::{ErrorCode, ReceiptKind, Role, Seq, ServerFrame};

#[tokio::test]
async fn sequence_numbers_are_assigned_in_order_without_gaps() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let sender = if i % 2 == 0 { &provider } else { &patient };
        seqs.push(
            sender
                .send(&consultation.id, format!("m-{i}"), format!("message {i}"))
                .await
                .unwrap()
                .0
                .get(),
        );
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn concurrent_senders_get_unique_consecutive_sequence_numbers() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = std::sync::Arc::new(hub.connect("dr-a", Role::Provider).await);
    let patient = std::sync::Arc::new(hub.connect("pat-a", Role::Patient).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = if i % 2 == 0 {
            provider.clone()
        } else {
            patient.clone()
        };
        let id = consultation.id.clone();
        tasks.push(tokio::spawn(async move {
            client
                .send(&id, format!("c-{i}"), format!("concurrent {i}"))
                .await
                .unwrap()
                .0
                .get()
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let (first, duplicate) = provider
        .send(&consultation.id, "m-1", "hello")
        .await
        .unwrap();
    assert!(!duplicate);
    let (second, duplicate) = provider
        .send(&consultation.id, "m-1", "hello")
        .await
        .unwrap();
    assert!(duplicate);
    assert_eq!(first, second);
    let (_, page) = hub
        .api_get(&format!("/v1/consultations/{}/messages", consultation.id))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn reusing_a_client_msg_id_for_different_text_is_refused_and_loses_nothing() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider
        .send(&consultation.id, "m-1", "hello")
        .await
        .unwrap();
    let error = provider
        .send(&consultation.id, "m-1", "something else")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DuplicateClientMsgId));
    let (seq, _) = provider
        .send(&consultation.id, "m-2", "next")
        .await
        .unwrap();
    assert_eq!(seq.get(), 2, "the refused send consumed no sequence number");
    let (messages, _) = provider
        .history(&consultation.id, None, None)
        .await
        .unwrap();
    let bodies: Vec<_> = messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hello", "next"]);
}

#[tokio::test]
async fn history_pages_backwards_oldest_first() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for i in 1..=7 {
        provider
            .send(&consultation.id, format!("m-{i}"), format!("n{i}"))
            .await
            .unwrap();
    }
    let (newest, has_more) = provider
        .history(&consultation.id, None, Some(3))
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|m| m.seq.get()).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert!(has_more);
    let (older, has_more) = provider
        .history(&consultation.id, Some(Seq(5)), Some(10))
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|m| m.seq.get()).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(!has_more);
    let error = provider
        .history(&consultation.id, None, Some(0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidValue));
}

#[tokio::test]
async fn rejoining_with_since_replays_exactly_what_was_missed() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for i in 1..=3 {
        provider
            .send(&consultation.id, format!("m-{i}"), format!("before {i}"))
            .await
            .unwrap();
    }
    let patient = hub.connect("pat-a", Role::Patient).await;
    let joined = patient.join(&consultation.id, Some(Seq(1))).await.unwrap();
    assert_eq!(joined.replayed, 2);
    provider
        .send(&consultation.id, "m-4", "live 4")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let seq = expect_event(&patient, |event| match event {
            ServerFrame::Message { message } => Some(message.seq.get()),
            _ => None,
        })
        .await;
        seen.push(seq);
    }
    assert_eq!(seen, [2, 3, 4], "no gap, no duplicate");
}

#[tokio::test]
async fn messages_sent_while_disconnected_are_replayed_on_resume() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    provider.send(&consultation.id, "m-1", "one").await.unwrap();
    let last = expect_event(&patient, |event| match event {
        ServerFrame::Message { message } => Some(message.seq),
        _ => None,
    })
    .await;
    patient.close().await;
    for i in 2..=5 {
        provider
            .send(&consultation.id, format!("m-{i}"), format!("missed {i}"))
            .await
            .unwrap();
    }
    let patient = hub.connect("pat-a", Role::Patient).await;
    let joined = patient.join(&consultation.id, Some(last)).await.unwrap();
    assert_eq!(joined.replayed, 4);
    assert_eq!(joined.consultation.last_seq.get(), 5);
}

#[tokio::test]
async fn since_beyond_the_last_message_is_invalid() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let error = patient
        .join(&consultation.id, Some(Seq(99)))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidValue));
}

#[tokio::test]
async fn delivered_and_read_receipts_reach_the_provider() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(&consultation.id, None).await.unwrap();
    patient.join(&consultation.id, None).await.unwrap();
    let (seq, _) = provider
        .send(&consultation.id, "m-1", "hello")
        .await
        .unwrap();
    for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
        patient.ack(&consultation.id, seq, kind).await.unwrap();
        let receipt = expect_event(&provider, |event| match event {
            ServerFrame::Receipt {
                user, receipt, seq, ..
            } if user.as_str() == "pat-a" => Some((*receipt, *seq)),
            _ => None,
        })
        .await;
        assert_eq!(receipt, (kind, seq));
    }
    let error = patient
        .ack(&consultation.id, Seq(42), ReceiptKind::Read)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidValue));
}

#[tokio::test]
async fn blank_and_oversized_bodies_are_refused() {
    let hub = TestHub::start_with(|config| config.session.max_body_chars = 10).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for body in ["   ", "this is far too long"] {
        let error = provider
            .send(&consultation.id, "m-x", body)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::InvalidValue));
    }
    let (seq, _) = provider
        .send(&consultation.id, "m-ok", "fine")
        .await
        .unwrap();
    assert_eq!(seq.get(), 1);
}

/// The sender's `ok` and its own copy of the message leave in one write;
/// the `ok` still comes first, message after message.
#[tokio::test]
async fn a_joined_sender_gets_its_ok_before_its_own_copy_every_time() {
    use crate::harness::raw::RawSocket;
    use serde_json::json;
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let token = hub.token("dr-a", Role::Provider, crate::harness::CLINIC);
    let mut provider = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let join = json!({"type": "join", "consultation_id": consultation.id});
    assert_eq!(provider.command(join, "j").await["type"], "ok");
    for i in 1..=5_u64 {
        let id = format!("s{i}");
        provider
            .send_json(
                json!({"type": "send", "id": id, "consultation_id": consultation.id,
                "client_msg_id": format!("m{i}"), "body": format!("message {i}")}),
            )
            .await;
        let answer = next_answer_or_message(&mut provider).await;
        assert_eq!(answer["type"], "ok", "{answer}");
        assert_eq!(answer["id"], id.as_str());
        assert_eq!(answer["result"]["seq"], i);
        let copy = next_answer_or_message(&mut provider).await;
        assert_eq!(copy["type"], "message", "{copy}");
        assert_eq!(copy["message"]["seq"], i);
        assert_eq!(copy["message"]["body"], format!("message {i}").as_str());
    }
}

/// The next `ok`, `error` or `message` frame, skipping presence and the like.
async fn next_answer_or_message(socket: &mut crate::harness::raw::RawSocket) -> serde_json::Value {
    loop {
        let frame = socket.recv_json().await;
        if ["ok", "error", "message"].contains(&frame["type"].as_str().unwrap_or("")) {
            return frame;
        }
    }
}
