//! On PostgreSQL, a function that writes a receipt flush in one call:
//! `consult_record_receipts(flush jsonb, stamped timestamptz)` takes the
//! flush's positions as one JSON array of `{consultation_id, user_id,
//! delivered, read, bumps_rev}` (a position of 0 is not written) and runs,
//! in the caller's statement, the upserts the pool's flush ran as separate
//! statements in a transaction of its own: each `delivered` changes a row
//! only where it grows, then each `read` (raising `delivered` to it), both in
//! key order so that two nodes lock rows in the same order; a provider's
//! read that moved bumps its consultation's `rev` once. It returns one row
//! per position that moved (`moved_consultation_id`, `moved_user_id`,
//! `moved_kind`: `delivered` or `read`).
//!
//! The two upserts stay two statements (the second sees the first's rows,
//! which one statement's data-modifying CTEs could not), but the flush is
//! one round trip and one statement's implicit transaction instead of a
//! `BEGIN`, two or three statements whose text changed with the flush's
//! size, and a `COMMIT` (`store::pg_receipts`).
//!
//! SQLite writes receipts on the message writer's connection, or through
//! the pool in its own transaction: nothing changes there.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// The flush's rows, as each of the function's two statements reads them.
const INPUT: &str = "WITH input AS (\
       SELECT * FROM jsonb_to_recordset(flush) AS i(consultation_id text, user_id text, \
         delivered bigint, read bigint, bumps_rev boolean))";

/// An upsert of one position of `input`'s rows where it is above 0, in key
/// order, changing a stored row only `WHERE` the condition holds.
fn upsert(position: &str, read_seq: &str, set: &str, condition: &str) -> String {
    format!(
        "INSERT INTO receipts AS r (consultation_id, user_id, delivered_seq, read_seq, \
           updated_at) \
         SELECT i.consultation_id, i.user_id, i.{position}, {read_seq}, stamped FROM input i \
         WHERE i.{position} > 0 ORDER BY i.consultation_id, i.user_id \
         ON CONFLICT (consultation_id, user_id) DO UPDATE \
           SET {set}, updated_at = excluded.updated_at \
           WHERE {condition} \
         RETURNING r.consultation_id, r.user_id"
    )
}

fn create_sql() -> String {
    let delivered = upsert(
        "delivered",
        "0",
        "delivered_seq = excluded.delivered_seq",
        "r.delivered_seq < excluded.delivered_seq",
    );
    let read = upsert(
        "read",
        "i.read",
        "read_seq = excluded.read_seq, \
           delivered_seq = GREATEST(r.delivered_seq, excluded.delivered_seq)",
        "r.read_seq < excluded.read_seq",
    );
    format!(
        "CREATE OR REPLACE FUNCTION consult_record_receipts(flush jsonb, stamped timestamptz) \
         RETURNS TABLE (moved_consultation_id text, moved_user_id text, moved_kind text) \
         LANGUAGE plpgsql AS $fn$ \
         BEGIN \
           RETURN QUERY {INPUT}, moved AS ({delivered}) \
             SELECT m.consultation_id::text, m.user_id::text, 'delivered'::text FROM moved m; \
           RETURN QUERY {INPUT}, moved AS ({read}), \
             bumped AS (\
               UPDATE consultations c SET rev = c.rev + 1 \
               FROM (SELECT DISTINCT m.consultation_id FROM moved m JOIN input i \
                       ON i.consultation_id = m.consultation_id AND i.user_id = m.user_id \
                     WHERE i.bumps_rev) b \
               WHERE c.id = b.consultation_id \
               RETURNING 1) \
             SELECT m.consultation_id::text, m.user_id::text, 'read'::text FROM moved m; \
         END \
         $fn$"
    )
}

const DROP: &str = "DROP FUNCTION IF EXISTS consult_record_receipts(jsonb, timestamptz)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&create_sql())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(DROP).await?;
        Ok(())
    }
}
