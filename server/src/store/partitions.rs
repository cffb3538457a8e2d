//! The monthly partitions of `messages` on PostgreSQL: which exist, creating
//! the ones due, moving rows out of the `DEFAULT` partition, and keeping the
//! partitions' statistics fresh as they fill.
//!
//! `messages` is partitioned by range of `consultation_month`, the first day
//! of the UTC month its consultation was created in (migration
//! `m20261205_000009_message_partitions`). A month's partition is
//! `messages_pYYYY_MM`. [`maintain`] makes sure the current month and the
//! next `ahead` months have one, and gives a partition to every month found
//! in `messages_default`, moving those rows into it; the default partition
//! only catches inserts for a month nobody created yet (a consultation
//! created before the hub's first start in a month, a clock far off), so an
//! insert never fails.
//!
//! Several nodes may run this at once: each month is created in a
//! transaction holding one advisory lock, and a concurrent `CREATE` by
//! someone else (duplicate table, or the catalog's unique index) counts as
//! done. SQLite has no partitioning; nothing here runs there.

use super::StoreError;
use chrono::{Datelike, Months, NaiveDate};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, RuntimeErr, Statement,
    TransactionTrait, Value,
};

/// The advisory lock key that serializes partition changes across nodes
/// (an arbitrary constant, used for nothing else).
const LOCK_KEY: i64 = 0x0c0f_5a17_9a27;

/// What one [`maintain`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Partitions created by this pass.
    pub created: Vec<String>,
    /// Rows moved out of the default partition.
    pub moved: u64,
    /// Rows left in the default partition afterwards.
    pub default_rows: u64,
}

/// The partition of `month` (any day of it): `messages_pYYYY_MM`.
pub fn partition_name(month: NaiveDate) -> String {
    format!("messages_p{:04}_{:02}", month.year(), month.month())
}

fn first_day(day: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day)
}

fn next_month(month: NaiveDate) -> Result<NaiveDate, StoreError> {
    month
        .checked_add_months(Months::new(1))
        .ok_or_else(|| StoreError::Corrupt(format!("no month after {month}")))
}

fn statement(sql: impl Into<String>, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}

/// The SQLSTATE of a database error, if it carries one.
fn sqlstate(error: &DbErr) -> Option<String> {
    let runtime = match error {
        DbErr::Exec(runtime) | DbErr::Query(runtime) | DbErr::Conn(runtime) => runtime,
        _ => return None,
    };
    match runtime {
        RuntimeErr::SqlxError(error) => error
            .as_database_error()
            .and_then(|error| error.code())
            .map(|code| code.into_owned()),
        RuntimeErr::Internal(_) => None,
    }
}

/// The partitions of `messages` (the default one included), by name.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<String>, StoreError> {
    let rows = db
        .query_all(statement(
            "SELECT c.relname AS name FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'messages'::regclass ORDER BY c.relname",
            Vec::new(),
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get("", "name").map_err(StoreError::from))
        .collect()
}

/// Rows in the default partition.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn default_rows(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    let row = db
        .query_one(statement(
            "SELECT count(*) AS n FROM messages_default",
            Vec::new(),
        ))
        .await?;
    let count: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(super::to_u64(count))
}

/// Makes sure the month of `today` and the `ahead` months after it have a
/// partition, and every month with rows in the default partition too (the
/// rows moved into it). Idempotent; safe on several nodes at once. Does
/// nothing on SQLite.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn maintain(
    db: &DatabaseConnection,
    today: NaiveDate,
    ahead: u32,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(report);
    }
    let mut months = std::collections::BTreeSet::new();
    let mut month = first_day(today);
    for _ in 0..=ahead {
        months.insert(month);
        month = next_month(month)?;
    }
    for row in db
        .query_all(statement(
            "SELECT DISTINCT consultation_month AS month FROM messages_default",
            Vec::new(),
        ))
        .await?
    {
        months.insert(first_day(row.try_get("", "month")?));
    }
    for month in months {
        if let Some(moved) = ensure_month(db, month).await? {
            report.created.push(partition_name(month));
            report.moved += moved;
        }
    }
    report.default_rows = default_rows(db).await?;
    Ok(report)
}

/// Creates the partition of `month` unless it exists, moving the month's
/// rows out of the default partition into it. `Some(rows moved)` when this
/// call created it.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn ensure_month(
    db: &DatabaseConnection,
    month: NaiveDate,
) -> Result<Option<u64>, StoreError> {
    let month = first_day(month);
    let name = partition_name(month);
    match create(db, month, &name).await {
        Ok(outcome) => Ok(outcome),
        // Created meanwhile by someone not holding the lock (an operator,
        // an older hub): what was wanted exists.
        Err(StoreError::Db(error))
            if matches!(sqlstate(&error).as_deref(), Some("42P07" | "23505")) =>
        {
            tracing::debug!(partition = %name, "partition created concurrently");
            if attached(db, &name).await? {
                Ok(None)
            } else {
                Err(StoreError::Db(error))
            }
        }
        Err(error) => Err(error),
    }
}

async fn attached(db: &impl ConnectionTrait, name: &str) -> Result<bool, StoreError> {
    Ok(db
        .query_one(statement(
            "SELECT 1 AS found FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'messages'::regclass AND c.relname = $1",
            vec![name.into()],
        ))
        .await?
        .is_some())
}

async fn create(
    db: &DatabaseConnection,
    month: NaiveDate,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    let end = next_month(month)?;
    let txn = db.begin().await?;
    txn.execute(statement(
        "SELECT pg_advisory_xact_lock($1)",
        vec![LOCK_KEY.into()],
    ))
    .await?;
    if attached(&txn, name).await? {
        txn.commit().await?;
        return Ok(None);
    }
    let waiting: i64 = txn
        .query_one(statement(
            "SELECT count(*) AS n FROM messages_default \
             WHERE consultation_month >= $1 AND consultation_month < $2",
            vec![month.into(), end.into()],
        ))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    // `name` and the bounds are built from dates here, never from input.
    let bounds = format!("FOR VALUES FROM ('{month}') TO ('{end}')");
    if waiting == 0 {
        // Without `IF NOT EXISTS`: one created meanwhile outside the lock
        // is reported (42P07) and counted as done by the caller.
        txn.execute_unprepared(&format!(
            "CREATE TABLE {name} PARTITION OF messages {bounds}"
        ))
        .await?;
    } else {
        // Attaching a partition while the default one holds rows of its
        // range is refused: build it beside the table, move the rows, attach.
        txn.execute_unprepared(&format!(
            "CREATE TABLE {name} (LIKE messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ))
        .await?;
        txn.execute(statement(
            format!(
                "WITH moved AS (DELETE FROM messages_default \
                   WHERE consultation_month >= $1 AND consultation_month < $2 RETURNING *) \
                 INSERT INTO {name} SELECT * FROM moved"
            ),
            vec![month.into(), end.into()],
        ))
        .await?;
        txn.execute_unprepared(&format!(
            "ALTER TABLE messages ATTACH PARTITION {name} {bounds}"
        ))
        .await?;
    }
    if !attached(&txn, name).await? {
        return Err(StoreError::Corrupt(format!(
            "table {name} exists but is not a partition of messages"
        )));
    }
    txn.commit().await?;
    tracing::info!(partition = %name, moved = waiting, "message partition created");
    Ok(Some(super::to_u64(waiting)))
}

/// The advisory lock key that lets one node at a time refresh the
/// partitions' statistics (an arbitrary constant, used for nothing else).
const ANALYZE_LOCK_KEY: i64 = 0x0c0f_5a17_a4a1;

/// The statistics target of [`refresh_statistics`]'s analyzes (a sample of
/// 300 times as many rows, 3,000): enough for the table's size and the
/// plans that follow it, at a tenth of the default target's cost. At the
/// default (30,000 rows) an analyze of a month's partition took about
/// 125–155 ms of one core, a stall of a node's deliveries on a busy
/// machine; autovacuum still analyzes at the server's own target.
pub const ANALYZE_STATISTICS_TARGET: u32 = 10;

/// A partition smaller than this many pages is never analyzed by
/// [`refresh_statistics`]: any plan scans it cheaply.
pub const ANALYZE_MIN_PAGES: i64 = 32;

/// The partitions of `messages` whose statistics are due, with their size in
/// pages: at least [`ANALYZE_MIN_PAGES`] and at least twice the size their
/// statistics were taken at (`pg_class.relpages`, 0 until the first
/// `ANALYZE` or `VACUUM`).
async fn due_for_analyze(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = db
        .query_all(statement(
            "SELECT quote_ident(c.relname) AS name, \
               (pg_relation_size(c.oid) / current_setting('block_size')::bigint) AS pages, \
               c.relpages::bigint AS known \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'messages'::regclass ORDER BY c.relname",
            Vec::new(),
        ))
        .await?;
    let mut due = Vec::new();
    for row in rows {
        let name: String = row.try_get("", "name")?;
        let pages: i64 = row.try_get("", "pages")?;
        let known: i64 = row.try_get("", "known")?;
        if pages >= ANALYZE_MIN_PAGES && pages >= known.saturating_mul(2) {
            due.push((name, pages));
        }
    }
    Ok(due)
}

/// Analyzes every partition of `messages` that has at least doubled since
/// its statistics were taken (and holds at least [`ANALYZE_MIN_PAGES`]):
/// PostgreSQL keeps a statement's generic plan until the statistics of its
/// tables change, and a plan made while a month's partition was nearly
/// empty scans the whole partition per batch in the writers' look-up of
/// earlier sends once it has grown. Doubling bounds that waste to twice
/// what the plan was made for, with a logarithmic number of analyzes as a
/// month fills, each at [`ANALYZE_STATISTICS_TARGET`]. One node at a time:
/// a node that finds another analyzing
/// skips this round. Returns the partitions analyzed. Does nothing on
/// SQLite.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn refresh_statistics(db: &DatabaseConnection) -> Result<Vec<String>, StoreError> {
    if db.get_database_backend() != DatabaseBackend::Postgres
        || due_for_analyze(db).await?.is_empty()
    {
        return Ok(Vec::new());
    }
    let txn = db.begin().await?;
    let locked: bool = txn
        .query_one(statement(
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            vec![ANALYZE_LOCK_KEY.into()],
        ))
        .await?
        .map(|row| row.try_get("", "locked"))
        .transpose()?
        .unwrap_or(false);
    if !locked {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    // For this transaction's analyzes only.
    txn.execute_unprepared(&format!(
        "SET LOCAL default_statistics_target = {ANALYZE_STATISTICS_TARGET}"
    ))
    .await?;
    // Checked again under the lock: another node may just have analyzed.
    let mut analyzed = Vec::new();
    for (name, pages) in due_for_analyze(&txn).await? {
        // `name` is a partition's name as `quote_ident` spells it.
        txn.execute_unprepared(&format!("ANALYZE {name}")).await?;
        tracing::info!(partition = %name, pages, "message partition analyzed");
        analyzed.push(name);
    }
    txn.commit().await?;
    Ok(analyzed)
}
