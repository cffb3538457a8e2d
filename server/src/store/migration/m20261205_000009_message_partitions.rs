//! On PostgreSQL, `messages` becomes a table partitioned by range of
//! `consultation_month`: the first day of the UTC month in which the
//! message's consultation was created. Every message of a consultation lands
//! in one partition, so the unique indexes, extended with the partition key
//! as PostgreSQL requires, keep `(consultation_id, seq)` and
//! `(consultation_id, sender_id, client_msg_id)` exactly as unique as before.
//!
//! The existing table is renamed, the partitioned one created with the same
//! columns, the same id sequence and the same index names, a `DEFAULT`
//! partition and one partition per month found in the data (and the current
//! month and the three after it), the rows copied over with their
//! consultation's month (a message whose consultation is gone takes its own
//! month), and the old table dropped. All in the migration's transaction.
//! Partitions are named `messages_pYYYY_MM`; the hub creates later ones
//! itself (`store::partitions`).
//!
//! SQLite has no partitioning: nothing changes there.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use chrono::{Datelike, NaiveDate, Utc};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// Months of partitions created after the current one.
const AHEAD: u32 = 3;

const MONTH_OF_CONSULTATION: &str =
    "date_trunc('month', COALESCE(c.created_at, m.created_at) AT TIME ZONE 'UTC')::date";

fn next_month(month: NaiveDate) -> Option<NaiveDate> {
    let (year, month) = if month.month() == 12 {
        (month.year() + 1, 1)
    } else {
        (month.year(), month.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
}

async fn execute(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        for sql in [
            "ALTER TABLE messages RENAME TO messages_unpartitioned",
            "ALTER TABLE messages_unpartitioned \
               RENAME CONSTRAINT messages_pkey TO messages_unpartitioned_pkey",
            "ALTER INDEX ux_messages_consultation_seq RENAME TO ux_messages_unpartitioned_seq",
            "ALTER INDEX ux_messages_client_msg_id \
               RENAME TO ux_messages_unpartitioned_client_msg_id",
            "ALTER SEQUENCE messages_id_seq OWNED BY NONE",
            "CREATE TABLE messages (\
               id bigint NOT NULL DEFAULT nextval('messages_id_seq'::regclass), \
               consultation_id varchar(128) NOT NULL, \
               seq bigint NOT NULL, \
               sender_id varchar(128) NOT NULL, \
               sender_role varchar(16) NOT NULL, \
               kind varchar(16) NOT NULL, \
               body text NOT NULL, \
               client_msg_id varchar(128), \
               created_at timestamp with time zone NOT NULL, \
               consultation_month date NOT NULL, \
               CONSTRAINT messages_pkey PRIMARY KEY (id, consultation_month)\
             ) PARTITION BY RANGE (consultation_month)",
            "ALTER SEQUENCE messages_id_seq OWNED BY messages.id",
            "CREATE UNIQUE INDEX ux_messages_consultation_seq \
               ON messages (consultation_id, seq, consultation_month)",
            "CREATE UNIQUE INDEX ux_messages_client_msg_id \
               ON messages (consultation_id, sender_id, client_msg_id, consultation_month)",
            "CREATE TABLE messages_default PARTITION OF messages DEFAULT",
        ] {
            execute(manager, sql).await?;
        }
        let db = manager.get_connection();
        let found = db
            .query_all(Statement::from_string(
                DatabaseBackend::Postgres,
                format!(
                    "SELECT DISTINCT {MONTH_OF_CONSULTATION} AS month \
                     FROM messages_unpartitioned m \
                     LEFT JOIN consultations c ON c.id = m.consultation_id"
                ),
            ))
            .await?;
        let mut months = std::collections::BTreeSet::new();
        for row in found {
            months.insert(row.try_get::<NaiveDate>("", "month")?);
        }
        let today = Utc::now().date_naive();
        let mut month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
            .ok_or_else(|| DbErr::Custom("no current month".into()))?;
        for _ in 0..=AHEAD {
            months.insert(month);
            month = next_month(month).ok_or_else(|| DbErr::Custom("month overflow".into()))?;
        }
        for month in months {
            let end = next_month(month).ok_or_else(|| DbErr::Custom("month overflow".into()))?;
            execute(
                manager,
                &format!(
                    "CREATE TABLE messages_p{:04}_{:02} PARTITION OF messages \
                     FOR VALUES FROM ('{month}') TO ('{end}')",
                    month.year(),
                    month.month()
                ),
            )
            .await?;
        }
        execute(
            manager,
            &format!(
                "INSERT INTO messages (id, consultation_id, seq, sender_id, sender_role, kind, \
                   body, client_msg_id, created_at, consultation_month) \
                 SELECT m.id, m.consultation_id, m.seq, m.sender_id, m.sender_role, m.kind, \
                   m.body, m.client_msg_id, m.created_at, {MONTH_OF_CONSULTATION} \
                 FROM messages_unpartitioned m \
                 LEFT JOIN consultations c ON c.id = m.consultation_id"
            ),
        )
        .await?;
        execute(manager, "DROP TABLE messages_unpartitioned").await?;
        execute(manager, "ANALYZE messages").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        for sql in [
            "ALTER TABLE messages RENAME TO messages_partitioned",
            "ALTER TABLE messages_partitioned \
               RENAME CONSTRAINT messages_pkey TO messages_partitioned_pkey",
            "ALTER INDEX ux_messages_consultation_seq RENAME TO ux_messages_partitioned_seq",
            "ALTER INDEX ux_messages_client_msg_id RENAME TO ux_messages_partitioned_client_msg_id",
            "ALTER SEQUENCE messages_id_seq OWNED BY NONE",
            "CREATE TABLE messages (\
               id bigint NOT NULL DEFAULT nextval('messages_id_seq'::regclass) PRIMARY KEY, \
               consultation_id varchar(128) NOT NULL, \
               seq bigint NOT NULL, \
               sender_id varchar(128) NOT NULL, \
               sender_role varchar(16) NOT NULL, \
               kind varchar(16) NOT NULL, \
               body text NOT NULL, \
               client_msg_id varchar(128), \
               created_at timestamp with time zone NOT NULL)",
            "ALTER SEQUENCE messages_id_seq OWNED BY messages.id",
            "INSERT INTO messages (id, consultation_id, seq, sender_id, sender_role, kind, body, \
               client_msg_id, created_at) \
             SELECT id, consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, \
               created_at FROM messages_partitioned",
            "DROP TABLE messages_partitioned",
            "CREATE UNIQUE INDEX ux_messages_consultation_seq ON messages (consultation_id, seq)",
            "CREATE UNIQUE INDEX ux_messages_client_msg_id \
               ON messages (consultation_id, sender_id, client_msg_id)",
        ] {
            execute(manager, sql).await?;
        }
        Ok(())
    }
}
