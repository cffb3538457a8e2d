//! The group-commit message writer.
//!
//! Senders hand messages to one writer task per node. It takes whatever is
//! queued (up to `append_batch_max`), appends all of it in one transaction,
//! then passes the stored messages, in commit order, to the committed
//! channel (the hub's publisher) before answering each sender. One writer
//! per node means one ordered stream of commits, so events leave this node
//! in sequence order; one transaction per batch means one fsync for many
//! messages. If a batch fails, each message is retried in a transaction of
//! its own, so one bad message cannot fail its neighbours.
//!
//! On a SQLite file the batch runs on the [`SqliteWriter`] thread; on
//! PostgreSQL (and in-memory SQLite) through the pool.

use super::messages::{self, AppendOutcome, NewMessage, StoredMessage};
use super::sqlite_writer::{Attempt, SqliteWriter};
use super::{Store, StoreError};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Queued appends before senders wait.
const JOB_QUEUE_CAPACITY: usize = 4096;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// A handle for appending messages through the writer task.
#[derive(Debug, Clone)]
pub struct Appender {
    jobs_tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("consultation", &self.message.consultation_id)
            .finish_non_exhaustive()
    }
}

impl Appender {
    /// Appends `message` and waits for its outcome.
    ///
    /// # Errors
    ///
    /// [`StoreError::WriterStopped`] after shutdown; [`StoreError::Db`] when
    /// the database fails.
    pub async fn append(&self, message: NewMessage) -> Result<AppendOutcome, StoreError> {
        let (reply, reply_rx) = oneshot::channel();
        self.jobs_tx
            .send(Job { message, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        reply_rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The writer task's state.
#[derive(Debug)]
pub struct AppendWriter {
    backend: Backend,
    jobs_rx: mpsc::Receiver<Job>,
    committed_tx: mpsc::Sender<Vec<StoredMessage>>,
    batch_max: usize,
}

/// Creates the writer and its handle. Run the writer with
/// [`AppendWriter::run`]; stored messages come out of `committed_tx`.
pub fn channel(
    backend: Backend,
    batch_max: usize,
    committed_tx: mpsc::Sender<Vec<StoredMessage>>,
) -> (Appender, AppendWriter) {
    let (jobs_tx, jobs_rx) = mpsc::channel(JOB_QUEUE_CAPACITY);
    (
        Appender { jobs_tx },
        AppendWriter {
            backend,
            jobs_rx,
            committed_tx,
            batch_max: batch_max.max(1),
        },
    )
}

impl AppendWriter {
    /// Writes batches until `stop` is cancelled, then drains what is queued.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                job = self.jobs_rx.recv() => job,
                () = stop.cancelled() => {
                    self.jobs_rx.close();
                    self.jobs_rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < self.batch_max {
                match self.jobs_rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.write(batch).await;
        }
        tracing::debug!("message writer stopped");
    }

    async fn write(&self, batch: Vec<Job>) {
        metrics::histogram!("consult_append_batch_size").record(batch.len() as f64);
        let (messages, replies): (Vec<NewMessage>, Vec<_>) = batch
            .into_iter()
            .map(|job| (job.message, job.reply))
            .unzip();
        let results = self.backend.append(messages).await;
        self.finish(replies, results).await;
    }

    async fn finish(
        &self,
        replies: Vec<oneshot::Sender<Result<AppendOutcome, StoreError>>>,
        results: BatchOutcomes,
    ) {
        let committed: Vec<StoredMessage> = results
            .iter()
            .filter_map(|result| match result {
                Ok(AppendOutcome::Stored(stored)) => Some(stored.clone()),
                _ => None,
            })
            .collect();
        if !committed.is_empty() && self.committed_tx.send(committed).await.is_err() {
            tracing::error!("publisher gone; committed messages will reach clients on resume only");
        }
        for (reply, result) in replies.into_iter().zip(results) {
            // A sender that gave up waiting still has its message stored.
            let _ignored = reply.send(result);
        }
    }
}

/// One batch's outcomes, one per message, in order.
pub type BatchOutcomes = Vec<Result<AppendOutcome, StoreError>>;

/// Where batches are written.
#[derive(Debug)]
pub enum Backend {
    /// Through the sea-orm pool, a round trip per statement.
    Pool(DatabaseConnection),
    /// On the SQLite writer thread, a round trip per batch.
    Sqlite(SqliteWriter),
}

impl Backend {
    /// The SQLite writer thread for a SQLite file, else the pool.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database cannot be asked or the file opened.
    pub async fn for_store(store: &Store) -> Result<Self, StoreError> {
        Ok(match store.sqlite_file().await? {
            Some(path) => Self::Sqlite(SqliteWriter::start(&path)?),
            None => Self::Pool(store.connection().clone()),
        })
    }

    /// Appends `batch` in one transaction, or message by message if that
    /// fails, so one bad message cannot fail its neighbours; one outcome per
    /// message, in order.
    pub async fn append(&self, batch: Vec<NewMessage>) -> BatchOutcomes {
        let size = batch.len();
        let (batch, error) = match self.append_in_one(batch).await {
            (_, Ok(outcomes)) => return outcomes.into_iter().map(Ok).collect(),
            (_, Err(StoreError::WriterStopped)) => {
                return (0..size).map(|_| Err(StoreError::WriterStopped)).collect();
            }
            (batch, Err(error)) => (batch, error),
        };
        tracing::warn!(error = %error, size, "batch append failed; retrying one by one");
        let mut results = Vec::with_capacity(size);
        for message in batch {
            let (_, result) = self.append_in_one(vec![message]).await;
            results.push(
                result.and_then(|mut outcomes| outcomes.pop().ok_or(StoreError::WriterStopped)),
            );
        }
        results
    }

    async fn append_in_one(&self, batch: Vec<NewMessage>) -> Attempt {
        match self {
            Self::Sqlite(writer) => writer.append(batch).await,
            Self::Pool(db) => {
                let messages: Vec<&NewMessage> = batch.iter().collect();
                let result = append_all(db, &messages).await;
                (batch, result)
            }
        }
    }
}

async fn append_all(
    db: &DatabaseConnection,
    messages: &[&NewMessage],
) -> Result<Vec<AppendOutcome>, StoreError> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Sqlite {
        // A deferred SQLite transaction that reads (the duplicate check)
        // before it writes fails at once with SQLITE_BUSY when another
        // connection wrote meanwhile (several nodes on one file), without
        // waiting for the busy timeout. Writing first takes the write lock
        // under the busy timeout, as BEGIN IMMEDIATE would; sea-orm cannot
        // issue that.
        txn.execute_unprepared("UPDATE consultations SET last_seq = last_seq WHERE 0")
            .await?;
    }
    let outcomes = if let [single] = messages {
        vec![messages::append(&txn, single).await?]
    } else {
        super::batch_append::append_batch(&txn, messages).await?
    };
    txn.commit().await?;
    Ok(outcomes)
}
