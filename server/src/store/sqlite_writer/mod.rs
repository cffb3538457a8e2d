//! The SQLite message writer: a thread of its own holding one rusqlite
//! connection to the database file, which appends each group-commit batch in
//! one `BEGIN IMMEDIATE … COMMIT` with cached prepared statements.
//!
//! Through the sqlx pool every statement is a round trip to the connection's
//! worker thread, two thread wake-ups each; here a whole batch costs one
//! hand-off each way. The writer also keeps checkpoints off the commit path:
//! its connection never checkpoints (`wal_autocheckpoint = 0`); a second
//! thread runs passive checkpoints, which never block writers. A lock held by
//! another node on the same file is waited for in short steps
//! ([`busy_wait`]) rather than SQLite's default back-off of up to 100 ms.
//!
//! Used for file databases; in-memory SQLite and PostgreSQL keep the pool
//! writer ([`batch_append`](super::batch_append)).

mod append;
mod checkpoint;

use super::StoreError;
use super::messages::{AppendOutcome, NewMessage};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Commits at least this long are logged at debug level.
const SLOW_COMMIT: Duration = Duration::from_millis(2);

/// The writer connection's page cache, as SQLite's negative KiB count.
const WRITER_CACHE_KIB: i64 = -16 * 1024;

/// A batch handed back with what appending it in one transaction did, so
/// the caller can retry its messages one by one.
pub type Attempt = (Vec<NewMessage>, Result<Vec<AppendOutcome>, StoreError>);

struct Request {
    batch: Vec<NewMessage>,
    reply: oneshot::Sender<Attempt>,
}

/// A handle on the writer thread. Dropping the last handle stops it.
#[derive(Debug, Clone)]
pub struct SqliteWriter {
    requests: mpsc::Sender<Request>,
}

impl SqliteWriter {
    /// Opens two connections to the database file at `path` (which must
    /// exist and be in WAL mode) and starts the writer and checkpoint threads.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the file cannot be opened.
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let connection = open(path)?;
        // A batch dirties a page per message and index in the worst case
        // (every message to another consultation): a cache that holds a whole
        // batch's pages keeps SQLite from spilling them to the log mid-batch.
        connection.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = checkpoint::start(open(path)?)?;
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(connection, &incoming, checkpoints))
            .map_err(|error| StoreError::Thread("sqlite-writer", error))?;
        Ok(Self { requests })
    }

    /// Appends `batch` in one transaction on the writer thread.
    pub async fn append(&self, batch: Vec<NewMessage>) -> Attempt {
        let (reply, attempt) = oneshot::channel();
        if let Err(mpsc::SendError(request)) = self.requests.send(Request { batch, reply }) {
            return (request.batch, Err(StoreError::WriterStopped));
        }
        attempt
            .await
            .unwrap_or_else(|_| (Vec::new(), Err(StoreError::WriterStopped)))
    }
}

/// Opens a read-write connection set up as the pool's are.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_handler(Some(busy_wait))?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
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

fn serve(
    mut connection: Connection,
    incoming: &mpsc::Receiver<Request>,
    checkpoints: checkpoint::Checkpoints,
) {
    while let Ok(Request { batch, reply }) = incoming.recv() {
        let started = Instant::now();
        let result = append_all(&mut connection, &batch);
        let elapsed = started.elapsed();
        metrics::histogram!("consult_sqlite_commit_seconds").record(elapsed.as_secs_f64());
        if elapsed >= SLOW_COMMIT {
            tracing::debug!(
                size = batch.len(),
                elapsed_us = elapsed.as_micros(),
                "slow commit"
            );
        }
        checkpoints.written();
        // The writer task may have stopped waiting; the messages are stored.
        let _ignored = reply.send((batch, result));
    }
    tracing::debug!("sqlite writer thread stopped");
}

fn append_all(
    connection: &mut Connection,
    batch: &[NewMessage],
) -> Result<Vec<AppendOutcome>, StoreError> {
    let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for message in batch {
        outcomes.push(append::append(&txn, message)?);
    }
    txn.commit()?;
    Ok(outcomes)
}
