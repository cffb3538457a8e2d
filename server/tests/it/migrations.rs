//! Schema migrations applied to a database that already holds data, on
//! SQLite and PostgreSQL alike.

use crate::harness::db::{TestDb, query_value};
use consult_hub::domain::PersonKey;
use consult_hub::store::contacts;
use consult_hub::store::migration::Migrator;
use consult_protocol::{DevicePlatform, UserId};
use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;

/// An empty database of the backend under test, and the folder it lives
/// in (kept as long as the database is used).
async fn empty_database() -> (tempfile::TempDir, sea_orm::DatabaseConnection) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&TestDb::create(dir.path()).await.url)
        .await
        .unwrap();
    (dir, db)
}

#[tokio::test]
async fn devices_and_sms_consent_written_before_clinic_scoping_keep_their_patients_clinic() {
    let (_dir, db) = empty_database().await;
    Migrator::up(&db, Some(2)).await.unwrap();
    for statement in [
        "INSERT INTO participants (id, clinic_id, role, display_name, phone, created_at, updated_at) \
         VALUES ('pat-a', 'riverside', 'patient', 'Alex Rivera', '+15550100001', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO devices (token, user_id, platform, notifications_enabled, created_at, updated_at) \
         VALUES ('fcm-a', 'pat-a', 'fcm', TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO devices (token, user_id, platform, notifications_enabled, created_at, updated_at) \
         VALUES ('fcm-nobody', 'pat-unknown', 'fcm', TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO sms_preferences (user_id, consent, opted_out, updated_at) \
         VALUES ('pat-a', TRUE, FALSE, CURRENT_TIMESTAMP)",
    ] {
        db.execute_unprepared(statement).await.unwrap();
    }

    Migrator::up(&db, None).await.unwrap();

    let here = PersonKey::new(&"riverside".into(), &UserId::from("pat-a"));
    let elsewhere = PersonKey::new(&"other".into(), &UserId::from("pat-a"));
    let contact = contacts::contact(&db, &here).await.unwrap();
    assert_eq!(contact.devices, [(DevicePlatform::Fcm, "fcm-a".to_owned())]);
    assert_eq!(contact.sms_phone.as_deref(), Some("+15550100001"));
    assert_eq!(
        contacts::contact(&db, &elsewhere).await.unwrap(),
        contacts::Contact::default()
    );
    let orphan = PersonKey::new(&"riverside".into(), &UserId::from("pat-unknown"));
    assert!(
        contacts::contact(&db, &orphan)
            .await
            .unwrap()
            .devices
            .is_empty(),
        "a device of no known participant could not be placed in a clinic"
    );
}

/// `(id, seq, body)` of every message, by id.
async fn message_rows(db: &sea_orm::DatabaseConnection) -> Vec<(i64, i64, String)> {
    db.query_all(sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT id, seq, body FROM messages ORDER BY id",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        (
            row.try_get("", "id").unwrap(),
            row.try_get("", "seq").unwrap(),
            row.try_get("", "body").unwrap(),
        )
    })
    .collect()
}

/// True when SQLite's `messages` is declared with `AUTOINCREMENT`.
async fn declared_autoincrement(db: &sea_orm::DatabaseConnection) -> bool {
    let declared: String = query_value(
        db,
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'",
        Vec::new(),
    )
    .await;
    declared.to_ascii_uppercase().contains("AUTOINCREMENT")
}

/// An insert of a message of consultation `c-1` by `dr-a`; on PostgreSQL
/// with the partition key its partitioned table needs.
fn insert_message(sqlite: bool, seq: i64, body: &str, client_msg_id: &str) -> String {
    let (month_column, month) = if sqlite {
        ("", "")
    } else {
        (", consultation_month", ", date_trunc('month', now())::date")
    };
    format!(
        "INSERT INTO messages (consultation_id, seq, sender_id, sender_role, kind, body, \
         client_msg_id, created_at{month_column}) VALUES ('c-1', {seq}, 'dr-a', 'provider', \
         'chat', '{body}', '{client_msg_id}', CURRENT_TIMESTAMP{month})"
    )
}

/// Whether the table takes [`insert_message`]'s row.
async fn stores(
    db: &sea_orm::DatabaseConnection,
    sqlite: bool,
    seq: i64,
    body: &str,
    client_msg_id: &str,
) -> bool {
    db.execute_unprepared(&insert_message(sqlite, seq, body, client_msg_id))
        .await
        .is_ok()
}

#[tokio::test]
async fn messages_keep_their_ids_and_unique_indexes_when_sqlite_drops_autoincrement() {
    // Migration 10 alone, each time: 11 then drops one of the indexes.
    let (_dir, db) = empty_database().await;
    let sqlite = db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite;
    Migrator::up(&db, Some(9)).await.unwrap();
    for (seq, body) in [(1, "first"), (2, "second"), (3, "third")] {
        assert!(stores(&db, sqlite, seq, body, &format!("m-{seq}")).await);
    }
    db.execute_unprepared("DELETE FROM messages WHERE seq = 3")
        .await
        .unwrap();
    let before = message_rows(&db).await;
    assert_eq!(before.len(), 2);

    Migrator::up(&db, Some(1)).await.unwrap();

    assert_eq!(
        message_rows(&db).await,
        before,
        "every row kept with its id"
    );
    if sqlite {
        assert!(!declared_autoincrement(&db).await);
        let counted = db
            .query_one(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Sqlite,
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
            ))
            .await
            .unwrap();
        assert!(counted.is_none(), "no sequence row is kept for messages");
    }
    assert!(stores(&db, sqlite, 3, "third again", "m-3b").await);
    let after = message_rows(&db).await;
    assert_eq!(after.len(), 3);
    assert!(after[2].0 > before[1].0, "a new message takes a new id");
    assert!(
        !stores(&db, sqlite, 3, "same seq", "m-other").await,
        "(consultation, seq) is still unique"
    );
    assert!(
        !stores(&db, sqlite, 4, "same client id", "m-1").await,
        "(consultation, sender, client_msg_id) is still unique"
    );

    if sqlite {
        // The rebuild committed but its record was lost: running again
        // leaves the table as it is.
        db.execute_unprepared(
            "DELETE FROM seaql_migrations \
             WHERE version = 'm20261206_000010_messages_without_autoincrement'",
        )
        .await
        .unwrap();
        Migrator::up(&db, Some(1)).await.unwrap();
        assert_eq!(message_rows(&db).await, after);
        // And back: `down` restores AUTOINCREMENT with the rows.
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(declared_autoincrement(&db).await);
        assert_eq!(message_rows(&db).await, after);
        Migrator::up(&db, Some(1)).await.unwrap();
        assert!(!declared_autoincrement(&db).await);
        assert_eq!(message_rows(&db).await, after);
    }
}

/// True when the `(consultation, sender, client_msg_id)` index exists.
async fn has_client_msg_id_index(db: &sea_orm::DatabaseConnection, sqlite: bool) -> bool {
    let query = if sqlite {
        "SELECT count(*) AS n FROM sqlite_master \
         WHERE type = 'index' AND name = 'ux_messages_client_msg_id'"
    } else {
        "SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'ux_messages_client_msg_id'"
    };
    let count: i64 = query_value(db, query, Vec::new()).await;
    count == 1
}

/// How many migrations come after the first `applied`.
fn migrations_after(applied: usize) -> u32 {
    u32::try_from(Migrator::migrations().len() - applied).unwrap()
}

#[tokio::test]
async fn sqlite_leaves_retries_to_its_writer_and_postgresql_keeps_the_client_msg_id_index() {
    let (_dir, db) = empty_database().await;
    let sqlite = db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite;
    Migrator::up(&db, Some(10)).await.unwrap();
    assert!(stores(&db, sqlite, 1, "first", "m-1").await);
    assert!(has_client_msg_id_index(&db, sqlite).await);

    Migrator::up(&db, None).await.unwrap();

    assert_eq!(
        has_client_msg_id_index(&db, sqlite).await,
        !sqlite,
        "dropped on SQLite only"
    );
    assert_eq!(
        stores(&db, sqlite, 2, "same client id", "m-1").await,
        sqlite,
        "on SQLite the writer, not the table, refuses a reused client_msg_id"
    );
    assert!(
        !stores(&db, sqlite, 1, "same seq", "m-9").await,
        "(consultation, seq) is still unique"
    );
    if sqlite {
        db.execute_unprepared("DELETE FROM messages WHERE seq = 2")
            .await
            .unwrap();
        // Back to the tenth migration: the eleventh's `down` runs last.
        Migrator::down(&db, Some(migrations_after(10)))
            .await
            .unwrap();
        assert!(
            has_client_msg_id_index(&db, sqlite).await,
            "down builds it again"
        );
        assert!(!stores(&db, sqlite, 2, "same client id", "m-1").await);
        Migrator::up(&db, None).await.unwrap();
        assert!(!has_client_msg_id_index(&db, sqlite).await);
    }
}

/// True when the receipt flush function exists.
async fn has_receipt_flush_function(db: &sea_orm::DatabaseConnection) -> bool {
    let count: i64 = query_value(
        db,
        "SELECT count(*) AS n FROM pg_proc WHERE proname = 'consult_record_receipts'",
        Vec::new(),
    )
    .await;
    count == 1
}

#[tokio::test]
async fn postgresql_gets_the_receipt_flush_function_and_down_drops_it() {
    let (_dir, db) = empty_database().await;
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        // SQLite writes receipts without it; the migration is a no-op there
        // (run by every other test of this file).
        return;
    }
    Migrator::up(&db, Some(11)).await.unwrap();
    assert!(!has_receipt_flush_function(&db).await);
    Migrator::up(&db, None).await.unwrap();
    assert!(has_receipt_flush_function(&db).await);
    for statement in [
        "INSERT INTO clinics (id, name, created_at) VALUES ('riverside', 'Riverside', now())",
        "INSERT INTO consultations (id, clinic_id, provider_id, patient_id, status, scheduled_at, \
           created_at, updated_at, last_seq, rev, staff_messaged_first) \
         VALUES ('c-1', 'riverside', 'dr-a', 'pat-a', 'waiting_for_patient', now(), now(), now(), \
           9, 0, FALSE)",
    ] {
        db.execute_unprepared(statement).await.unwrap();
    }
    // A provider's read and a later delivered in one flush, the patient's
    // delivered beside them: each moves, the read bumps `rev` once.
    let flush = r#"[
        {"consultation_id": "c-1", "user_id": "dr-a", "delivered": 7, "read": 5, "bumps_rev": true},
        {"consultation_id": "c-1", "user_id": "pat-a", "delivered": 9, "read": 0, "bumps_rev": false}
    ]"#;
    let moved = |db: sea_orm::DatabaseConnection| async move {
        let mut rows: Vec<(String, String)> = db
            .query_all(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!(
                    "SELECT moved_user_id, moved_kind \
                     FROM consult_record_receipts('{flush}'::jsonb, now())"
                ),
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|row| {
                (
                    row.try_get("", "moved_user_id").unwrap(),
                    row.try_get("", "moved_kind").unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        moved(db.clone()).await,
        [
            ("dr-a".to_owned(), "delivered".to_owned()),
            ("dr-a".to_owned(), "read".to_owned()),
            ("pat-a".to_owned(), "delivered".to_owned()),
        ]
    );
    // The same flush again moves nothing, and bumps nothing.
    assert!(moved(db.clone()).await.is_empty());
    let row = db
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT c.rev, r.delivered_seq, r.read_seq FROM consultations c \
             JOIN receipts r ON r.consultation_id = c.id AND r.user_id = 'dr-a'",
        ))
        .await
        .unwrap()
        .unwrap();
    let positions: (i64, i64, i64) = (
        row.try_get("", "rev").unwrap(),
        row.try_get("", "delivered_seq").unwrap(),
        row.try_get("", "read_seq").unwrap(),
    );
    assert_eq!(positions, (1, 7, 5));

    Migrator::down(&db, Some(migrations_after(11)))
        .await
        .unwrap();
    assert!(!has_receipt_flush_function(&db).await);
}
