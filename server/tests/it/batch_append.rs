//! The batched append: the statements-per-batch writer (pool) and the
//! store's own writer (the SQLite writer thread on a SQLite file) give
//! exactly the outcomes one-by-one appends would, in batch order.

use crate::harness::{TestHub, new_chat_message as message};
use consult_hub::store::appender::Backend;
use consult_hub::store::audit::MessageAudit;
use consult_hub::store::batch_append::append_batch;
use consult_hub::store::consultations::dashboard_entry_of;
use consult_hub::store::messages::{AppendOutcome, NewMessage};
use consult_hub::store::pg_batch_append::{self, RetryChecks};
use consult_protocol::{ConsultationId, ReceiptKind, Role};
use sea_orm::ConnectionTrait;

fn stored_seq(outcome: &AppendOutcome) -> u64 {
    match outcome {
        AppendOutcome::Stored(stored) => stored.message.seq.get(),
        other => panic!("expected stored, got {other:?}"),
    }
}

/// A consultation of `dr-a` with `patient`, waiting for the patient.
async fn waiting(hub: &TestHub, patient: &str) -> ConsultationId {
    hub.consultation("dr-a", patient, "waiting_for_patient")
        .await
        .id
}

/// A consultation's dashboard revision, as the REST API reports it.
async fn rev(hub: &TestHub, id: &ConsultationId) -> u64 {
    let (status, view) = hub.api_get(&format!("/v1/consultations/{id}")).await;
    assert_eq!(status, 200, "{view}");
    view["rev"].as_u64().unwrap()
}

/// The store's own writer for `hub`'s database, as a second node would
/// open it (the SQLite writer on a file, the pool otherwise).
async fn store_writer(hub: &TestHub) -> Backend {
    Backend::for_store(
        &hub.state.store,
        &hub.state.config.database,
        &hub.state.workers,
    )
    .await
    .unwrap()
}

#[derive(Clone, Copy)]
enum Writer {
    Pool,
    Store,
}

async fn append(hub: &TestHub, writer: Writer, batch: &[NewMessage]) -> Vec<AppendOutcome> {
    match writer {
        Writer::Pool => {
            let refs: Vec<&NewMessage> = batch.iter().collect();
            append_batch(hub.state.store.connection(), &refs)
                .await
                .unwrap()
        }
        Writer::Store => store_writer(hub)
            .await
            .append(batch)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect(),
    }
}

#[tokio::test]
async fn a_mixed_batch_gets_the_outcomes_of_one_by_one_appends() {
    mixed_batch(Writer::Pool).await;
}

#[tokio::test]
async fn the_store_writer_gives_a_mixed_batch_the_same_outcomes() {
    mixed_batch(Writer::Store).await;
}

async fn mixed_batch(writer: Writer) {
    let hub = TestHub::start().await;
    let a = waiting(&hub, "pat-a").await;
    let b = waiting(&hub, "pat-b").await;
    let closed = waiting(&hub, "pat-c").await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider
        .send(&closed, "before-close", "stored before the close")
        .await
        .unwrap();
    let (code, _) = hub
        .api_post(
            &format!("/v1/consultations/{closed}/cancel"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(code, 200);
    provider.send(&a, "earlier", "stored before").await.unwrap();

    let batch = [
        message(&a, "dr-a", Role::Provider, Some("m1"), "one"),
        message(&b, "pat-b", Role::Patient, Some("m1"), "for b"),
        message(&a, "dr-a", Role::Provider, Some("earlier"), "stored before"),
        message(
            &a,
            "dr-a",
            Role::Provider,
            Some("earlier"),
            "different text",
        ),
        message(&a, "pat-a", Role::Patient, None, "two"),
        message(&a, "dr-a", Role::Provider, Some("m1"), "one"),
        message(&a, "dr-a", Role::Provider, Some("m1"), "changed"),
        message(&closed, "dr-a", Role::Provider, Some("x"), "too late"),
        message(&"nowhere".into(), "dr-a", Role::Provider, Some("y"), "lost"),
        message(&b, "pat-b", Role::Patient, Some("m2"), "again b"),
        message(
            &closed,
            "dr-a",
            Role::Provider,
            Some("before-close"),
            "stored before the close",
        ),
        message(
            &closed,
            "dr-a",
            Role::Provider,
            Some("before-close"),
            "other",
        ),
    ];
    let outcomes = append(&hub, writer, &batch).await;

    assert_eq!(
        stored_seq(&outcomes[0]),
        2,
        "after the earlier send's seq 1"
    );
    assert_eq!(stored_seq(&outcomes[1]), 1);
    assert!(matches!(&outcomes[2], AppendOutcome::Duplicate(m) if m.seq.get() == 1));
    assert_eq!(outcomes[3], AppendOutcome::ConflictingDuplicate);
    assert_eq!(stored_seq(&outcomes[4]), 3);
    assert!(matches!(&outcomes[5], AppendOutcome::Duplicate(m) if m.seq.get() == 2));
    assert_eq!(outcomes[6], AppendOutcome::ConflictingDuplicate);
    assert_eq!(outcomes[7], AppendOutcome::Closed);
    assert_eq!(outcomes[8], AppendOutcome::NotFound);
    assert_eq!(stored_seq(&outcomes[9]), 2);
    assert!(
        matches!(&outcomes[10], AppendOutcome::Duplicate(m) if m.seq.get() == 1),
        "a retry of a message stored before the close still gets its answer"
    );
    assert_eq!(outcomes[11], AppendOutcome::ConflictingDuplicate);

    let (messages, _) = provider.history(&a, None, None).await.unwrap();
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq.get()).collect();
    assert_eq!(seqs, [1, 2, 3], "no gap, nothing twice");
    let (_, view) = hub.api_get(&format!("/v1/consultations/{b}")).await;
    assert_eq!(view["last_seq"], 2);
}

#[tokio::test]
async fn a_staff_message_in_a_batch_marks_staff_messaged_first() {
    staff_first(Writer::Pool).await;
}

#[tokio::test]
async fn the_store_writer_marks_staff_messaged_first() {
    staff_first(Writer::Store).await;
}

async fn staff_first(writer: Writer) {
    let hub = TestHub::start().await;
    let a = waiting(&hub, "pat-a").await;
    let batch = [
        message(&a, "dr-a", Role::Provider, Some("m1"), "hello"),
        message(&a, "dr-a", Role::Provider, Some("m2"), "are you there?"),
    ];
    append(&hub, writer, &batch).await;
    let (_, view) = hub.api_get(&format!("/v1/consultations/{a}")).await;
    assert_eq!(view["staff_messaged_first"], true);
    assert_eq!(view["last_seq"], 2);
}

/// Two nodes' writers appending to the same rooms at once (on PostgreSQL,
/// the one-statement batches, serialized by the consultation's row lock; on
/// a SQLite file, two writer connections): every message gets its own
/// sequence number, with no gap, and a patient's messages move `rev`.
#[tokio::test]
async fn two_writers_appending_to_the_same_rooms_never_collide() {
    let hub = TestHub::start().await;
    let a = waiting(&hub, "pat-a").await;
    let b = waiting(&hub, "pat-b").await;
    let rev_before = rev(&hub, &a).await;
    let batches = |node: &str| -> Vec<Vec<NewMessage>> {
        (0..20)
            .map(|round| {
                (0..5)
                    .map(|i| {
                        let id = format!("{node}-{round}-{i}");
                        let (room, sender, role) = match i % 3 {
                            0 => (&a, "dr-a", Role::Provider),
                            1 => (&a, "pat-a", Role::Patient),
                            _ => (&b, "pat-b", Role::Patient),
                        };
                        message(room, sender, role, Some(&id), &id)
                    })
                    .collect()
            })
            .collect()
    };
    let mut writers = Vec::new();
    for node in ["n1", "n2"] {
        let mut backend = store_writer(&hub).await;
        let batches = batches(node);
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for batch in batches {
                for outcome in backend.append(&batch).await {
                    seqs.push(stored_seq(&outcome.unwrap()));
                }
            }
            seqs
        }));
    }
    let mut stored = 0;
    for writer in writers {
        stored += writer.await.unwrap().len();
    }
    assert_eq!(stored, 200);
    let provider = hub.connect("dr-a", Role::Provider).await;
    for (room, expected) in [(&a, 160_u64), (&b, 40)] {
        let mut seqs = Vec::new();
        let mut before = None;
        loop {
            let (page, more) = provider.history(room, before, Some(200)).await.unwrap();
            before = page.first().map(|m| m.seq);
            seqs.extend(page.iter().map(|m| m.seq.get()));
            if !more {
                break;
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=expected).collect::<Vec<_>>(), "room {room}");
    }
    assert_eq!(rev(&hub, &a).await, rev_before + 80);
}

/// A retry reaching another node's writer finds the first attempt, whichever
/// writer stored it and whenever that writer first met the room (on a
/// SQLite file each writer remembers the keys it has seen and reads the
/// ones another wrote since; on PostgreSQL the unique index answers).
#[tokio::test]
async fn a_retry_through_another_writer_finds_the_first_attempt() {
    let hub = TestHub::start().await;
    let a = waiting(&hub, "pat-a").await;
    let mut first = store_writer(&hub).await;
    let mut second = store_writer(&hub).await;
    let send = |key: &str, body: &str| [message(&a, "dr-a", Role::Provider, Some(key), body)];
    let outcome = async |writer: &mut Backend, key: &str, body: &str| {
        let mut outcomes = writer.append(&send(key, body)).await;
        assert_eq!(outcomes.len(), 1);
        outcomes.remove(0).unwrap()
    };
    assert_eq!(stored_seq(&outcome(&mut first, "k1", "one").await), 1);
    assert_eq!(stored_seq(&outcome(&mut second, "k2", "two").await), 2);
    assert!(matches!(
        outcome(&mut first, "k2", "two").await,
        AppendOutcome::Duplicate(m) if m.seq.get() == 2
    ));
    assert!(matches!(
        outcome(&mut second, "k1", "one").await,
        AppendOutcome::Duplicate(m) if m.seq.get() == 1
    ));
    assert_eq!(stored_seq(&outcome(&mut first, "k3", "three").await), 3);
    assert_eq!(
        outcome(&mut second, "k3", "not three").await,
        AppendOutcome::ConflictingDuplicate
    );
    // The same key from another sender is another message.
    let patient = [message(&a, "pat-a", Role::Patient, Some("k3"), "mine")];
    let mut outcomes = second.append(&patient).await;
    assert_eq!(stored_seq(&outcomes.remove(0).unwrap()), 4);
    // A writer started after all of it knows every key.
    let mut third = store_writer(&hub).await;
    for (key, body, seq) in [("k1", "one", 1), ("k2", "two", 2), ("k3", "three", 3)] {
        assert!(matches!(
            outcome(&mut third, key, body).await,
            AppendOutcome::Duplicate(m) if m.seq.get() == seq
        ));
    }
    let provider = hub.connect("dr-a", Role::Provider).await;
    let (messages, _) = provider.history(&a, None, None).await.unwrap();
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq.get()).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "each message stored once");
    // A key whose message is gone (removed behind the writers' backs) is
    // free again, as it was with the index: stored as the next message.
    hub.state
        .store
        .connection()
        .execute_unprepared(&format!(
            "DELETE FROM messages WHERE consultation_id = '{a}' AND seq = 2"
        ))
        .await
        .unwrap();
    assert_eq!(stored_seq(&outcome(&mut first, "k2", "two again").await), 5);
}

/// On PostgreSQL the writer inserts a batch without looking earlier sends
/// up; a retry in it makes the unique index refuse the whole statement,
/// which leaves nothing behind, and the batch goes again with the look-up:
/// the retry is answered with its first attempt, the others are stored with
/// no gap in the sequence, and the writer keeps looking up first for a
/// while.
#[tokio::test]
async fn a_retry_in_an_unchecked_batch_is_found_and_leaves_no_gap() {
    let hub = TestHub::start().await;
    if !hub.database_url().starts_with("postgres") {
        return;
    }
    let a = waiting(&hub, "pat-a").await;
    let b = waiting(&hub, "pat-b").await;
    let db = hub.state.store.connection();
    let mut checks = RetryChecks::default();
    let send = async |checks: &mut RetryChecks, batch: &[NewMessage]| {
        let refs: Vec<&NewMessage> = batch.iter().collect();
        pg_batch_append::append(db, &refs, checks).await.unwrap()
    };
    let first = send(
        &mut checks,
        &[message(&a, "dr-a", Role::Provider, Some("k1"), "one")],
    )
    .await;
    assert_eq!(stored_seq(&first[0]), 1);
    assert!(!checks.due(), "no retry met yet");
    let outcomes = send(
        &mut checks,
        &[
            message(&a, "dr-a", Role::Provider, Some("k2"), "two"),
            message(&b, "dr-a", Role::Provider, Some("k1"), "b's one"),
            message(&a, "dr-a", Role::Provider, Some("k1"), "one"),
            message(&a, "dr-a", Role::Provider, Some("k3"), "three"),
        ],
    )
    .await;
    assert_eq!(stored_seq(&outcomes[0]), 2);
    assert_eq!(stored_seq(&outcomes[1]), 1, "b's own first message");
    assert!(matches!(&outcomes[2], AppendOutcome::Duplicate(m) if m.seq.get() == 1));
    assert_eq!(stored_seq(&outcomes[3]), 3);
    assert!(checks.due(), "the refusal turns the look-up on");
    let later = send(
        &mut checks,
        &[
            message(&a, "dr-a", Role::Provider, Some("k4"), "four"),
            message(&a, "dr-a", Role::Provider, Some("k3"), "not three"),
        ],
    )
    .await;
    assert_eq!(stored_seq(&later[0]), 4);
    assert_eq!(later[1], AppendOutcome::ConflictingDuplicate);
    let provider = hub.connect("dr-a", Role::Provider).await;
    for (room, expected) in [(&a, vec![1_u64, 2, 3, 4]), (&b, vec![1])] {
        let (messages, _) = provider.history(room, None, None).await.unwrap();
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq.get()).collect();
        assert_eq!(seqs, expected, "room {room}: each message stored once");
    }
}

/// On a SQLite file the writer reads a patient message's dashboard row in
/// the message's own transaction (unread count, rev, name), sparing a pool
/// round trip per message; a provider's message carries none. Other
/// writers leave the row to the dashboard refresher.
#[tokio::test]
async fn the_sqlite_writer_reads_the_dashboard_row_with_a_patients_message() {
    let hub = TestHub::start().await;
    let a = waiting(&hub, "pat-a").await;
    let rev_before = rev(&hub, &a).await;
    let batch = [
        message(&a, "pat-a", Role::Patient, Some("p1"), "hello"),
        message(&a, "dr-a", Role::Provider, Some("d1"), "hi"),
        message(&a, "pat-a", Role::Patient, Some("p2"), "are you there?"),
    ];
    let outcomes = append(&hub, Writer::Store, &batch).await;
    let rows: Vec<_> = outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Stored(stored) => stored.dashboard.clone(),
            other => panic!("expected stored, got {other:?}"),
        })
        .collect();
    if hub.database_url().starts_with("postgres") {
        assert!(rows.iter().all(Option::is_none), "the refresher reads it");
        return;
    }
    assert!(
        rows[1].is_none(),
        "a provider's message leaves the row alone"
    );
    let first = rows[0]
        .as_ref()
        .expect("a row with the first patient message");
    let second = rows[2].as_ref().expect("a row with the second");
    assert_eq!(first.clinic_id.as_str(), crate::harness::CLINIC);
    assert_eq!(first.entry.provider_id.as_str(), "dr-a");
    assert_eq!(first.entry.patient_name, "Patient pat-a");
    assert_eq!((first.entry.unread, second.entry.unread), (1, 2));
    assert_eq!(
        (first.entry.rev, second.entry.rev),
        (rev_before + 1, rev_before + 2)
    );
    assert_eq!(rev(&hub, &a).await, second.entry.rev);
    let (_, after) = hub.api_get(&format!("/v1/consultations/{a}")).await;
    assert_eq!(after["status"], "waiting_for_patient");
    assert_eq!(
        second.entry.status,
        consult_protocol::ConsultationStatus::WaitingForPatient
    );
}

/// A patient message's `unread` as the store's writer gives it, checked
/// against the pool's count of the same row.
async fn unread_after(
    hub: &TestHub,
    backend: &mut Backend,
    message: NewMessage,
) -> (u64, Option<u64>) {
    let id = message.consultation_id.clone();
    let outcome = backend
        .append(std::slice::from_ref(&message))
        .await
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let AppendOutcome::Stored(stored) = outcome else {
        panic!("expected stored, got {outcome:?}");
    };
    let (_, counted) = dashboard_entry_of(hub.state.store.connection(), &id)
        .await
        .unwrap()
        .unwrap();
    if let Some(row) = &stored.dashboard {
        assert_eq!(
            row.entry.unread,
            counted.unread,
            "seq {}",
            stored.message.seq.get()
        );
    }
    (counted.unread, stored.dashboard.map(|row| row.entry.unread))
}

/// The SQLite writer keeps each consultation's unread count as it goes
/// (one more per patient message) instead of counting the backlog again:
/// its figure stays the pool's across staff messages, a new read receipt and
/// messages written by another writer in between.
#[tokio::test]
async fn the_store_writer_counts_unread_as_the_pool_does_across_staff_messages_receipts_and_other_writers()
 {
    let hub = TestHub::start().await;
    let id = waiting(&hub, "pat-a").await;
    let mut writer = store_writer(&hub).await;
    let patient = |n: &str| message(&id, "pat-a", Role::Patient, Some(n), n);
    let mut seen = Vec::new();
    for n in ["p1", "p2"] {
        seen.push(unread_after(&hub, &mut writer, patient(n)).await);
    }
    let staff = message(&id, "dr-a", Role::Provider, Some("s1"), "s1");
    let outcome = writer.append(&[staff]).await;
    assert!(matches!(outcome[0], Ok(AppendOutcome::Stored(_))));
    seen.push(unread_after(&hub, &mut writer, patient("p3")).await);

    // The provider reads up to p2 (seq 2): p3 and what follows stay unread.
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&id, None).await.unwrap();
    provider
        .ack(&id, consult_protocol::Seq(2), ReceiptKind::Read)
        .await
        .unwrap();
    seen.push(unread_after(&hub, &mut writer, patient("p4")).await);

    // Another writer (another node on the same database) stores one.
    let other = patient("p5");
    append_batch(hub.state.store.connection(), &[&other])
        .await
        .unwrap();
    seen.push(unread_after(&hub, &mut writer, patient("p6")).await);
    seen.push(unread_after(&hub, &mut writer, patient("p7")).await);

    let pool: Vec<u64> = seen.iter().map(|(pool, _)| *pool).collect();
    assert_eq!(pool, [1, 2, 3, 2, 4, 5]);
    if let Backend::Sqlite(_) = writer {
        let kept: Vec<Option<u64>> = seen.iter().map(|(_, kept)| *kept).collect();
        assert_eq!(kept, pool.iter().copied().map(Some).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn an_audited_message_in_a_batch_is_stored_with_its_audit_entry() {
    audited_in_a_batch(Writer::Pool).await;
}

#[tokio::test]
async fn the_store_writer_stores_an_audited_message_with_its_audit_entry() {
    audited_in_a_batch(Writer::Store).await;
}

/// An alert (or any message carrying an audit entry) written in the same
/// batch as a chat message: both are stored, and the alert's entry is in
/// the audit trail with its `seq`, never without it.
async fn audited_in_a_batch(writer: Writer) {
    let hub = TestHub::start().await;
    let a = waiting(&hub, "pat-a").await;
    let mut alert = message(
        &a,
        "dr-a",
        Role::Provider,
        Some("alert-1"),
        "Please open the app",
    );
    alert.audit = Some(Box::new(MessageAudit {
        actor_id: "dr-a".to_owned(),
        actor_role: "provider".to_owned(),
        action: "alert.send".to_owned(),
        detail: serde_json::json!({"channels": ["push"]}),
    }));
    let batch = [
        message(&a, "dr-a", Role::Provider, Some("chat-1"), "hello"),
        alert,
    ];
    let outcomes = append(&hub, writer, &batch).await;
    assert_eq!(stored_seq(&outcomes[0]), 1);
    assert_eq!(stored_seq(&outcomes[1]), 2);

    let (status, page) = hub.api_get(&format!("/v1/consultations/{a}/audit")).await;
    assert_eq!(status, 200, "{page}");
    let alerts: Vec<&serde_json::Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "alert.send")
        .collect();
    assert_eq!(alerts.len(), 1, "{page}");
    assert_eq!(alerts[0]["detail"]["seq"], 2, "{page}");
    assert_eq!(alerts[0]["actor_id"], "dr-a", "{page}");
}
