//! The SQLite message writer: a thread of its own holding one rusqlite
//! connection to the database file. It takes senders' messages straight
//! from the writer's queue, appends each batch in one
//! `BEGIN IMMEDIATE … COMMIT` with cached prepared statements, publishes
//! what it stored and answers the senders. The receipt batcher's flushes
//! come through the same queue and are written in the transaction of the
//! batch they are taken with (`receipts.rs`), so the file has one writer.
//!
//! Through the sqlx pool every statement is a round trip to the connection's
//! worker thread, two thread wake-ups each; here a send costs one hand-off
//! to this thread and one back to the sender, and its publishing needs no
//! task of its own. The writer also keeps checkpoints off the commit path:
//! its connection never checkpoints (`wal_autocheckpoint = 0`); a second
//! thread runs passive checkpoints, which never block writers. A lock held by
//! another node on the same file is waited for in short steps
//! (`busy_wait`) rather than SQLite's default back-off of up to 100 ms.
//!
//! Used for file databases; in-memory SQLite and PostgreSQL keep the pool
//! writer ([`batch_append`](super::batch_append)).

mod append;
mod checkpoint;
mod receipts;
mod sent_keys;
mod unread;

pub use checkpoint::Schedule;

use super::appender::{self, BatchOutcomes, OnCommit, Queue};
use super::messages::{AppendOutcome, NewMessage};
use super::receipt_batch::{ChangedPositions, ReceiptRow};
use super::{StoreError, sqlite_rows};
use crate::config::SqliteSync;
use crate::supervisor::{Worker, Workers};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commits at least this long are logged at debug level.
const SLOW_COMMIT: Duration = Duration::from_millis(2);

/// The writer connection's page cache, as SQLite's negative KiB count.
const WRITER_CACHE_KIB: i64 = -16 * 1024;

/// The writer's connection, and the checkpoints that go with it (they stop,
/// after a last one, when it is dropped).
pub struct SqliteBatchWriter {
    connection: Connection,
    checkpoints: checkpoint::Checkpoints,
    unread: unread::UnreadMemo,
    /// Boxed: the writer sits in an enum beside a pool handle.
    sent: Box<sent_keys::SentKeys>,
}

impl std::fmt::Debug for SqliteBatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBatchWriter").finish_non_exhaustive()
    }
}

impl SqliteBatchWriter {
    /// Opens two connections to the database file at `path` (which must
    /// exist and be in WAL mode): the writer's, and one for the checkpoint
    /// thread, which it starts; it checkpoints (and syncs the log) as
    /// `schedule` says while the writer commits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the file cannot be opened,
    /// [`StoreError::Thread`] when the checkpoint thread cannot start.
    pub fn open(
        path: &Path,
        schedule: Schedule,
        synchronous: SqliteSync,
        workers: &Arc<Workers>,
    ) -> Result<Self, StoreError> {
        let connection = open(path, synchronous)?;
        // A batch dirties a page per message and index in the worst case
        // (every message to another consultation): a cache that holds a whole
        // batch's pages keeps SQLite from spilling them to the log mid-batch.
        connection.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let database = std::fs::File::open(path).map_err(StoreError::DatabaseFile)?;
        let checkpoints = checkpoint::start(
            open(path, synchronous)?,
            database,
            log_path(path),
            schedule,
            workers,
        )?;
        Ok(Self {
            connection,
            checkpoints,
            unread: unread::UnreadMemo::default(),
            sent: Box::default(),
        })
    }

    /// Appends `batch` in one transaction, or message by message if that
    /// fails; one outcome per message, in order. Blocks for the commit.
    pub fn append(&mut self, batch: &[NewMessage]) -> BatchOutcomes {
        self.write(batch, &[]).0
    }

    /// Appends `batch` and writes the receipt flushes `receipts` in one
    /// transaction (one commit for all of them); if that fails, each message
    /// and each flush again in a transaction of its own, so that one cannot
    /// fail the others. One outcome per message and one per flush (the keys
    /// whose positions grew), in order. Blocks for the commits.
    pub fn write(
        &mut self,
        batch: &[NewMessage],
        receipts: &[&[ReceiptRow]],
    ) -> (BatchOutcomes, Vec<Result<ChangedPositions, StoreError>>) {
        let error = match self.commit(batch, receipts) {
            Ok((outcomes, changed)) => {
                return (
                    outcomes.into_iter().map(Ok).collect(),
                    changed.into_iter().map(Ok).collect(),
                );
            }
            Err(error) => error,
        };
        appender::log_batch_failure(&error, batch.len() + receipts.len());
        let outcomes = batch
            .iter()
            .map(|message| {
                self.commit(std::slice::from_ref(message), &[])
                    .and_then(|(outcomes, _)| appender::only(outcomes))
            })
            .collect();
        let changed = receipts
            .iter()
            .map(|rows| {
                self.commit(&[], std::slice::from_ref(rows))
                    .and_then(|(_, changed)| {
                        changed.into_iter().next().ok_or_else(|| {
                            StoreError::Corrupt("a one-flush write gave no outcome".to_owned())
                        })
                    })
            })
            .collect();
        (outcomes, changed)
    }

    /// Empties the memos (what they hold may have been rolled back).
    fn forget(&mut self) {
        self.unread.clear();
        self.sent.clear();
    }

    /// One transaction for `batch` and `receipts`, timed.
    fn commit(
        &mut self,
        batch: &[NewMessage],
        receipts: &[&[ReceiptRow]],
    ) -> Result<(Vec<AppendOutcome>, Vec<ChangedPositions>), StoreError> {
        let started = Instant::now();
        let result = write_all(
            &mut self.connection,
            batch,
            receipts,
            &mut self.unread,
            &mut self.sent,
        );
        if result.is_err() {
            // The memos may count rows the rollback took back.
            self.forget();
        }
        let elapsed = started.elapsed();
        metrics::histogram!("consult_sqlite_commit_seconds").record(elapsed.as_secs_f64());
        if elapsed >= SLOW_COMMIT {
            tracing::debug!(
                size = batch.len(),
                receipt_flushes = receipts.len(),
                elapsed_us = elapsed.as_micros(),
                "slow commit"
            );
        }
        self.checkpoints.written();
        result
    }
}

/// Starts the writer thread: it writes what `queue` brings until the queue
/// stops, passing stored messages to `on_commit`. A panic fails the batch
/// in hand (its senders hear that the writer stopped; its transaction rolls
/// back) and the loop starts again on the same connection and queue.
pub(super) fn spawn(
    mut writer: SqliteBatchWriter,
    mut queue: Queue,
    on_commit: OnCommit,
    workers: Arc<Workers>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            workers.run_thread(Worker::Writer, || {
                // After a panic the batch in hand was rolled back: the memos
                // may hold its rows.
                writer.forget();
                while let Some(batch) = queue.next_batch_blocking() {
                    workers.fail_if_asked(Worker::Writer);
                    let (messages, replies) = appender::split(batch.jobs);
                    let flushes: Vec<&[ReceiptRow]> = batch
                        .receipts
                        .iter()
                        .map(|job| job.rows.as_slice())
                        .collect();
                    let (results, changed) = writer.write(&messages, &flushes);
                    appender::finish(&on_commit, replies, results);
                    for (job, changed) in batch.receipts.into_iter().zip(changed) {
                        // A flush whose batcher gave up is still written.
                        let _gone = job.reply.send(changed);
                    }
                }
            });
            queue.stopped();
        })
        .map(drop)
        .map_err(|error| StoreError::Thread("sqlite-writer", error))
}

/// The write-ahead log SQLite keeps beside the database file at `path`.
fn log_path(path: &Path) -> PathBuf {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    PathBuf::from(log)
}

/// Opens a read-write connection set up as the pool's are.
fn open(path: &Path, synchronous: SqliteSync) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_handler(Some(busy_wait))?;
    connection.pragma_update(None, "synchronous", synchronous.pragma())?;
    connection.pragma_update(None, "foreign_keys", true)?;
    Ok(connection)
}

/// Steps of a wait for a lock another connection holds: short at first (a
/// batch commits in well under a millisecond), then 1 ms, giving up after
/// about ten seconds as the pool's busy timeout does.
const SHORT_WAITS: i32 = 200;
const SHORT_WAIT: Duration = Duration::from_micros(50);
const LONG_WAIT: Duration = Duration::from_millis(1);
const LONG_WAITS: i32 = 10_000;

/// SQLite's busy handler: `true` to try again.
fn busy_wait(attempt: i32) -> bool {
    if attempt < SHORT_WAITS {
        std::thread::sleep(SHORT_WAIT);
        true
    } else if attempt < SHORT_WAITS + LONG_WAITS {
        std::thread::sleep(LONG_WAIT);
        true
    } else {
        false
    }
}

fn write_all(
    connection: &mut Connection,
    batch: &[NewMessage],
    receipts: &[&[ReceiptRow]],
    unread: &mut unread::UnreadMemo,
    sent: &mut sent_keys::SentKeys,
) -> Result<(Vec<AppendOutcome>, Vec<ChangedPositions>), StoreError> {
    let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for message in batch {
        outcomes.push(append::append(&txn, message, unread, sent)?);
    }
    let mut changed = Vec::with_capacity(receipts.len());
    if !receipts.is_empty() {
        let now = sqlite_rows::timestamp(chrono::Utc::now());
        for rows in receipts {
            changed.push(receipts::write(&txn, rows, &now)?);
        }
    }
    txn.commit()?;
    Ok((outcomes, changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseConfig;
    use crate::store::Store;
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    /// `PRAGMA synchronous` of the pool's and the writer's connections.
    async fn synchronous_levels(setting: SqliteSync) -> (i64, i64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let config = DatabaseConfig {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            sqlite_synchronous: setting,
            ..DatabaseConfig::default()
        };
        let store = Store::connect(&config).await.unwrap();
        store.migrate().await.unwrap();
        let row = store
            .connection()
            .query_one(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA synchronous",
            ))
            .await
            .unwrap()
            .unwrap();
        let pool: i32 = row.try_get_by_index(0).unwrap();
        let schedule = Schedule {
            checkpoint_every: Duration::from_millis(25),
            log_sync_every: None,
        };
        let writer = SqliteBatchWriter::open(&path, schedule, setting, &Workers::new()).unwrap();
        let own: i64 = writer
            .connection
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        (i64::from(pool), own)
    }

    #[tokio::test]
    async fn commits_wait_for_the_disk_by_default_and_not_when_normal_is_chosen() {
        assert_eq!(
            DatabaseConfig::default().sqlite_synchronous,
            SqliteSync::Full
        );
        // SQLite's levels: 1 = NORMAL, 2 = FULL.
        assert_eq!(synchronous_levels(SqliteSync::Full).await, (2, 2));
        assert_eq!(synchronous_levels(SqliteSync::Normal).await, (1, 1));
    }
}
