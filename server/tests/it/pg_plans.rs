//! The plans PostgreSQL chooses for the hub's statements that find a batch
//! of consultations by id: through the primary key, even in a table small
//! enough that the planner would rather read it whole (a new deployment's,
//! a load test's). Generic plans, as a connection's prepared statement gets
//! after its first executions.

use crate::harness::db::{TestDb, backend};
use consult_hub::store::dashboard_rows::dashboard_entries_sql;
use consult_hub::store::migration::Migrator;
use consult_hub::store::pg_batch_append;
use sea_orm::{
    ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, Statement,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde_json::{Value, json};

/// Consultations in the table: 1,000 rows fill about 25 pages, which the
/// planner costs below ten index probes.
const CONSULTATIONS: i64 = 1_000;

/// A migrated database holding [`CONSULTATIONS`] consultations with
/// statistics taken, and the ids of six of them.
async fn small_table() -> (tempfile::TempDir, DatabaseConnection, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&TestDb::create(dir.path()).await.url)
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();
    db.execute(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "INSERT INTO consultations (id, clinic_id, provider_id, patient_id, status, \
           scheduled_at, staff_messaged_first, last_seq, rev, created_at, updated_at) \
         SELECT gen_random_uuid()::text, 'clinic-1', 'dr-' || g, 'pat-' || g, \
           'waiting_for_patient', now(), FALSE, 0, 0, now(), now() \
         FROM generate_series(1, $1::bigint) g",
        [CONSULTATIONS.into()],
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE consultations")
        .await
        .unwrap();
    let ids = db
        .query_all(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT id FROM consultations ORDER BY random() LIMIT 6",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "id").unwrap())
        .collect();
    (dir, db, ids)
}

/// The generic plan of `sql` prepared with `types` and executed with
/// `arguments` (SQL literals), as JSON; nothing is executed.
async fn generic_plan(
    transaction: &DatabaseTransaction,
    sql: &str,
    types: &str,
    arguments: &str,
) -> Value {
    for setup in [
        "SET LOCAL plan_cache_mode = force_generic_plan".to_owned(),
        format!("PREPARE keyed_list ({types}) AS {sql}"),
    ] {
        transaction.execute_unprepared(&setup).await.unwrap();
    }
    let row = transaction
        .query_one(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("EXPLAIN (FORMAT JSON) EXECUTE keyed_list ({arguments})"),
        ))
        .await
        .unwrap()
        .unwrap();
    transaction
        .execute_unprepared("DEALLOCATE keyed_list")
        .await
        .unwrap();
    row.try_get_by_index::<Value>(0).unwrap()
}

/// Every plan node of `plan` that reads `consultations`: its node type and
/// index name (if any).
fn consultation_scans(plan: &Value, found: &mut Vec<(String, Option<String>)>) {
    match plan {
        Value::Object(node) => {
            if node.get("Relation Name").and_then(Value::as_str) == Some("consultations")
                && let Some(kind) = node.get("Node Type").and_then(Value::as_str)
                && kind != "ModifyTable"
            {
                let index = node.get("Index Name").and_then(Value::as_str);
                found.push((kind.to_owned(), index.map(str::to_owned)));
            }
            node.values()
                .for_each(|value| consultation_scans(value, found));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| consultation_scans(item, found)),
        _ => {}
    }
}

/// Asserts that `plan` reads `consultations` only through its primary key.
fn reads_consultations_by_key(plan: &Value, what: &str) {
    let mut scans = Vec::new();
    consultation_scans(plan, &mut scans);
    assert!(
        !scans.is_empty(),
        "{what}: no scan of consultations in {plan}"
    );
    for (kind, index) in &scans {
        assert!(
            kind != "Seq Scan"
                && index
                    .as_deref()
                    .is_none_or(|name| name == "consultations_pkey"),
            "{what}: consultations read by {kind} {index:?}: {plan}"
        );
    }
}

/// A batch of one message to each of `ids`, as the writer sends it.
fn batch_of(ids: &[String]) -> String {
    let rows: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(ord, id)| {
            json!({
                "ord": ord, "consultation_id": id, "sender_id": format!("dr-{ord}"),
                "sender_role": "provider", "kind": "chat", "body": "hello",
                "client_msg_id": format!("k-{ord}"),
            })
        })
        .collect();
    Value::Array(rows).to_string()
}

#[tokio::test]
async fn a_message_batch_finds_its_consultations_by_primary_key_in_a_small_table() {
    if backend() != "postgres" {
        return;
    }
    let (_dir, db, ids) = small_table().await;
    let arguments = format!("'{}'::jsonb, now()", batch_of(&ids));
    for checked in [false, true] {
        let transaction = db.begin().await.unwrap();
        let plan = generic_plan(
            &transaction,
            pg_batch_append::statement_sql(checked),
            "jsonb, timestamptz",
            &arguments,
        )
        .await;
        transaction.rollback().await.unwrap();
        reads_consultations_by_key(&plan, &format!("batch append (checked: {checked})"));
    }
}

#[tokio::test]
async fn dashboard_rows_are_read_by_primary_key_in_a_small_table() {
    if backend() != "postgres" {
        return;
    }
    let (_dir, db, ids) = small_table().await;
    let transaction = db.begin().await.unwrap();
    let plan = generic_plan(
        &transaction,
        dashboard_entries_sql(DatabaseBackend::Postgres),
        "jsonb",
        &format!(
            "'{}'::jsonb",
            json!(ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>())
        ),
    )
    .await;
    transaction.rollback().await.unwrap();
    reads_consultations_by_key(&plan, "dashboard rows");
}
