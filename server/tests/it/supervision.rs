//! Background workers under supervision: each one made to fail (the
//! supervisor's test hook) turns `/readyz` 503 naming it, is restarted once
//! the failure stops, counts the restart, and loses nothing that was queued
//! for it meanwhile.

use crate::harness::cluster::{Cluster, wait_until};
use crate::harness::providers::FakeProviders;
use crate::harness::{TestHub, metric};
use consult_client::Client;
use consult_client::ClientError;
use consult_hub::supervisor::Worker;
use consult_protocol::{
    AlertChannel, ConsultationId, DevicePlatform, ErrorCode, ReceiptKind, Role, Seq, ServerFrame,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Long enough for a few doubling back-offs.
const RECOVERY: Duration = Duration::from_secs(5);

/// `/readyz`'s status code and the state it gives `worker`.
async fn readiness_of(hub: &TestHub, worker: Worker) -> (u16, String) {
    let (status, body) = hub.api_get("/readyz").await;
    let state = body["workers"][worker.name()]
        .as_str()
        .unwrap_or("absent")
        .to_owned();
    (status, state)
}

/// Makes `worker` fail, waits until `/readyz` reports it restarting with a
/// 503, and checks that its up gauge reads 0.
async fn fail_and_see_it_reported(hub: &TestHub, worker: Worker) {
    assert_eq!(readiness_of(hub, worker).await, (200, "running".to_owned()));
    hub.state.workers.fail(worker);
    wait_until(RECOVERY, "readyz names the failed worker", || async {
        readiness_of(hub, worker).await == (503, "restarting".to_owned())
    })
    .await;
    let (_, body) = hub.api_get("/readyz").await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(
        worker_metric(hub, "consult_worker_up", worker).await,
        0.0,
        "{}",
        worker.name()
    );
}

/// Heals `worker` and waits until it runs again and `/readyz` is 200.
async fn heal_and_see_it_back(hub: &TestHub, worker: Worker) {
    hub.state.workers.heal(worker);
    wait_until(RECOVERY, "the worker runs again", || async {
        readiness_of(hub, worker).await == (200, "running".to_owned())
    })
    .await;
    assert_eq!(worker_metric(hub, "consult_worker_up", worker).await, 1.0);
    assert!(worker_metric(hub, "consult_worker_restarts_total", worker).await >= 1.0);
}

async fn worker_metric(hub: &TestHub, name: &str, worker: Worker) -> f64 {
    let series = format!("{name}{{worker=\"{}\"}}", worker.name());
    metric(&hub.metrics_text().await, &series)
}

#[tokio::test]
async fn a_fresh_hub_reports_each_of_its_workers_running() {
    let hub = TestHub::start().await;
    let (status, body) = hub.api_get("/readyz").await;
    assert_eq!(status, 200);
    let workers = body["workers"].as_object().expect("a workers object");
    let mut names: Vec<&str> = workers.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = vec![
        "dashboards",
        "outbox",
        "receipts",
        "retention",
        "revocations",
        "writer",
    ];
    if hub.database_url().starts_with("sqlite") {
        expected.push("checkpoint");
    } else {
        expected.push("partitions");
    }
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(
        workers
            .values()
            .all(|state| state == &Value::from("running"))
    );
}

#[tokio::test]
async fn a_failed_writer_is_restarted_and_a_send_caught_in_the_failure_is_stored_once() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = Arc::new(hub.connect("dr-a", Role::Provider).await);
    provider.join(&consultation.id, None).await.unwrap();
    let (seq, _) = provider
        .send(&consultation.id, "m-1", "before")
        .await
        .unwrap();
    assert_eq!(seq.get(), 1);

    hub.state.workers.fail(Worker::Writer);
    // The SQLite writer thread fails with the batch it takes; the pool
    // writer task fails at once and the send waits in its queue.
    let during = {
        let (provider, id) = (provider.clone(), consultation.id.clone());
        tokio::spawn(async move { provider.send(&id, "m-2", "during").await })
    };
    wait_until(RECOVERY, "readyz names the writer", || async {
        readiness_of(&hub, Worker::Writer).await == (503, "restarting".to_owned())
    })
    .await;
    heal_and_see_it_back(&hub, Worker::Writer).await;
    let seq = match during.await.unwrap() {
        Ok((seq, _)) => seq,
        Err(ClientError::Command { code, .. }) => {
            assert_eq!(code, ErrorCode::Unavailable);
            // The client sends again, as it would after `unavailable`.
            provider
                .send(&consultation.id, "m-2", "during")
                .await
                .unwrap()
                .0
        }
        Err(other) => panic!("expected a stored message or unavailable, got {other:?}"),
    };
    assert_eq!(seq.get(), 2, "stored once, right after the first");
    let (status, history) = hub
        .api_get(&format!("/v1/consultations/{}/messages", consultation.id))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["client_msg_id"].as_str())
        .collect();
    assert_eq!(ids, ["m-1", "m-2"]);
}

#[tokio::test]
async fn a_failed_checkpoint_thread_is_reported_and_restarted() {
    let hub = TestHub::start().await;
    if !hub.database_url().starts_with("sqlite") {
        return; // Only a SQLite file has a checkpoint thread.
    }
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    hub.state.workers.fail(Worker::Checkpoint);
    // A commit wakes the sleeping thread, which then fails.
    provider
        .send(&consultation.id, "m-1", "wake the checkpoints")
        .await
        .unwrap();
    wait_until(RECOVERY, "readyz names the checkpoint thread", || async {
        readiness_of(&hub, Worker::Checkpoint).await == (503, "restarting".to_owned())
    })
    .await;
    heal_and_see_it_back(&hub, Worker::Checkpoint).await;
    provider
        .send(&consultation.id, "m-2", "after")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_alert_queued_while_the_outbox_worker_is_down_is_sent_once_it_is_back() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;

    fail_and_see_it_reported(&hub, Worker::Outbox).await;
    provider
        .alert(
            &consultation.id,
            "Please open the app now, your visit is about to start.",
            &[AlertChannel::Push],
            "alert-1",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.pushes().is_empty(),
        "nothing sent while the worker is down"
    );
    heal_and_see_it_back(&hub, Worker::Outbox).await;
    let pushes = fake.wait_for_pushes(1).await;
    assert_eq!(pushes.len(), 1);
}

/// A consultation where dr-a sent three messages, and pat-a's connection,
/// joined to it.
async fn patient_in_a_room_of_three_messages(hub: &TestHub) -> (ConsultationId, Arc<Client>) {
    let id = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await
        .id;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&id, None).await.unwrap();
    for i in 1..=3 {
        provider
            .send(&id, format!("m-{i}"), format!("message {i}"))
            .await
            .unwrap();
    }
    let patient = Arc::new(hub.connect("pat-a", Role::Patient).await);
    patient.join(&id, None).await.unwrap();
    (id, patient)
}

/// pat-a's stored (delivered, read) positions in `id`.
async fn patient_positions(hub: &TestHub, id: &ConsultationId) -> (u64, u64) {
    let stored = consult_hub::store::receipts::find(
        hub.state.store.connection(),
        id,
        &consult_protocol::UserId::from("pat-a"),
    )
    .await
    .unwrap();
    (stored.delivered, stored.read)
}

#[tokio::test]
async fn a_failed_receipt_batcher_fails_the_receipts_in_hand_and_writes_those_queued_meanwhile() {
    let hub = TestHub::start().await;
    let (id, patient) = patient_in_a_room_of_three_messages(&hub).await;

    // A receipt the batcher holds when it fails is answered `unavailable`
    // (or, had its flush already committed, `ok`): never left waiting.
    let in_hand = {
        let (patient, id) = (patient.clone(), id.clone());
        tokio::spawn(async move { patient.ack(&id, Seq(1), ReceiptKind::Delivered).await })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    fail_and_see_it_reported(&hub, Worker::Receipts).await;
    match tokio::time::timeout(RECOVERY, in_hand).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(ClientError::Command { code, .. }))) => {
            assert_eq!(code, ErrorCode::Unavailable);
        }
        other => panic!("expected ok or unavailable, got {other:?}"),
    }

    // Receipts sent while it is down wait in its queue.
    let queued = {
        let (patient, id) = (patient.clone(), id.clone());
        tokio::spawn(async move { patient.ack(&id, Seq(3), ReceiptKind::Read).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!queued.is_finished(), "nothing is written while it is down");
    heal_and_see_it_back(&hub, Worker::Receipts).await;
    tokio::time::timeout(RECOVERY, queued)
        .await
        .expect("written once it is back")
        .unwrap()
        .unwrap();
    assert_eq!(patient_positions(&hub, &id).await, (3, 3));
}

#[tokio::test]
async fn a_receipt_flush_in_the_hands_of_a_failed_writer_is_answered_and_later_receipts_are_written()
 {
    let hub = TestHub::start().await;
    let (id, patient) = patient_in_a_room_of_three_messages(&hub).await;
    let sqlite = hub.database_url().starts_with("sqlite");

    // On a SQLite file the message writer writes receipt flushes: failing,
    // it takes the flush with it and the ack hears `unavailable`. Elsewhere
    // receipts do not go through it and the ack is answered `ok`.
    hub.state.workers.fail(Worker::Writer);
    let in_hand = {
        let (patient, id) = (patient.clone(), id.clone());
        tokio::spawn(async move { patient.ack(&id, Seq(1), ReceiptKind::Delivered).await })
    };
    if sqlite {
        wait_until(RECOVERY, "readyz names the writer", || async {
            readiness_of(&hub, Worker::Writer).await == (503, "restarting".to_owned())
        })
        .await;
    }
    match tokio::time::timeout(RECOVERY, in_hand).await {
        Ok(Ok(Ok(()))) => assert!(!sqlite, "the flush failed with the writer"),
        Ok(Ok(Err(ClientError::Command { code, message, .. }))) => {
            assert!(sqlite, "{code:?} {message}");
            assert_eq!(code, ErrorCode::Unavailable, "{message}");
        }
        other => panic!("expected ok or unavailable, got {other:?}"),
    }
    heal_and_see_it_back(&hub, Worker::Writer).await;

    // Acknowledging again, and further, is written once the writer is back.
    patient
        .ack(&id, Seq(3), ReceiptKind::Read)
        .await
        .expect("written once the writer is back");
    assert_eq!(patient_positions(&hub, &id).await, (3, 3));
}

#[tokio::test]
async fn a_failed_dashboard_refresher_is_reported_and_restarted() {
    let hub = TestHub::start().await;
    fail_and_see_it_reported(&hub, Worker::Dashboards).await;
    heal_and_see_it_back(&hub, Worker::Dashboards).await;
}

#[tokio::test]
async fn a_restarted_broker_subscriber_catches_up_what_the_other_node_sent_meanwhile() {
    let (_cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    provider.join(&id, None).await.unwrap();
    patient.join(&id, None).await.unwrap();
    provider.send(&id, "m-1", "one").await.unwrap();

    fail_and_see_it_reported(&hub_b, Worker::BrokerSubscriber).await;
    for i in 2..=5 {
        provider
            .send(&id, format!("m-{i}"), format!("message {i}"))
            .await
            .unwrap();
    }
    heal_and_see_it_back(&hub_b, Worker::BrokerSubscriber).await;

    let mut seqs = Vec::new();
    while seqs.last() != Some(&5) {
        let event = tokio::time::timeout(RECOVERY, patient.next_event())
            .await
            .expect("message 5 reaches the patient")
            .expect("the patient stays connected");
        if let ServerFrame::Message { message } = event {
            seqs.push(message.seq.get());
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5], "in order, none lost, none twice");
}

#[tokio::test]
async fn failed_broker_publisher_and_presence_workers_are_reported_and_restarted() {
    let (_cluster, [hub]) = Cluster::start().await;
    for worker in [Worker::BrokerPublisher, Worker::Presence] {
        fail_and_see_it_reported(&hub, worker).await;
        heal_and_see_it_back(&hub, worker).await;
    }
}

#[tokio::test]
async fn a_restarted_revocation_listener_still_closes_sessions_another_node_disconnects() {
    let (_cluster, [hub_a, hub_b]) = Cluster::start().await;
    hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    fail_and_see_it_reported(&hub_b, Worker::Revocations).await;
    heal_and_see_it_back(&hub_b, Worker::Revocations).await;

    // Node A applies it locally and tells the others on the control topic,
    // which only node B's listener reads.
    let (status, answer) = hub_a
        .api_post(
            "/v1/disconnections",
            serde_json::json!({"clinic": crate::harness::CLINIC, "user": "pat-a"}),
        )
        .await;
    assert!(status < 300, "{status}: {answer}");
    let closed = tokio::time::timeout(RECOVERY, async {
        while patient.next_event().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the patient's session on node B is closed");
}
