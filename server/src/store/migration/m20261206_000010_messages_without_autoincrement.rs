//! On SQLite, `messages.id` stops being `AUTOINCREMENT`: a plain
//! `INTEGER PRIMARY KEY` (the rowid) takes the next id after the highest
//! one. `AUTOINCREMENT` read `sqlite_sequence` at the start of every insert
//! and wrote it back at the end, a table scan and a B-tree write for every
//! stored message, to promise that an id is never reused after the newest
//! row is deleted. Nothing needs that promise: a message's id is internal,
//! never sent to a client, never compared or ordered on (messages are found
//! and ordered by consultation and `seq`).
//!
//! SQLite cannot drop `AUTOINCREMENT` from a table, so the table is built
//! again: a new table with the same columns, every row copied with its id,
//! the old table dropped, the new one renamed and its two unique indexes
//! created with their names. One transaction of its own (SQLite migrations
//! run outside one); a table that already has no `AUTOINCREMENT` (the
//! rebuild committed but the migration was not recorded) is left as it is.
//! The copy takes time and disk space in proportion to the stored messages,
//! once (docs/operations.md, "Upgrading a SQLite file").
//!
//! PostgreSQL's ids come from a sequence with no such cost: nothing changes
//! there.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseBackend, Statement, TransactionTrait, Value,
};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

const COLUMNS: &str =
    "id, consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, created_at";

/// The columns after `id`, as migration 1 created them.
const COLUMN_DEFINITIONS: &str = "\"consultation_id\" varchar(128) NOT NULL, \
     \"seq\" bigint NOT NULL, \
     \"sender_id\" varchar(128) NOT NULL, \
     \"sender_role\" varchar(16) NOT NULL, \
     \"kind\" varchar(16) NOT NULL, \
     \"body\" text NOT NULL, \
     \"client_msg_id\" varchar(128) NULL, \
     \"created_at\" timestamp_with_timezone_text NOT NULL";

/// The key as `up` leaves it, and as migration 1 declared it.
const PLAIN_KEY: &str = "integer NOT NULL PRIMARY KEY";
const AUTOINCREMENT_KEY: &str = "integer NOT NULL PRIMARY KEY AUTOINCREMENT";

const INDEXES: [&str; 2] = [
    "CREATE UNIQUE INDEX \"ux_messages_consultation_seq\" \
     ON \"messages\" (\"consultation_id\", \"seq\")",
    "CREATE UNIQUE INDEX \"ux_messages_client_msg_id\" \
     ON \"messages\" (\"consultation_id\", \"sender_id\", \"client_msg_id\")",
];

/// True when `messages` is declared with `AUTOINCREMENT`.
async fn autoincrement(connection: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = connection
        .query_one(Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            [Value::from("messages")],
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no messages table".to_owned()))?;
    let sql: String = row.try_get("", "sql")?;
    Ok(sql.to_ascii_uppercase().contains("AUTOINCREMENT"))
}

/// Copies `messages` into a new table `from` whose `id` is declared `key`
/// and puts it in the old one's place, with its indexes, in one
/// transaction.
async fn rebuild(manager: &SchemaManager<'_>, key: &str, from: &str) -> Result<(), DbErr> {
    let txn = manager.get_connection().begin().await?;
    let statements = [
        format!("CREATE TABLE \"{from}\" ( \"id\" {key}, {COLUMN_DEFINITIONS} )"),
        format!("INSERT INTO \"{from}\" ({COLUMNS}) SELECT {COLUMNS} FROM \"messages\""),
        "DROP TABLE \"messages\"".to_owned(),
        format!("ALTER TABLE \"{from}\" RENAME TO \"messages\""),
    ];
    for statement in statements.iter().map(String::as_str).chain(INDEXES) {
        txn.execute_unprepared(statement).await?;
    }
    txn.commit().await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite
            || !autoincrement(manager.get_connection()).await?
        {
            return Ok(());
        }
        // Dropping the old table also drops its row of `sqlite_sequence`.
        rebuild(manager, PLAIN_KEY, "messages_plain").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite
            || autoincrement(manager.get_connection()).await?
        {
            return Ok(());
        }
        rebuild(manager, AUTOINCREMENT_KEY, "messages_counted").await
    }
}
