//! A receipt flush on PostgreSQL in one round trip: the flush's positions
//! go as one JSON parameter to `consult_record_receipts` (created by the
//! migration `m20261207_000012_pg_receipt_flush`), which runs the upserts
//! and the provider's `rev` bump in the call's own implicit transaction and
//! returns the positions that moved. The statement's text never changes, so
//! the connection's prepared statement is reused, and there is no `BEGIN`
//! or `COMMIT` round trip.

use super::StoreError;
use super::receipt_batch::{ChangedPositions, ReceiptRow};
use super::to_i64;
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

const RECORD: &str = "SELECT moved_consultation_id, moved_user_id, moved_kind \
     FROM consult_record_receipts($1::jsonb, $2)";

/// Writes `rows` (a `delivered` or `read` of 0 is not written); the keys
/// whose positions grew.
///
/// # Errors
///
/// [`StoreError::Db`] when the call fails; nothing of the flush is then
/// written.
pub async fn write(
    db: &impl ConnectionTrait,
    rows: &[ReceiptRow],
) -> Result<ChangedPositions, StoreError> {
    let flush: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "consultation_id": row.consultation_id,
                "user_id": row.user_id,
                "delivered": to_i64(row.delivered),
                "read": to_i64(row.read),
                "bumps_rev": row.bumps_rev,
            })
        })
        .collect();
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        RECORD,
        [
            Value::Json(Some(Box::new(serde_json::Value::Array(flush)))),
            Value::ChronoDateTimeUtc(Some(Box::new(Utc::now()))),
        ],
    );
    let mut changed = ChangedPositions::default();
    for row in db.query_all(statement).await? {
        let consultation: String = row.try_get("", "moved_consultation_id")?;
        let user: String = row.try_get("", "moved_user_id")?;
        let kind: String = row.try_get("", "moved_kind")?;
        let positions = match kind.as_str() {
            "delivered" => &mut changed.delivered,
            "read" => &mut changed.read,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "receipt flush moved a position of kind {other}"
                )));
            }
        };
        positions.insert((consultation, user));
    }
    Ok(changed)
}
