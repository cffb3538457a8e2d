//! Receipts through the receipt batcher: many at once from several members
//! end with exactly the highest positions stored, in fewer transactions than
//! receipts; a receipt that does not move publishes nothing; receipts racing
//! from two connections of one member reach the room in increasing order
//! only; a provider's reads bump the dashboard row once per flush; a flush
//! that fails answers each of its receipts with an error and leaves every
//! other receipt as it was (on a SQLite file, where flushes share the
//! message writer's transactions, the messages written with it are stored
//! all the same); a member's connection keeps getting the room's events
//! while its `ack` waits for the flush; on PostgreSQL, two nodes flushing
//! the same positions at once move each of them on exactly one node.

use crate::harness::{TestHub, expect_event, expect_no_event, metric, new_chat_message};
use consult_client::Client;
use consult_hub::store::messages::AppendOutcome;
use consult_hub::store::receipt_batch::{NewReceipt, ReceiptOutcome, ReceiptRow};
use consult_hub::store::receipts::{self, ReceiptState};
use consult_hub::store::{StoreError, pg_receipts};
use consult_protocol::{ConsultationId, ErrorCode, ReceiptKind, Role, Seq, ServerFrame, UserId};
use futures_util::future::join_all;
use sea_orm::{ConnectionTrait, TransactionTrait};
use std::time::Duration;

/// Long enough for a flush to have happened and its frames to arrive.
const QUIET: Duration = Duration::from_millis(300);

/// A hub whose command rate limit is out of the way of bursts of acks.
async fn hub() -> TestHub {
    TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 100_000;
        config.session.rate_limit_burst = 100_000;
    })
    .await
}

/// `user`'s stored positions in `consultation`.
async fn stored(hub: &TestHub, consultation: &ConsultationId, user: &str) -> ReceiptState {
    receipts::find(
        hub.state.store.connection(),
        consultation,
        &UserId::from(user),
    )
    .await
    .unwrap()
}

/// Asserts `user`'s stored positions in `consultation`.
async fn assert_positions(
    hub: &TestHub,
    consultation: &ConsultationId,
    user: &str,
    delivered: u64,
    read: u64,
) {
    assert_eq!(
        stored(hub, consultation, user).await,
        ReceiptState { delivered, read },
        "{user}'s positions"
    );
}

/// The consultation's stored `rev`.
async fn rev(hub: &TestHub, consultation: &ConsultationId) -> u64 {
    let (code, body) = hub
        .api_get(&format!("/v1/consultations/{consultation}"))
        .await;
    assert_eq!(code, 200, "{body}");
    body["rev"].as_u64().unwrap()
}

/// A waiting consultation of `dr-a` with `pat-a`, and `dr-a` connected and
/// joined to it.
async fn joined_provider(hub: &TestHub) -> (ConsultationId, Client) {
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&consultation.id, None).await.unwrap();
    (consultation.id, provider)
}

/// Sends `count` messages from `sender` into `consultation`.
async fn send_messages(sender: &Client, consultation: &ConsultationId, count: u64) {
    for i in 1..=count {
        sender
            .send(consultation, format!("m-{i}"), format!("message {i}"))
            .await
            .unwrap();
    }
}

/// A receipt handed to the batcher directly, as `acknowledge` hands it.
fn receipt(
    consultation: &ConsultationId,
    user: &str,
    role: Role,
    kind: ReceiptKind,
    seq: u64,
) -> NewReceipt {
    NewReceipt {
        consultation_id: consultation.clone(),
        user: UserId::from(user),
        role,
        kind,
        seq,
        known_stored: seq,
        bumps_rev: role == Role::Provider,
    }
}

/// The `(kind, seq)` of the next `receipt` frame about `user`.
async fn next_receipt_of(client: &Client, user: &str) -> (ReceiptKind, u64) {
    expect_event(client, |event| match event {
        ServerFrame::Receipt {
            user: who,
            receipt,
            seq,
            ..
        } if who.as_str() == user => Some((*receipt, seq.get())),
        _ => None,
    })
    .await
}

fn is_receipt(event: &ServerFrame) -> bool {
    matches!(event, ServerFrame::Receipt { .. })
}

#[tokio::test]
async fn many_receipts_from_several_members_at_once_end_with_exactly_the_highest_positions() {
    let hub = hub().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = hub.connect("dr-a", Role::Provider).await;
    send_messages(&provider, &id, 30).await;

    // (user, role, highest delivered acked, highest read acked): each
    // member acknowledges every position up to those, shuffled, over three
    // connections at once.
    let members = [
        ("pat-a", Role::Patient, 30, 27),
        ("dr-a", Role::Provider, 0, 30),
        ("adm-1", Role::Admin, 25, 19),
        ("adm-2", Role::Admin, 12, 0),
    ];
    let before = hub.metrics_text().await;
    let mut tasks = Vec::new();
    let mut sent = 0.0;
    for (user, role, delivered, read) in members {
        let mut acks: Vec<(ReceiptKind, u64)> = (1..=delivered)
            .map(|seq| (ReceiptKind::Delivered, seq))
            .chain((1..=read).map(|seq| (ReceiptKind::Read, seq)))
            .collect();
        // A fixed shuffle: highest positions come early for some.
        let len = acks.len().max(1);
        acks.sort_by_key(|&(kind, seq)| (seq * 7 + u64::from(kind == ReceiptKind::Read)) % 11);
        for connection in 0..3 {
            let client = hub.connect(user, role).await;
            if connection == 0 {
                // One joined connection per member; the others ack unjoined.
                client.join(&id, None).await.unwrap();
            }
            let mine: Vec<(ReceiptKind, u64)> = acks
                .iter()
                .copied()
                .cycle()
                .skip(connection * len / 3)
                .take(len)
                .collect();
            sent += mine.len() as f64;
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                for (kind, seq) in mine {
                    client.ack(&id, Seq(seq), kind).await.unwrap();
                }
                client
            }));
        }
    }
    let clients = join_all(tasks).await;
    for (user, _, delivered, read) in members {
        assert_eq!(
            stored(&hub, &id, user).await,
            ReceiptState {
                delivered: delivered.max(read),
                read
            },
            "{user}"
        );
    }
    let after = hub.metrics_text().await;
    let recorded =
        metric(&after, "consult_receipts_total") - metric(&before, "consult_receipts_total");
    let flushes = metric(&after, "consult_receipt_flushes_total")
        - metric(&before, "consult_receipt_flushes_total");
    assert!(recorded >= sent, "{recorded} recorded of {sent}");
    assert!(
        flushes >= 1.0 && flushes * 2.0 <= sent,
        "{flushes} transactions for {sent} receipts"
    );
    drop(clients);
}

#[tokio::test]
async fn a_receipt_that_does_not_move_publishes_nothing() {
    let hub = hub().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(&id, None).await.unwrap();
    patient.join(&id, None).await.unwrap();
    send_messages(&provider, &id, 3).await;

    patient.ack(&id, Seq(3), ReceiptKind::Read).await.unwrap();
    assert_eq!(
        next_receipt_of(&provider, "pat-a").await,
        (ReceiptKind::Read, 3)
    );
    // Behind the stored positions (a read counts as delivered), or at them.
    for (kind, seq) in [
        (ReceiptKind::Delivered, 2),
        (ReceiptKind::Delivered, 3),
        (ReceiptKind::Read, 1),
        (ReceiptKind::Read, 3),
        (ReceiptKind::Delivered, 0),
    ] {
        patient.ack(&id, Seq(seq), kind).await.unwrap();
    }
    expect_no_event(&provider, QUIET, is_receipt).await;
    assert_positions(&hub, &id, "pat-a", 3, 3).await;

    // The provider's read moves once: one frame, one rev bump, one delta.
    let watcher = hub.connect("adm-1", Role::Admin).await;
    watcher.watch_dashboard(None).await.unwrap();
    provider.ack(&id, Seq(3), ReceiptKind::Read).await.unwrap();
    assert_eq!(
        next_receipt_of(&provider, "dr-a").await,
        (ReceiptKind::Read, 3)
    );
    let bumped = rev(&hub, &id).await;
    let delta = expect_event(&watcher, |event| match event {
        ServerFrame::Dashboard { entry } if entry.consultation_id == id => Some(entry.clone()),
        _ => None,
    })
    .await;
    assert_eq!(delta.rev, bumped);
    for seq in [2, 3] {
        provider
            .ack(&id, Seq(seq), ReceiptKind::Read)
            .await
            .unwrap();
    }
    expect_no_event(&provider, QUIET, is_receipt).await;
    expect_no_event(&watcher, Duration::ZERO, |event| {
        matches!(event, ServerFrame::Dashboard { .. })
    })
    .await;
    assert_eq!(rev(&hub, &id).await, bumped, "a read that did not move");

    // Beyond the last message: refused, and nothing is stored.
    let error = patient
        .ack(&id, Seq(4), ReceiptKind::Delivered)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidValue));
}

#[tokio::test]
async fn receipts_racing_from_two_connections_of_one_member_only_grow() {
    let hub = hub().await;
    let (id, provider) = joined_provider(&hub).await;
    const LAST: u64 = 40;
    send_messages(&provider, &id, LAST).await;

    // One connection joined, acknowledging upwards; the other unjoined,
    // downwards; both at once.
    let up = hub.connect("pat-a", Role::Patient).await;
    up.join(&id, None).await.unwrap();
    let down = hub.connect("pat-a", Role::Patient).await;
    let upwards = {
        let id = id.clone();
        tokio::spawn(async move {
            for seq in 1..=LAST {
                let kind = if seq % 3 == 0 || seq == LAST {
                    ReceiptKind::Read
                } else {
                    ReceiptKind::Delivered
                };
                up.ack(&id, Seq(seq), kind).await.unwrap();
            }
        })
    };
    let downwards = {
        let id = id.clone();
        tokio::spawn(async move {
            for seq in (1..=LAST).rev() {
                let kind = if seq % 4 == 0 {
                    ReceiptKind::Read
                } else {
                    ReceiptKind::Delivered
                };
                down.ack(&id, Seq(seq), kind).await.unwrap();
            }
        })
    };
    upwards.await.unwrap();
    downwards.await.unwrap();

    let mut delivered = Vec::new();
    let mut read = Vec::new();
    while read.last() != Some(&LAST) {
        match next_receipt_of(&provider, "pat-a").await {
            (ReceiptKind::Delivered, seq) => delivered.push(seq),
            (ReceiptKind::Read, seq) => read.push(seq),
        }
    }
    expect_no_event(&provider, QUIET, is_receipt).await;
    for (kind, seqs) in [("delivered", &delivered), ("read", &read)] {
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "{kind} frames went backwards or repeated: {seqs:?}"
        );
    }
    assert!(delivered.iter().all(|&seq| seq <= LAST));
    assert_positions(&hub, &id, "pat-a", LAST, LAST).await;
}

#[tokio::test]
async fn a_providers_reads_in_one_flush_bump_the_dashboard_row_once() {
    let hub = hub().await;
    let (id, provider) = joined_provider(&hub).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    send_messages(&patient, &id, 3).await;
    let watcher = hub.connect("adm-1", Role::Admin).await;
    let snapshot = watcher.watch_dashboard(None).await.unwrap();
    assert_eq!(snapshot[0].unread, 3);
    let rev_before = rev(&hub, &id).await;

    // Handed over together, as acks from several connections arriving
    // within one flush are.
    let outcomes = join_all([1, 3, 2].map(|seq| {
        hub.state
            .receipts
            .record(receipt(&id, "dr-a", Role::Provider, ReceiptKind::Read, seq))
    }))
    .await;
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), ReceiptOutcome::Recorded);
    }
    assert_eq!(rev(&hub, &id).await, rev_before + 1);
    assert_eq!(
        next_receipt_of(&provider, "dr-a").await,
        (ReceiptKind::Read, 3),
        "the highest position only"
    );
    expect_no_event(&provider, QUIET, is_receipt).await;
    let delta = expect_event(&watcher, |event| match event {
        ServerFrame::Dashboard { entry }
            if entry.consultation_id == id && entry.rev > rev_before =>
        {
            Some(entry.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!((delta.unread, delta.rev), (0, rev_before + 1));

    // An admin's read is not the provider's: no bump.
    let admin = NewReceipt {
        bumps_rev: false,
        ..receipt(&id, "adm-1", Role::Admin, ReceiptKind::Read, 3)
    };
    hub.state.receipts.record(admin).await.unwrap();
    assert_eq!(rev(&hub, &id).await, rev_before + 1);
}

/// A lock that keeps the hub from writing receipts until it is released:
/// the SQLite file's write lock, or PostgreSQL's table lock on `receipts`.
enum ReceiptWriteLock {
    Sqlite(rusqlite::Connection),
    Postgres(sea_orm::DatabaseTransaction),
}

impl ReceiptWriteLock {
    async fn take(hub: &TestHub) -> Self {
        let url = hub.database_url();
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let path = rest.split('?').next().unwrap();
            let connection = rusqlite::Connection::open(path).unwrap();
            connection.execute_batch("BEGIN IMMEDIATE").unwrap();
            Self::Sqlite(connection)
        } else {
            let db = sea_orm::Database::connect(url).await.unwrap();
            let txn = db.begin().await.unwrap();
            txn.execute_unprepared("LOCK TABLE receipts IN EXCLUSIVE MODE")
                .await
                .unwrap();
            Self::Postgres(txn)
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(connection) => connection.execute_batch("ROLLBACK").unwrap(),
            Self::Postgres(txn) => txn.rollback().await.unwrap(),
        }
    }
}

#[tokio::test]
async fn a_member_gets_the_rooms_events_while_its_ack_waits_for_the_receipt_flush() {
    let hub = hub().await;
    let consultation = hub
        .consultation("dr-w", "pat-w", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = hub.connect("dr-w", Role::Provider).await;
    provider.join(&id, None).await.unwrap();
    let patient = hub.connect("pat-w", Role::Patient).await;
    patient.join(&id, None).await.unwrap();
    send_messages(&provider, &id, 1).await;
    expect_event(&patient, |event| {
        matches!(event, ServerFrame::Message { .. }).then_some(())
    })
    .await;

    let lock = ReceiptWriteLock::take(&hub).await;
    let ack = patient.ack(&id, Seq(1), ReceiptKind::Read);
    tokio::pin!(ack);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut ack)
            .await
            .is_err(),
        "the ack waits for its flush while receipts cannot be written"
    );
    // Typing is relayed without storage: it reaches the patient while the
    // patient's own ack is still unanswered.
    provider.typing(&id, true).await.unwrap();
    expect_event(&patient, |event| match event {
        ServerFrame::Typing { user, active, .. } if user.as_str() == "dr-w" => Some(*active),
        _ => None,
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut ack)
            .await
            .is_err(),
        "the typing frame came before the ack's answer"
    );

    lock.release().await;
    tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .expect("the ack is answered once the lock is gone")
        .unwrap();
    assert_positions(&hub, &id, "pat-w", 1, 1).await;
    assert_eq!(
        next_receipt_of(&provider, "pat-w").await,
        (ReceiptKind::Read, 1)
    );
}

/// Makes every write of a receipt row for `user` fail.
async fn refuse_receipts_of(hub: &TestHub, user: &str) {
    let db = hub.state.store.connection();
    if hub.database_url().starts_with("sqlite") {
        for event in ["INSERT", "UPDATE"] {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER refuse_{event} BEFORE {event} ON receipts \
                 WHEN NEW.user_id = '{user}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ))
            .await
            .unwrap();
        }
    } else {
        db.execute_unprepared(&format!(
            "CREATE FUNCTION refuse_receipt() RETURNS trigger AS $$ BEGIN \
               IF NEW.user_id = '{user}' THEN RAISE EXCEPTION 'refused'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql"
        ))
        .await
        .unwrap();
        db.execute_unprepared(
            "CREATE TRIGGER refuse_receipt BEFORE INSERT OR UPDATE ON receipts \
             FOR EACH ROW EXECUTE FUNCTION refuse_receipt()",
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_failed_flush_answers_each_of_its_receipts_with_an_error_and_loses_nothing_else() {
    let hub = hub().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let other = hub
        .consultation("dr-a", "pat-b", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&id, None).await.unwrap();
    send_messages(&provider, &id, 5).await;
    send_messages(&provider, &other.id, 1).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient
        .ack(&id, Seq(2), ReceiptKind::Delivered)
        .await
        .unwrap();
    assert_eq!(
        next_receipt_of(&provider, "pat-a").await,
        (ReceiptKind::Delivered, 2)
    );
    let rev_before = rev(&hub, &id).await;

    // Every write of pat-b's receipts fails from now on; handed over at
    // once, the four receipts below share one flush with one of them.
    refuse_receipts_of(&hub, "pat-b").await;
    let batch = [
        receipt(&id, "pat-a", Role::Patient, ReceiptKind::Delivered, 4),
        receipt(&id, "dr-a", Role::Provider, ReceiptKind::Read, 5),
        receipt(&other.id, "pat-b", Role::Patient, ReceiptKind::Delivered, 1),
        receipt(&id, "pat-a", Role::Patient, ReceiptKind::Read, 3),
    ];
    let outcomes = tokio::time::timeout(
        Duration::from_secs(10),
        join_all(batch.iter().cloned().map(|r| hub.state.receipts.record(r))),
    )
    .await
    .expect("every waiter is answered");
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Err(StoreError::Db(_))),
            "every receipt of the failed flush fails: {outcomes:?}"
        );
    }
    // Nothing of the failed flush was written or published; what was
    // stored before is still there.
    assert_positions(&hub, &id, "pat-a", 2, 0).await;
    assert_eq!(stored(&hub, &id, "dr-a").await, ReceiptState::default());
    assert_eq!(rev(&hub, &id).await, rev_before);
    expect_no_event(&provider, QUIET, is_receipt).await;

    // Through the socket, a failed flush is an error frame, not a hang.
    let patient_b = hub.connect("pat-b", Role::Patient).await;
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        patient_b.ack(&other.id, Seq(1), ReceiptKind::Delivered),
    )
    .await
    .expect("answered")
    .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Internal));

    // The batcher goes on: the same receipts again, without the refused one.
    for receipt in batch.iter().filter(|r| r.user.as_str() != "pat-b") {
        let outcome = hub.state.receipts.record(receipt.clone()).await.unwrap();
        assert_eq!(outcome, ReceiptOutcome::Recorded);
    }
    assert_positions(&hub, &id, "pat-a", 4, 3).await;
    assert_positions(&hub, &id, "dr-a", 5, 5).await;
    assert_eq!(rev(&hub, &id).await, rev_before + 1);
    assert_eq!(
        stored(&hub, &other.id, "pat-b").await,
        ReceiptState::default()
    );
}

#[tokio::test]
async fn on_a_sqlite_file_a_failing_receipt_flush_fails_alone_and_the_messages_written_with_it_are_stored()
 {
    let hub = hub().await;
    let store = consult_hub::store::appender::Backend::for_store(
        &hub.state.store,
        &hub.state.config.database,
        &hub.state.workers,
    )
    .await
    .unwrap();
    let consult_hub::store::appender::Backend::Sqlite(mut writer) = store else {
        // PostgreSQL writes receipt flushes through the pool, each in a
        // transaction of its own (the test above).
        assert!(!hub.database_url().starts_with("sqlite"));
        return;
    };
    let first = hub
        .consultation("dr-f", "pat-a", "waiting_for_patient")
        .await
        .id;
    let second = hub
        .consultation("dr-f", "pat-b", "waiting_for_patient")
        .await
        .id;
    let provider = hub.connect("dr-f", Role::Provider).await;
    send_messages(&provider, &first, 1).await;
    send_messages(&provider, &second, 1).await;
    refuse_receipts_of(&hub, "pat-b").await;

    let message = |id: &ConsultationId, n: &str| {
        new_chat_message(id, "dr-f", Role::Provider, Some(n), &format!("body {n}"))
    };
    let row = |id: &ConsultationId, user: &str| ReceiptRow {
        consultation_id: id.to_string(),
        user_id: user.to_owned(),
        delivered: 1,
        read: 0,
        bumps_rev: false,
    };
    let accepted = [row(&first, "pat-a")];
    let refused = [row(&second, "pat-b")];
    let (outcomes, flushes) = writer.write(
        &[message(&first, "w-1"), message(&second, "w-2")],
        &[&accepted, &refused],
    );

    // The refused flush rolled the shared transaction back; each message and
    // each flush was then written alone.
    let seqs: Vec<u64> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(AppendOutcome::Stored(stored)) => stored.message.seq.get(),
            other => panic!("stored alone after the shared transaction failed: {other:?}"),
        })
        .collect();
    assert_eq!(seqs, [2, 2]);
    assert_eq!(flushes.len(), 2);
    let moved = flushes[0].as_ref().expect("the accepted flush is written");
    assert!(
        moved
            .delivered
            .contains(&(first.to_string(), "pat-a".to_owned()))
    );
    assert!(
        matches!(flushes[1], Err(StoreError::Sqlite(_))),
        "{:?}",
        flushes[1]
    );
    assert_positions(&hub, &first, "pat-a", 1, 0).await;
    assert_eq!(
        stored(&hub, &second, "pat-b").await,
        ReceiptState::default()
    );
    for id in [&first, &second] {
        let (code, body) = hub
            .api_get(&format!("/v1/consultations/{id}/messages"))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["messages"].as_array().unwrap().len(), 2, "{body}");
    }
}

#[tokio::test]
async fn on_postgresql_two_nodes_flushing_the_same_positions_at_once_move_each_of_them_once() {
    let hub = hub().await;
    if !hub.database_url().starts_with("postgres") {
        // On a SQLite file one writer writes every flush.
        return;
    }
    let (id, provider) = joined_provider(&hub).await;
    send_messages(&provider, &id, 40).await;
    let rev_before = rev(&hub, &id).await;
    // A second node's pool on the same database.
    let other_node = consult_hub::store::Store::connect(&consult_hub::config::DatabaseConfig {
        url: hub.database_url().to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    let key = |user: &str| (id.to_string(), user.to_owned());
    for round in 1..=20_u64 {
        // The patient's delivered and read, and the provider's read, the
        // same on both nodes.
        let flush = [
            ReceiptRow {
                consultation_id: id.to_string(),
                user_id: "pat-a".to_owned(),
                delivered: 2 * round,
                read: round,
                bumps_rev: false,
            },
            ReceiptRow {
                consultation_id: id.to_string(),
                user_id: "dr-a".to_owned(),
                delivered: 0,
                read: 2 * round,
                bumps_rev: true,
            },
        ];
        let (here, there) = tokio::join!(
            pg_receipts::write(hub.state.store.connection(), &flush),
            pg_receipts::write(other_node.connection(), &flush),
        );
        let (here, there) = (here.unwrap(), there.unwrap());
        for (moved, kind) in [
            (key("pat-a"), "delivered"),
            (key("pat-a"), "read"),
            (key("dr-a"), "read"),
        ] {
            let (in_here, in_there) = if kind == "delivered" {
                (
                    here.delivered.contains(&moved),
                    there.delivered.contains(&moved),
                )
            } else {
                (here.read.contains(&moved), there.read.contains(&moved))
            };
            assert!(
                in_here != in_there,
                "round {round}: {moved:?} {kind} moved on exactly one node \
                 (here {in_here}, there {in_there})"
            );
        }
        assert!(!here.delivered.contains(&key("dr-a")) && !there.delivered.contains(&key("dr-a")));
    }
    assert_positions(&hub, &id, "pat-a", 40, 20).await;
    assert_positions(&hub, &id, "dr-a", 40, 40).await;
    // The provider's read moved once a round: one bump a round.
    assert_eq!(rev(&hub, &id).await, rev_before + 20);
}
