//! Persistence through sea-orm, on SQLite (embedded default, WAL) or
//! PostgreSQL. The database is the source of truth for order and history.
//!
//! Repository functions are grouped by aggregate and take
//! `&impl ConnectionTrait`, so they run against the pool or inside a
//! transaction. Past this module's edge, rows are domain and protocol types.
//! The store knows nothing of sessions, rooms or the broker.

pub mod appender;
pub mod audit;
pub mod batch_append;
pub mod consultations;
pub mod contacts;
pub mod dashboard_rows;
mod entities;
pub mod inbound_sms;
mod message_insert;
pub mod messages;
pub mod migration;
pub mod outbox;
pub mod participants;
pub mod partitions;
pub mod pg_batch_append;
pub mod pg_keyed_list;
pub mod pg_pool;
pub mod pg_receipts;
pub mod policies;
pub mod receipt_batch;
pub mod receipts;
pub mod retention;
pub mod revocations;
pub mod sqlite_reads;
mod sqlite_rows;
pub mod sqlite_writer;
pub mod templates;
pub mod unread_memo;

use crate::config::{DatabaseConfig, SqliteSync};
use crate::domain::{Consultation, PersonKey};
use consult_protocol::{ClinicId, ConsultationId, UserId};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement,
};
use sea_orm_migration::MigratorTrait;
use sqlite_reads::SqliteReads;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A failure talking to the database, or a row that makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A stored value could not be read back (unknown status name...).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The SQLite message writer's own connection failed.
    #[error("sqlite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A store thread could not be started.
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    /// The SQLite database file could not be opened for the checkpoint
    /// thread's own syncs.
    #[error("cannot open the database file: {0}")]
    DatabaseFile(std::io::Error),
    /// The group-commit writer is gone (shutting down).
    #[error("message writer stopped")]
    WriterStopped,
    /// The receipt batcher is gone (shutting down), or failed with the
    /// receipt in hand.
    #[error("receipt batcher stopped")]
    ReceiptsStopped,
}

/// A handle on the database pool, and on a SQLite file's inline reads.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    reads: Option<Arc<SqliteReads>>,
}

/// The pool's options: `max` connections at most, at least one kept open,
/// SQLite files in WAL mode with `synchronous` as
/// `database.sqlite_synchronous` says.
fn pool_options(config: &DatabaseConfig, max: u32) -> ConnectOptions {
    let synchronous = match config.sqlite_synchronous {
        SqliteSync::Full => SqliteSynchronous::Full,
        SqliteSync::Normal => SqliteSynchronous::Normal,
    };
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // A SQLite connection is a file handle, not a socket that can go
        // stale: pinging it on every acquire only costs a thread hop.
        // PostgreSQL's pool pings only idle connections (`pg_pool`).
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    options
}

/// Puts [`consult_sqlite_pcache`]'s guard in front of SQLite's page cache
/// and makes [`consult_sqlite_wal_frames`]'s shim SQLite's default VFS,
/// unless SQLite is already in use (the binary does this first thing; this
/// covers a store opened by a library user). Without the guard, nearly every
/// write transaction of the message writer ended in a scan of its whole
/// cache; without the shim, each page it commits costs two `pwrite` calls
/// instead of the transaction one.
pub fn prepare_sqlite() {
    if let Err(error) = consult_sqlite_pcache::install() {
        tracing::warn!(error = %error, "SQLite page cache left unguarded");
    }
    if let Err(error) = consult_sqlite_wal_frames::install() {
        tracing::warn!(error = %error, "SQLite log frames written one by one");
    }
}

impl Store {
    /// Opens the pool. SQLite files are created if missing and put in WAL
    /// mode with `synchronous` as `database.sqlite_synchronous` says
    /// (`FULL` by default).
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when the database cannot be reached.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let options = pool_options(config, config.max_connections);
        let db = if config.url.starts_with("sqlite:") {
            prepare_sqlite();
            Database::connect(options).await?
        } else {
            pg_pool::connect(&options).await?
        };
        let mut store = Self { db, reads: None };
        store.reads = store
            .sqlite_file()
            .await?
            .map(|path| Arc::new(SqliteReads::new(&path)));
        Ok(store)
    }

    /// A PostgreSQL connection of the message writer's own (a pool of one,
    /// kept open), or `None` on SQLite. The writer commits every message:
    /// it must not queue for a connection behind the reads of the shared
    /// pool (a burst of look-ups would hold every sender's `ok`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when the database cannot be reached.
    pub async fn writer_connection(
        config: &DatabaseConfig,
    ) -> Result<Option<DatabaseConnection>, StoreError> {
        if config.url.starts_with("sqlite:") {
            return Ok(None);
        }
        Ok(Some(pg_pool::connect(&pool_options(config, 1)).await?))
    }

    /// Applies pending migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// The file behind a SQLite database, or `None` for PostgreSQL and
    /// in-memory SQLite.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when the database cannot be asked.
    pub async fn sqlite_file(&self) -> Result<Option<PathBuf>, StoreError> {
        if self.db.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(None);
        }
        let statement = Statement::from_string(DatabaseBackend::Sqlite, "PRAGMA database_list");
        for row in self.db.query_all(statement).await? {
            let name: String = row.try_get("", "name")?;
            let file: String = row.try_get("", "file")?;
            if name == "main" && !file.is_empty() {
                return Ok(Some(PathBuf::from(file)));
            }
        }
        Ok(None)
    }

    /// The consultation `id`, if it exists: read inline on a SQLite file
    /// (see [`sqlite_reads`]), through the pool otherwise or when that read
    /// fails.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] on database failure; [`StoreError::Corrupt`] for an
    /// unknown stored status.
    pub async fn consultation(
        &self,
        id: &ConsultationId,
    ) -> Result<Option<Consultation>, StoreError> {
        if let Some(reads) = &self.reads {
            match reads.consultation(id) {
                Ok(found) => return Ok(found),
                Err(error) => read_fell_back(&error),
            }
        }
        consultations::find(&self.db, id).await
    }

    /// How `person` can be reached outside the app: read as
    /// [`Store::consultation`] reads (each expired entry of the planner's
    /// reach cache asks, every few seconds for every patient being
    /// messaged).
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] on database failure.
    pub async fn contact(&self, person: &PersonKey) -> Result<contacts::Contact, StoreError> {
        if let Some(reads) = &self.reads {
            match reads.contact(person) {
                Ok(found) => return Ok(found),
                Err(error) => read_fell_back(&error),
            }
        }
        contacts::contact(&self.db, person).await
    }

    /// The clinic `user` is registered in, if registered: read as
    /// [`Store::consultation`] reads.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] on database failure.
    pub async fn clinic_of(&self, user: &UserId) -> Result<Option<ClinicId>, StoreError> {
        if let Some(reads) = &self.reads {
            match reads.clinic_of(user) {
                Ok(found) => return Ok(found),
                Err(error) => read_fell_back(&error),
            }
        }
        participants::clinic_of(&self.db, user).await
    }

    /// The pool, for repository functions.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// True when a trivial query succeeds.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Closes the pool.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when closing fails.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await?;
        Ok(())
    }
}

/// Counts and logs an inline read that gave way to the pool.
fn read_fell_back(error: &StoreError) {
    metrics::counter!("consult_sqlite_read_fallbacks_total").increment(1);
    tracing::debug!(error = %error, "inline read failed; reading through the pool");
}

/// Seconds-precision-safe conversion of a stored counter.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Conversion of a counter for storage.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
