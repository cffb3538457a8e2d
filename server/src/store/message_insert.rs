//! The `INSERT` of new message rows, shared by the pool's writers
//! ([`messages::append`](super::messages::append) and
//! [`batch_append`](super::batch_append)). On PostgreSQL it also fills
//! `consultation_month`, the partition key (see
//! [`partitions`](super::partitions)): the month the message's consultation
//! was created in, which the writers read from the consultation row they
//! update anyway. SQLite's `messages` has no such column.

use super::StoreError;
use super::entities::message;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::sea_query::{Alias, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};

/// One message row to insert.
#[derive(Debug, Clone)]
pub(super) struct MessageRow {
    pub(super) consultation_id: String,
    pub(super) seq: i64,
    pub(super) sender_id: String,
    pub(super) sender_role: String,
    pub(super) kind: String,
    pub(super) body: String,
    pub(super) client_msg_id: Option<String>,
    pub(super) created_at: DateTime<Utc>,
    /// The first day of the UTC month the consultation was created in
    /// (used on PostgreSQL only).
    pub(super) consultation_month: NaiveDate,
}

/// The first day of the UTC month of `at`: the partition key of the
/// messages of a consultation created at `at`.
pub(crate) fn month_of(at: DateTime<Utc>) -> NaiveDate {
    let day = at.date_naive();
    // Day 1 of an existing date's month always exists.
    NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day)
}

/// Inserts `rows` in one statement.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub(super) async fn insert(
    db: &impl ConnectionTrait,
    rows: &[MessageRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let postgres = backend == DatabaseBackend::Postgres;
    let mut columns: Vec<Alias> = [
        "consultation_id",
        "seq",
        "sender_id",
        "sender_role",
        "kind",
        "body",
        "client_msg_id",
        "created_at",
    ]
    .into_iter()
    .map(Alias::new)
    .collect();
    if postgres {
        columns.push(Alias::new("consultation_month"));
    }
    let mut insert = Query::insert();
    insert.into_table(message::Entity).columns(columns);
    for row in rows {
        let mut values: Vec<SimpleExpr> = vec![
            row.consultation_id.clone().into(),
            row.seq.into(),
            row.sender_id.clone().into(),
            row.sender_role.clone().into(),
            row.kind.clone().into(),
            row.body.clone().into(),
            row.client_msg_id.clone().into(),
            row.created_at.into(),
        ];
        if postgres {
            values.push(row.consultation_month.into());
        }
        insert
            .values(values)
            .map_err(|error| DbErr::Custom(format!("messages insert: {error}")))?;
    }
    db.execute(backend.build(&insert)).await?;
    Ok(())
}
