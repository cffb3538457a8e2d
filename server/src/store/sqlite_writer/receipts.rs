//! A receipt flush written on the writer's own SQLite connection, in the
//! transaction of the message batch it was taken with: the same upserts as
//! the pool's flush (`receipt_batch`), one cached statement per position. A stored position changes only
//! where it grows (a read also raises `delivered` to it), `RETURNING` says
//! which did, and a provider's read that moved bumps the consultation's
//! `rev` in the same transaction.

use super::super::StoreError;
use super::super::receipt_batch::{ChangedPositions, ReceiptRow};
use super::super::to_i64;
use rusqlite::{OptionalExtension, Transaction, params};

const UPSERT_DELIVERED: &str = "INSERT INTO receipts \
     (consultation_id, user_id, delivered_seq, read_seq, updated_at) VALUES (?1, ?2, ?3, 0, ?4) \
     ON CONFLICT (consultation_id, user_id) DO UPDATE SET \
       delivered_seq = excluded.delivered_seq, updated_at = excluded.updated_at \
     WHERE receipts.delivered_seq < excluded.delivered_seq \
     RETURNING 1";

const UPSERT_READ: &str = "INSERT INTO receipts \
     (consultation_id, user_id, delivered_seq, read_seq, updated_at) VALUES (?1, ?2, ?3, ?3, ?4) \
     ON CONFLICT (consultation_id, user_id) DO UPDATE SET \
       read_seq = excluded.read_seq, \
       delivered_seq = MAX(receipts.delivered_seq, excluded.delivered_seq), \
       updated_at = excluded.updated_at \
     WHERE receipts.read_seq < excluded.read_seq \
     RETURNING 1";

const BUMP_REV: &str = "UPDATE consultations SET rev = rev + 1 WHERE id = ?1";

/// Writes `rows` (a `delivered` or `read` of 0 is not written) inside
/// `txn`, stamped `now`; the keys whose positions grew.
pub(super) fn write(
    txn: &Transaction<'_>,
    rows: &[ReceiptRow],
    now: &str,
) -> Result<ChangedPositions, StoreError> {
    let mut changed = ChangedPositions::default();
    for row in rows.iter().filter(|row| row.delivered > 0) {
        if upsert(txn, UPSERT_DELIVERED, row, row.delivered, now)? {
            changed.delivered.insert(key(row));
        }
    }
    for row in rows.iter().filter(|row| row.read > 0) {
        if upsert(txn, UPSERT_READ, row, row.read, now)? {
            changed.read.insert(key(row));
            if row.bumps_rev {
                txn.prepare_cached(BUMP_REV)?
                    .execute(params![row.consultation_id])?;
            }
        }
    }
    Ok(changed)
}

/// Runs one upsert; whether it inserted or changed the row.
fn upsert(
    txn: &Transaction<'_>,
    sql: &str,
    row: &ReceiptRow,
    seq: u64,
    now: &str,
) -> Result<bool, StoreError> {
    Ok(txn
        .prepare_cached(sql)?
        .query_row(
            params![row.consultation_id, row.user_id, to_i64(seq), now],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn key(row: &ReceiptRow) -> (String, String) {
    (row.consultation_id.clone(), row.user_id.clone())
}
