//! The group-commit writer as the hub runs it (the SQLite writer thread on a
//! SQLite file, the pool task on PostgreSQL): each stored message reaches
//! `on_commit` in commit order before its sender hears back, stopping
//! writes what was queued and refuses what comes later, and on PostgreSQL
//! connections the server dropped are replaced before the next message.

use crate::harness::{TestHub, metric};
use consult_hub::store::StoreError;
use consult_hub::store::appender::{self, Appender, Backend, OnCommit, WriterHandle};
use consult_hub::store::messages::{AppendOutcome, NewMessage};
use consult_protocol::{ConsultationId, MessageKind, Role, UserId};
use sea_orm::{ConnectionTrait, TransactionTrait};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn message(consultation: &ConsultationId, index: usize) -> NewMessage {
    NewMessage {
        consultation_id: consultation.clone(),
        sender: UserId::from("dr-a"),
        sender_role: Role::Provider,
        kind: MessageKind::Chat,
        body: format!("message {index}"),
        client_msg_id: Some(format!("m-{index}")),
        notifications: Vec::new(),
        audit: None,
    }
}

fn stored_seq(outcome: &AppendOutcome) -> u64 {
    match outcome {
        AppendOutcome::Stored(stored) => stored.message.seq.get(),
        other => panic!("expected stored, got {other:?}"),
    }
}

/// A hub (kept for its store's files), one of its consultations, and a
/// second writer on that store with batches of at most `batch_max`, whose
/// `on_commit` records the `seq`s it is given.
struct Fixture {
    hub: TestHub,
    room: ConsultationId,
    appender: Appender,
    writer: WriterHandle,
    seen: Arc<Mutex<Vec<u64>>>,
}

async fn writer_with_batches_of(batch_max: usize) -> Fixture {
    writer_with(appender::Batching::up_to(batch_max)).await
}

async fn writer_with(batching: appender::Batching) -> Fixture {
    let hub = TestHub::start().await;
    let room = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await
        .id;
    let backend = Backend::for_store(
        &hub.state.store,
        &hub.state.config.database,
        &hub.state.workers,
    )
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let on_commit: OnCommit = Box::new(move |stored| {
        sink.lock().unwrap().push(stored.message.seq.get());
    });
    let started = appender::start(backend, batching, on_commit, &hub.state.workers).unwrap();
    Fixture {
        hub,
        room,
        appender: started.appender,
        writer: started.handle,
        seen,
    }
}

/// A writer whose batches' first messages wait 300 ms for others.
async fn lingering_writer() -> Fixture {
    writer_with(appender::Batching {
        max: 64,
        linger: Duration::from_millis(300),
    })
    .await
}

/// Batches the hub's writers have written so far.
async fn batches_written(hub: &TestHub) -> f64 {
    metric(&hub.metrics_text().await, "consult_append_batch_size_count")
}

#[tokio::test]
async fn each_stored_message_is_published_before_its_sender_hears_back() {
    let f = writer_with_batches_of(64).await;

    for index in 0..20 {
        let seq = stored_seq(&f.appender.append(message(&f.room, index)).await.unwrap());
        assert_eq!(f.seen.lock().unwrap().last(), Some(&seq), "message {index}");
    }
    // A retry is answered from the store and is not published again.
    let again = f.appender.append(message(&f.room, 3)).await.unwrap();
    assert!(matches!(again, AppendOutcome::Duplicate(_)), "{again:?}");
    assert_eq!(*f.seen.lock().unwrap(), (1..=20).collect::<Vec<u64>>());
    f.writer.stop().await;
}

#[tokio::test]
async fn stopping_writes_what_was_queued_and_refuses_what_comes_later() {
    // Batches of four, so the stop is read while messages are still queued.
    let f = writer_with_batches_of(4).await;

    let mut pending = Vec::new();
    for index in 0..30 {
        let mut append = Box::pin(f.appender.append(message(&f.room, index)));
        // One poll queues the message (the queue has room) and leaves the
        // future waiting for its outcome.
        assert!(futures_util::poll!(append.as_mut()).is_pending());
        pending.push(append);
    }
    f.writer.stop().await;

    let mut seqs = Vec::new();
    for append in pending {
        seqs.push(stored_seq(&append.await.unwrap()));
    }
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>(), "queued order kept");
    assert_eq!(*f.seen.lock().unwrap(), seqs, "every one published");
    let late = f.appender.append(message(&f.room, 99)).await;
    assert!(matches!(late, Err(StoreError::WriterStopped)), "{late:?}");
}

#[tokio::test]
async fn with_a_linger_the_messages_queued_meanwhile_are_written_in_one_batch() {
    let f = lingering_writer().await;
    let before = batches_written(&f.hub).await;

    // Five messages queued 10 ms apart, well within the first one's linger.
    let mut pending = Vec::new();
    for index in 0..5 {
        let mut append = Box::pin(f.appender.append(message(&f.room, index)));
        assert!(futures_util::poll!(append.as_mut()).is_pending());
        pending.push(append);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seqs = Vec::new();
    for append in pending {
        seqs.push(stored_seq(&append.await.unwrap()));
    }
    assert_eq!(seqs, (1..=5).collect::<Vec<u64>>());
    assert_eq!(*f.seen.lock().unwrap(), seqs, "every one published");
    let written = batches_written(&f.hub).await - before;
    assert!(
        (written - 1.0).abs() < f64::EPSILON,
        "{written} batches for five messages"
    );
    f.writer.stop().await;
}

#[tokio::test]
async fn after_a_commit_what_the_linger_gathers_is_one_batch_stop_included() {
    let f = lingering_writer().await;
    // A first message committed on its own: the writer's queue is empty
    // right after a commit, the state in which it sleeps the linger first.
    let first = stored_seq(&f.appender.append(message(&f.room, 0)).await.unwrap());
    let before = batches_written(&f.hub).await;

    let mut pending = Vec::new();
    for index in 1..=5 {
        let mut append = Box::pin(f.appender.append(message(&f.room, index)));
        assert!(futures_util::poll!(append.as_mut()).is_pending());
        pending.push(append);
    }
    f.writer.stop().await;

    let mut seqs = vec![first];
    for append in pending {
        seqs.push(stored_seq(&append.await.unwrap()));
    }
    assert_eq!(seqs, (1..=6).collect::<Vec<u64>>(), "queued order kept");
    assert_eq!(*f.seen.lock().unwrap(), seqs, "every one published");
    let written = batches_written(&f.hub).await - before;
    assert!(
        (written - 1.0).abs() < f64::EPSILON,
        "{written} batches for the five messages queued after the commit"
    );
    let late = f.appender.append(message(&f.room, 99)).await;
    assert!(matches!(late, Err(StoreError::WriterStopped)), "{late:?}");
}

/// Closes every other connection to the hub's PostgreSQL database, as a
/// restart of the server would.
async fn drop_every_connection(url: &str) -> u64 {
    use sea_orm::Statement;
    let admin = sea_orm::Database::connect(url).await.unwrap();
    let row = admin
        .query_one(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap();
    let dropped: i64 = row.try_get("", "n").unwrap();
    admin.close().await.unwrap();
    u64::try_from(dropped).unwrap()
}

#[tokio::test]
async fn after_postgresql_drops_the_pools_connections_the_next_message_is_stored_on_new_ones() {
    let hub = TestHub::start().await;
    if !hub.database_url().starts_with("postgres") {
        return;
    }
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let path = format!("/v1/consultations/{}/messages", consultation.id);
    let send =
        |key: &str| serde_json::json!({"client_msg_id": key, "body": "hello", "sender_id": "dr-a"});
    let (status, answer) = hub.api_post(&path, send("m-1")).await;
    assert_eq!(status, 201, "{answer}");
    assert!(drop_every_connection(hub.database_url()).await >= 1);
    // Idle past the threshold: each pooled connection is pinged before it
    // is handed out, found dead, and replaced; no query fails.
    tokio::time::sleep(
        consult_hub::store::pg_pool::PING_WHEN_IDLE_FOR + Duration::from_millis(300),
    )
    .await;
    let (status, answer) = hub.api_post(&path, send("m-2")).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["seq"], 2, "{answer}");
    let (status, history) = hub
        .api_get(&format!("/v1/consultations/{}/messages", consultation.id))
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        2,
        "{history}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn the_writer_commits_while_every_pooled_connection_is_taken() {
    // A pool of one, held by an open transaction: a burst of look-ups
    // taking every pooled connection must not hold the writer's commits.
    let hub = TestHub::start_with(|config| config.database.max_connections = 1).await;
    let room = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await
        .id;
    let held = hub.state.store.connection().begin().await.unwrap();
    held.execute_unprepared("SELECT 1").await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        hub.state.appender.append(message(&room, 1)),
    )
    .await
    .expect("the writer waited for the pool")
    .unwrap();
    assert_eq!(stored_seq(&outcome), 1);
    held.rollback().await.unwrap();
    hub.shutdown().await;
}
