//! Message partitions (PostgreSQL) and message retention (both databases):
//! partitions exist after start and follow the consultation's month, the
//! worker creates missing ones and empties the default partition, two nodes
//! may create the same one, a partition is analyzed once it has doubled
//! (by one node), the migration of a populated table keeps every
//! row and both unique keys; retention deletes exactly the expired
//! consultations' messages of the clinic that asked, exports them first when
//! configured, and refuses bad settings.

use crate::harness::db::{TestDb, backend, query_value};
use crate::harness::providers::register_device;
use crate::harness::{CLINIC, TestHub};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use consult_hub::service::retention::{self, SweepReport};
use consult_hub::store::messages::{self, AppendOutcome, NewMessage};
use consult_hub::store::migration::Migrator;
use consult_hub::store::{Store, batch_append, partitions, pg_batch_append};
use consult_protocol::{ConsultationId, MessageKind, Role, UserId};
use sea_orm::{
    ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait,
    Value,
};
use sea_orm_migration::MigratorTrait;
use serde_json::json;
use std::time::Duration;

fn postgres() -> bool {
    backend() == "postgres"
}

/// Runs `sql` written with `$n` placeholders on either database.
async fn exec(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> u64 {
    let backend = db.get_database_backend();
    let sql = if backend == DatabaseBackend::Sqlite {
        (1..=9)
            .rev()
            .fold(sql.to_owned(), |sql, n| sql.replace(&format!("${n}"), "?"))
    } else {
        sql.to_owned()
    };
    db.execute(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap()
        .rows_affected()
}

async fn count(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> i64 {
    let backend = db.get_database_backend();
    let sql = if backend == DatabaseBackend::Sqlite {
        (1..=9)
            .rev()
            .fold(sql.to_owned(), |sql, n| sql.replace(&format!("${n}"), "?"))
    } else {
        sql.to_owned()
    };
    db.query_one(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

async fn messages_of(db: &DatabaseConnection, id: &str) -> i64 {
    count(
        db,
        "SELECT count(*) AS n FROM messages WHERE consultation_id = $1",
        vec![id.into()],
    )
    .await
}

/// The partition holding each message of the consultation.
async fn partitions_of(db: &DatabaseConnection, id: &str) -> Vec<String> {
    db.query_all(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT tableoid::regclass::text AS part FROM messages WHERE consultation_id = $1 ORDER BY seq",
        [id.into()],
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get("", "part").unwrap())
    .collect()
}

fn month(at: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap()
}

fn chat(consultation: &str, sender: &str, client_msg_id: &str, body: &str) -> NewMessage {
    NewMessage {
        consultation_id: ConsultationId::from(consultation),
        sender: UserId::from(sender),
        sender_role: Role::Provider,
        kind: MessageKind::Chat,
        body: body.to_owned(),
        client_msg_id: Some(client_msg_id.to_owned()),
        notifications: Vec::new(),
        audit: None,
    }
}

/// Posts a platform message on the provider's behalf.
async fn post(hub: &TestHub, consultation: &ConsultationId, key: &str, body: &str, sender: &str) {
    let path = format!("/v1/consultations/{consultation}/messages");
    let (status, answer) = hub
        .api_post(
            &path,
            json!({"client_msg_id": key, "body": body, "sender_id": sender}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

async fn put_retention(
    hub: &TestHub,
    clinic: &str,
    days: serde_json::Value,
) -> (u16, serde_json::Value) {
    hub.api_put(
        &format!("/v1/clinics/{clinic}/policy"),
        json!({"push_after_ms": 30000, "offline_grace_ms": 10000, "message_retention_days": days}),
    )
    .await
}

/// Ends the consultation (status `ended`) as of `at`.
async fn end_at(db: &DatabaseConnection, id: &ConsultationId, at: DateTime<Utc>) {
    let changed = exec(
        db,
        "UPDATE consultations SET status = 'ended', ended_at = $1 WHERE id = $2",
        vec![at.into(), id.to_string().into()],
    )
    .await;
    assert_eq!(changed, 1);
}

// ---------------------------------------------------------------- partitions

#[tokio::test]
async fn after_start_the_current_month_the_next_three_and_a_default_partition_exist() {
    if !postgres() {
        return;
    }
    let hub = TestHub::start().await;
    let db = hub.state.store.connection();
    let found = partitions::list(db).await.unwrap();
    let mut expected = vec!["messages_default".to_owned()];
    let mut month = month(Utc::now());
    for _ in 0..=3 {
        expected.push(partitions::partition_name(month));
        month = month.checked_add_months(Months::new(1)).unwrap();
    }
    for name in &expected {
        assert!(found.contains(name), "{name} missing from {found:?}");
    }
    let kind = count(
        db,
        "SELECT count(*) AS n FROM pg_class WHERE relname = 'messages' AND relkind = 'p'",
        Vec::new(),
    )
    .await;
    assert_eq!(kind, 1, "messages is a partitioned table");
    hub.shutdown().await;
}

#[tokio::test]
async fn every_writer_puts_a_message_in_its_consultations_month_not_its_own() {
    if !postgres() {
        return;
    }
    let hub = TestHub::start().await;
    let db = hub.state.store.connection();
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    // A consultation created two months from now (a clock far ahead): its
    // messages, sent today, belong to that month.
    let later = Utc::now().checked_add_months(Months::new(2)).unwrap();
    exec(
        db,
        "UPDATE consultations SET created_at = $1 WHERE id = $2",
        vec![later.into(), consultation.id.to_string().into()],
    )
    .await;
    let id = consultation.id.as_str();
    let one = chat(id, "dr-a", "m-1", "one");
    let two = chat(id, "dr-a", "m-2", "two");
    let three = chat(id, "dr-a", "m-3", "three");
    assert!(matches!(
        messages::append(db, &one).await.unwrap(),
        AppendOutcome::Stored(_)
    ));
    assert!(matches!(
        batch_append::append_batch(db, &[&two]).await.unwrap()[0],
        AppendOutcome::Stored(_)
    ));
    assert!(matches!(
        pg_batch_append::append_batch(db, &[&three]).await.unwrap()[0],
        AppendOutcome::Stored(_)
    ));
    // And through the hub's own writer.
    post(&hub, &consultation.id, "m-4", "four", "dr-a").await;
    let expected = partitions::partition_name(month(later));
    assert_eq!(partitions_of(db, id).await, vec![expected; 4]);
    // Retries still find the earlier send across the partitioned table.
    assert!(matches!(
        pg_batch_append::append_batch(db, &[&three]).await.unwrap()[0],
        AppendOutcome::Duplicate(_)
    ));
    assert!(matches!(
        messages::append(db, &one).await.unwrap(),
        AppendOutcome::Duplicate(_)
    ));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_message_of_a_month_without_partition_waits_in_the_default_one_until_the_pass_moves_it() {
    if !postgres() {
        return;
    }
    let hub = TestHub::start().await;
    let db = hub.state.store.connection();
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let old: DateTime<Utc> = "2020-03-10T08:00:00Z".parse().unwrap();
    exec(
        db,
        "UPDATE consultations SET created_at = $1 WHERE id = $2",
        vec![old.into(), consultation.id.to_string().into()],
    )
    .await;
    post(&hub, &consultation.id, "m-1", "one", "dr-a").await;
    let id = consultation.id.as_str();
    assert_eq!(partitions_of(db, id).await, vec!["messages_default"]);
    assert_eq!(partitions::default_rows(db).await.unwrap(), 1);

    let report = consult_hub::service::partitions::pass(&hub.state.store, 3)
        .await
        .unwrap();
    assert_eq!(report.created, vec!["messages_p2020_03".to_owned()]);
    assert_eq!(report.moved, 1);
    assert_eq!(report.default_rows, 0);
    assert_eq!(partitions_of(db, id).await, vec!["messages_p2020_03"]);
    assert_eq!(
        hub.metric("consult_messages_default_partition_rows").await,
        0.0
    );
    // The moved row keeps its id and is still found by its key.
    post(&hub, &consultation.id, "m-2", "two", "dr-a").await;
    assert_eq!(
        partitions_of(db, id).await,
        vec!["messages_p2020_03", "messages_p2020_03"]
    );
    let (_, history) = hub
        .api_get(&format!("/v1/consultations/{id}/messages"))
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_worker_creates_a_missing_future_partition() {
    if !postgres() {
        return;
    }
    let hub = TestHub::start_with(|config| config.database.partition_interval_secs = 1).await;
    let db = hub.state.store.connection();
    let last = month(Utc::now())
        .checked_add_months(Months::new(3))
        .unwrap();
    let name = partitions::partition_name(last);
    exec(db, &format!("DROP TABLE {name}"), Vec::new()).await;
    assert!(!partitions::list(db).await.unwrap().contains(&name));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !partitions::list(db).await.unwrap().contains(&name) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} not created again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, ready) = hub.api_get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["workers"]["partitions"], "running");
    assert_eq!(ready["workers"]["retention"], "running");
    hub.shutdown().await;
}

/// Two stores (as two nodes would hold) on a new, migrated database; the
/// folder and the database live as long as the first two values.
async fn two_nodes_on_a_new_database() -> (tempfile::TempDir, TestDb, Store, Store) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::create(dir.path()).await;
    let config = consult_hub::config::DatabaseConfig {
        url: test_db.url.clone(),
        ..Default::default()
    };
    let first = Store::connect(&config).await.unwrap();
    first.migrate().await.unwrap();
    let second = Store::connect(&config).await.unwrap();
    (dir, test_db, first, second)
}

/// Inserts messages `from..=to` of one consultation into the current
/// month's partition, each with a 120-character body.
async fn fill_current_month(db: &DatabaseConnection, from: i64, to: i64) {
    exec(
        db,
        "INSERT INTO messages (consultation_id, seq, sender_id, sender_role, kind, body, \
           client_msg_id, created_at, consultation_month) \
         SELECT 'consultation-stats', g, 'provider-stats', 'provider', 'chat', repeat('x', 120), \
           'k-' || g, now(), $1 FROM generate_series($2::bigint, $3::bigint) g",
        vec![month(Utc::now()).into(), from.into(), to.into()],
    )
    .await;
}

/// The partition's row count as its statistics know it (-1: never analyzed;
/// the migration analyzes the partitions it creates, empty).
async fn known_rows(db: &DatabaseConnection, name: &str) -> f64 {
    query_value(
        db,
        "SELECT reltuples::float8 AS n FROM pg_class WHERE oid = to_regclass($1)",
        vec![name.into()],
    )
    .await
}

/// How many histogram bounds the partition's statistics hold for `seq`.
async fn seq_histogram_bounds(db: &DatabaseConnection, name: &str) -> i64 {
    query_value(
        db,
        "SELECT array_length(histogram_bounds, 1)::bigint AS n FROM pg_stats \
         WHERE tablename = $1 AND attname = 'seq'",
        vec![name.into()],
    )
    .await
}

#[tokio::test]
async fn a_partition_is_analyzed_once_it_has_doubled_since_its_statistics_were_taken() {
    if !postgres() {
        return;
    }
    let (_dir, _db, first, second) = two_nodes_on_a_new_database().await;
    partitions::maintain(first.connection(), Utc::now().date_naive(), 1)
        .await
        .unwrap();
    let current = partitions::partition_name(month(Utc::now()));
    let next = partitions::partition_name(
        month(Utc::now())
            .checked_add_months(Months::new(1))
            .unwrap(),
    );
    let db = first.connection();
    // Empty partitions are below the floor: nothing to analyze.
    assert_eq!(
        partitions::refresh_statistics(db).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(known_rows(db, &current).await <= 0.0);

    fill_current_month(db, 1, 3000).await;
    // Two nodes looking at once: one of them analyzes it, once.
    let (a, b) = tokio::join!(
        partitions::refresh_statistics(first.connection()),
        partitions::refresh_statistics(second.connection()),
    );
    let mut analyzed = a.unwrap();
    analyzed.extend(b.unwrap());
    assert_eq!(analyzed, vec![current.clone()]);
    assert!((known_rows(db, &current).await - 3000.0).abs() < 1.0);
    // At the small statistics target: 3,000 distinct `seq`s, at most
    // target + 1 histogram bounds (101 at the server's default).
    assert_eq!(
        seq_histogram_bounds(db, &current).await,
        i64::from(partitions::ANALYZE_STATISTICS_TARGET) + 1
    );
    assert!(
        known_rows(db, &next).await <= 0.0,
        "an empty partition is left alone"
    );

    // Grown by half: not due yet.
    fill_current_month(db, 3001, 4500).await;
    assert_eq!(
        partitions::refresh_statistics(db).await.unwrap(),
        Vec::<String>::new()
    );
    assert!((known_rows(db, &current).await - 3000.0).abs() < 1.0);

    // More than doubled: analyzed again.
    fill_current_month(db, 4501, 7000).await;
    assert_eq!(
        partitions::refresh_statistics(db).await.unwrap(),
        vec![current.clone()]
    );
    assert!((known_rows(db, &current).await - 7000.0).abs() < 1.0);
}

#[tokio::test]
async fn the_worker_analyzes_the_current_month_once_it_fills() {
    if !postgres() {
        return;
    }
    let hub =
        TestHub::start_with(|config| config.database.partition_analyze_interval_secs = 1).await;
    let db = hub.state.store.connection();
    let current = partitions::partition_name(month(Utc::now()));
    fill_current_month(db, 1, 3000).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while known_rows(db, &current).await <= 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{current} not analyzed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((known_rows(db, &current).await - 3000.0).abs() < 1.0);
    assert!(hub.metric("consult_partition_analyzes_total").await >= 1.0);
    let (status, ready) = hub.api_get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["workers"]["partitions"], "running");
    hub.shutdown().await;
}

#[tokio::test]
async fn two_nodes_creating_the_same_partition_both_succeed() {
    if !postgres() {
        return;
    }
    let (_dir, _db, first, second) = two_nodes_on_a_new_database().await;
    let month = NaiveDate::from_ymd_opt(2031, 5, 1).unwrap();
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            partitions::ensure_month(first.connection(), month),
            partitions::ensure_month(second.connection(), month),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.is_none() || b.is_none(), "created once at most");
    }
    let found = partitions::list(first.connection()).await.unwrap();
    assert_eq!(
        found
            .iter()
            .filter(|name| *name == "messages_p2031_05")
            .count(),
        1
    );
    // A plain concurrent CREATE by someone outside the hub's lock counts as
    // done too.
    let other = NaiveDate::from_ymd_opt(2032, 7, 1).unwrap();
    exec(
        first.connection(),
        "CREATE TABLE messages_p2032_07 PARTITION OF messages \
         FOR VALUES FROM ('2032-07-01') TO ('2032-08-01')",
        Vec::new(),
    )
    .await;
    assert_eq!(
        partitions::ensure_month(second.connection(), other)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_partition_created_outside_the_hub_while_the_hub_creates_it_counts_as_done() {
    if !postgres() {
        return;
    }
    let (_dir, _test_db, store, _second) = two_nodes_on_a_new_database().await;
    let db = store.connection().clone();
    // Someone else (no advisory lock) is creating the month, not yet
    // committed.
    let other = db.begin().await.unwrap();
    other
        .execute_unprepared(
            "CREATE TABLE messages_p2033_02 PARTITION OF messages \
             FOR VALUES FROM ('2033-02-01') TO ('2033-03-01')",
        )
        .await
        .unwrap();
    let hub = {
        let db = db.clone();
        tokio::spawn(async move {
            partitions::ensure_month(&db, NaiveDate::from_ymd_opt(2033, 2, 1).unwrap()).await
        })
    };
    // The hub's pass waits on the other creation's locks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(
        &db,
        "SELECT count(*) AS n FROM pg_locks WHERE NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        Vec::new(),
    )
    .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "never blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.commit().await.unwrap();
    assert_eq!(hub.await.unwrap().unwrap(), None, "done by the other");
    assert!(
        partitions::list(&db)
            .await
            .unwrap()
            .contains(&"messages_p2033_02".to_owned())
    );
}

#[tokio::test]
async fn migrating_a_populated_table_keeps_every_row_its_ids_and_both_unique_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&TestDb::create(dir.path()).await.url)
        .await
        .unwrap();
    Migrator::up(&db, Some(7)).await.unwrap();
    for (id, created, status) in [
        ("c-old", "2025-11-20T10:00:00Z", "ended"),
        ("c-new", "2026-01-03T10:00:00Z", "in_progress"),
    ] {
        let at: DateTime<Utc> = created.parse().unwrap();
        exec(
            &db,
            "INSERT INTO consultations (id, clinic_id, provider_id, patient_id, status, \
               scheduled_at, staff_messaged_first, last_seq, rev, created_at, updated_at) \
             VALUES ($1, 'clinic-1', 'dr-a', 'pat-a', $2, $3, FALSE, 3, 1, $4, $5)",
            vec![id.into(), status.into(), at.into(), at.into(), at.into()],
        )
        .await;
        for seq in 1..=3_i64 {
            exec(
                &db,
                "INSERT INTO messages (consultation_id, seq, sender_id, sender_role, kind, body, \
                   client_msg_id, created_at) VALUES ($1, $2, 'dr-a', 'provider', 'chat', $3, $4, $5)",
                vec![
                    id.into(),
                    seq.into(),
                    format!("text {seq}").into(),
                    format!("k-{seq}").into(),
                    at.into(),
                ],
            )
            .await;
        }
    }
    let before = ids(&db).await;
    assert_eq!(before.len(), 6);

    Migrator::up(&db, None).await.unwrap();

    assert_eq!(ids(&db).await, before, "every row, with its id");
    let ended = count(
        &db,
        "SELECT count(*) AS n FROM consultations WHERE ended_at = updated_at AND id = 'c-old'",
        Vec::new(),
    )
    .await;
    assert_eq!(ended, 1, "an ended consultation's end is its last change");
    if postgres() {
        assert_eq!(
            partitions_of(&db, "c-old").await,
            vec!["messages_p2025_11"; 3]
        );
        assert_eq!(
            partitions_of(&db, "c-new").await,
            vec!["messages_p2026_01"; 3]
        );
    }
    // Both unique keys hold on the new table (on SQLite the second is kept
    // by the writers since migration 11; see `it::migrations`).
    let (month_col, month_val) = if postgres() {
        (", consultation_month", ", '2026-01-01'")
    } else {
        ("", "")
    };
    let duplicates: &[(i64, &str)] = if postgres() {
        &[(1, "k-new"), (4, "k-1")]
    } else {
        &[(1, "k-new")]
    };
    for &(seq, key) in duplicates {
        let refused = db
            .execute_unprepared(&format!(
                "INSERT INTO messages (consultation_id, seq, sender_id, sender_role, kind, body, \
                   client_msg_id, created_at{month_col}) \
                 VALUES ('c-new', {seq}, 'dr-a', 'provider', 'chat', 'x', '{key}', \
                   CURRENT_TIMESTAMP{month_val})"
            ))
            .await;
        assert!(refused.is_err(), "duplicate (seq {seq}, key {key}) refused");
    }
    // New rows continue the id sequence.
    let stored = messages::append(&db, &chat("c-new", "dr-a", "k-4", "four"))
        .await
        .unwrap();
    let AppendOutcome::Stored(stored) = stored else {
        panic!("not stored: {stored:?}");
    };
    assert_eq!(stored.message.seq.0, 4);
    let max_before = *before.last().unwrap();
    let newest = count(&db, "SELECT max(id) AS n FROM messages", Vec::new()).await;
    assert!(newest > max_before);
}

async fn ids(db: &DatabaseConnection) -> Vec<i64> {
    db.query_all(Statement::from_string(
        db.get_database_backend(),
        "SELECT id FROM messages ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get("", "id").unwrap())
    .collect()
}

// ----------------------------------------------------------------- retention

#[tokio::test]
async fn retention_deletes_only_the_expired_consultations_of_the_clinic_that_set_it() {
    let hub = TestHub::start().await;
    let db = hub.state.store.connection();
    let (status, body) = put_retention(&hub, CLINIC, json!(30)).await;
    assert_eq!(status, 200, "{body}");
    let expired = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let recent = hub
        .consultation("dr-a", "pat-b", "waiting_for_patient")
        .await;
    let live = hub
        .consultation("dr-a", "pat-c", "waiting_for_patient")
        .await;
    let cancelled = hub
        .consultation("dr-a", "pat-d", "waiting_for_patient")
        .await;
    let elsewhere = hub
        .consultation_in("clinic-2", "dr-z", "pat-z", "waiting_for_patient")
        .await;
    register_device(&hub, "pat-a", "fcm-pat-a", true).await;
    for (consultation, provider) in [
        (&expired, "dr-a"),
        (&recent, "dr-a"),
        (&live, "dr-a"),
        (&cancelled, "dr-a"),
        (&elsewhere, "dr-z"),
    ] {
        post(&hub, &consultation.id, "m-1", "first", provider).await;
        post(&hub, &consultation.id, "m-2", "second", provider).await;
    }
    let now = Utc::now();
    end_at(db, &expired.id, now - chrono::Duration::days(31)).await;
    end_at(db, &recent.id, now - chrono::Duration::days(29)).await;
    end_at(db, &elsewhere.id, now - chrono::Duration::days(400)).await;
    // Cancelled through the API: the move records when it ended.
    let (status, body) = hub
        .api_post(
            &format!("/v1/consultations/{}/cancel", cancelled.id),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stamped = count(
        db,
        "SELECT count(*) AS n FROM consultations WHERE id = $1 AND ended_at IS NOT NULL",
        vec![cancelled.id.to_string().into()],
    )
    .await;
    assert_eq!(stamped, 1);
    let outbox_of_expired = count(
        db,
        "SELECT count(*) AS n FROM outbox WHERE consultation_id = $1",
        vec![expired.id.to_string().into()],
    )
    .await;
    exec(
        db,
        "UPDATE consultations SET ended_at = $1 WHERE id = $2",
        vec![
            (now - chrono::Duration::days(45)).into(),
            cancelled.id.to_string().into(),
        ],
    )
    .await;

    let report = retention::sweep(db, None, Utc::now()).await.unwrap();

    assert_eq!(report.consultations, 2, "{report:?}");
    assert_eq!(report.messages, 4);
    assert_eq!(
        report.notifications,
        u64::try_from(outbox_of_expired).unwrap()
    );
    assert_eq!(messages_of(db, expired.id.as_str()).await, 0);
    assert_eq!(messages_of(db, cancelled.id.as_str()).await, 0);
    assert_eq!(
        messages_of(db, recent.id.as_str()).await,
        2,
        "within the window"
    );
    assert_eq!(messages_of(db, live.id.as_str()).await, 2, "not ended");
    assert_eq!(
        messages_of(db, elsewhere.id.as_str()).await,
        2,
        "other clinic"
    );
    let outbox_left = count(
        db,
        "SELECT count(*) AS n FROM outbox WHERE consultation_id = $1",
        vec![expired.id.to_string().into()],
    )
    .await;
    assert_eq!(outbox_left, 0);
    // Audited with counts and ids, never the text.
    let (status, audit) = hub
        .api_get(&format!("/v1/consultations/{}/audit", expired.id))
        .await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    let deletion = entries
        .iter()
        .find(|entry| entry["action"] == "retention.delete")
        .unwrap_or_else(|| panic!("no retention.delete in {audit}"));
    assert_eq!(deletion["detail"]["messages"], 2);
    assert!(!audit.to_string().contains("first"));
    // The consultation itself stays.
    let (status, _) = hub
        .api_get(&format!("/v1/consultations/{}", expired.id))
        .await;
    assert_eq!(status, 200);
    // Handled once.
    let again = retention::sweep(db, None, Utc::now()).await.unwrap();
    assert_eq!(again, SweepReport::default());
    hub.shutdown().await;
}

#[tokio::test]
async fn with_an_export_folder_the_messages_are_written_as_json_lines_before_they_go() {
    let hub = TestHub::start().await;
    let db = hub.state.store.connection();
    put_retention(&hub, CLINIC, json!(1)).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    post(&hub, &consultation.id, "m-1", "first", "dr-a").await;
    post(&hub, &consultation.id, "m-2", "second", "dr-a").await;
    end_at(db, &consultation.id, Utc::now() - chrono::Duration::days(2)).await;

    // An export that cannot be written deletes nothing.
    let blocked = tempfile::tempdir().unwrap();
    let file = blocked.path().join("not-a-folder");
    std::fs::write(&file, b"").unwrap();
    assert!(retention::sweep(db, Some(&file), Utc::now()).await.is_err());
    assert_eq!(messages_of(db, consultation.id.as_str()).await, 2);

    let export = tempfile::tempdir().unwrap();
    let report = retention::sweep(db, Some(export.path()), Utc::now())
        .await
        .unwrap();
    assert_eq!(report.messages, 2);
    assert_eq!(messages_of(db, consultation.id.as_str()).await, 0);
    let path = retention::export_path(export.path(), &consultation.id);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["body"], "first");
    assert_eq!(lines[1]["body"], "second");
    assert_eq!(lines[1]["client_msg_id"], "m-2");
    assert_eq!(lines[1]["clinic_id"], CLINIC);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn the_retention_worker_deletes_on_its_own() {
    let hub = TestHub::start_with(|config| config.retention.interval_secs = 1).await;
    let db = hub.state.store.connection();
    put_retention(&hub, CLINIC, json!(7)).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    post(&hub, &consultation.id, "m-1", "first", "dr-a").await;
    end_at(db, &consultation.id, Utc::now() - chrono::Duration::days(8)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messages_of(db, consultation.id.as_str()).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not deleted within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hub.metric("consult_retention_messages_deleted_total").await,
        1.0
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn retention_is_kept_by_the_policy_api_and_bad_values_are_refused_with_a_code() {
    let hub = TestHub::start().await;
    let path = format!("/v1/clinics/{CLINIC}/policy");
    let (_, fresh) = hub.api_get(&path).await;
    assert_eq!(fresh["message_retention_days"], serde_json::Value::Null);
    let (status, stored) = put_retention(&hub, CLINIC, json!(90)).await;
    assert_eq!(status, 200, "{stored}");
    let (_, read) = hub.api_get(&path).await;
    assert_eq!(read["message_retention_days"], 90);
    for (value, status, code) in [
        (json!(0), 400, "invalid_value"),
        (json!(36_501), 400, "invalid_value"),
        (json!(-1), 422, "invalid_json"),
        (json!(1.5), 422, "invalid_json"),
        (json!("30"), 422, "invalid_json"),
    ] {
        let (got, body) = put_retention(&hub, CLINIC, value.clone()).await;
        assert_eq!(got, status, "{value}: {body}");
        assert_eq!(body["code"], code, "{value}: {body}");
    }
    let (_, read) = hub.api_get(&path).await;
    assert_eq!(
        read["message_retention_days"], 90,
        "refusals change nothing"
    );
    let (status, _) = put_retention(&hub, CLINIC, serde_json::Value::Null).await;
    assert_eq!(status, 200);
    let (_, read) = hub.api_get(&path).await;
    assert_eq!(read["message_retention_days"], serde_json::Value::Null);
    hub.shutdown().await;
}
