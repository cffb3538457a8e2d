//! On SQLite, `messages` loses its unique index on `(consultation_id,
//! sender_id, client_msg_id)`: the message writer answers "has this sender
//! used this `client_msg_id` in this consultation?" from its own memo of
//! each consultation's keys (`store::sqlite_writer::sent_keys`), and the pool
//! writer (in-memory SQLite) looks the key up inside its write lock before
//! it inserts, as it always did. The index cost the writer a leaf page or
//! more of every message's log (client-chosen ids land anywhere in their
//! consultation's range, so its leaves split often): 12 % of what storing
//! a message costs (docs/benchmarks.md, "The stored floor with the hub's
//! room ids").
//!
//! Dropping an index is immediate and leaves its pages free until `VACUUM`;
//! `down` builds it again. PostgreSQL keeps its index (its writers are
//! several connections that only the index keeps from storing a retry
//! twice): nothing changes there.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS \"ux_messages_client_msg_id\"")
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS \"ux_messages_client_msg_id\" \
                 ON \"messages\" (\"consultation_id\", \"sender_id\", \"client_msg_id\")",
            )
            .await
            .map(drop)
    }
}
