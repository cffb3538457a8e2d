//! The group-commit message writer.
//!
//! Senders hand messages to one writer per node. It takes whatever is
//! queued (up to `append_batch_max`), appends all of it in one transaction,
//! hands each stored message, in commit order, to the node's [`OnCommit`]
//! (which publishes it), then answers each sender. One writer per node means
//! one ordered stream of commits, so events leave this node in sequence
//! order; one transaction per batch means one log write for many messages.
//! If a batch fails, each message is retried in a transaction of its own, so
//! one bad message cannot fail its neighbours.
//!
//! On a SQLite file the writer is a thread of its own
//! ([`SqliteBatchWriter`]) that takes messages straight from the senders'
//! queue and publishes them itself: a send costs one hand-off to the thread
//! and one back. It also writes the receipt batcher's flushes
//! ([`ReceiptWriter`]), in the transaction of the batch it takes them with.
//! On PostgreSQL the writer is a task appending on a connection of its own
//! (so a burst of reads holding every pooled connection never holds a
//! commit), and a batch without notifications or audit entries is one
//! statement ([`pg_batch_append`](super::pg_batch_append)); on in-memory
//! SQLite it is a task appending through the pool.

use super::messages::{self, AppendOutcome, NewMessage, StoredMessage};
use super::pg_batch_append::RetryChecks;
use super::receipt_batch::{ChangedPositions, ReceiptRow};
use super::sqlite_writer::{self, Schedule, SqliteBatchWriter};
use super::{Store, StoreError};
use crate::config::{AppendWriter, DatabaseConfig};
use crate::supervisor::{Worker, Workers};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, TransactionTrait};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Queued appends before senders wait.
const JOB_QUEUE_CAPACITY: usize = 4096;

/// Called with every stored message, in commit order, after its batch
/// commits and before any sender of the batch is answered. Runs on the
/// writer (the SQLite thread or the pool writer's task): it must not block.
pub type OnCommit = Box<dyn Fn(&StoredMessage) + Send>;

/// One batch's outcomes, one per message, in order.
pub type BatchOutcomes = Vec<Result<AppendOutcome, StoreError>>;

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

/// One sender's message and where its outcome goes.
pub(super) struct Job {
    message: NewMessage,
    reply: Reply,
    queued_at: Instant,
}

/// A receipt flush's positions for the SQLite writer, and where the keys
/// that moved go once committed.
pub(super) struct ReceiptsJob {
    pub(super) rows: Vec<ReceiptRow>,
    pub(super) reply: oneshot::Sender<Result<ChangedPositions, StoreError>>,
}

/// What the writer's queue carries.
pub(super) enum Request {
    /// A message to append.
    Append(Job),
    /// A receipt flush to write (SQLite writer only).
    Receipts(ReceiptsJob),
    /// Write what is queued, refuse the rest, then say so.
    Stop(oneshot::Sender<()>),
}

/// A handle for appending messages through the writer.
#[derive(Debug, Clone)]
pub struct Appender {
    requests: mpsc::Sender<Request>,
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
        self.requests
            .send(Request::Append(Job {
                message,
                reply,
                queued_at: Instant::now(),
            }))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        reply_rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// A handle for writing receipt flushes on the SQLite writer's thread.
#[derive(Debug, Clone)]
pub struct ReceiptWriter {
    requests: mpsc::Sender<Request>,
}

impl ReceiptWriter {
    /// Writes `rows` in a transaction of their own on the writer's
    /// connection; the keys whose positions grew.
    ///
    /// # Errors
    ///
    /// [`StoreError::WriterStopped`] when the writer is stopped or failed
    /// with the flush in hand; [`StoreError::Sqlite`] when the database
    /// fails.
    pub(super) async fn write(
        &self,
        rows: Vec<ReceiptRow>,
    ) -> Result<ChangedPositions, StoreError> {
        let (reply, reply_rx) = oneshot::channel();
        self.requests
            .send(Request::Receipts(ReceiptsJob { rows, reply }))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        reply_rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// Stops the writer.
#[derive(Debug)]
pub struct WriterHandle {
    requests: mpsc::Sender<Request>,
}

impl WriterHandle {
    /// Returns once the writer has written (and published) every message
    /// queued before this call; later appends fail with
    /// [`StoreError::WriterStopped`].
    pub async fn stop(self) {
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Stop(done)).await.is_ok() {
            // An error means the writer is gone already.
            let _gone = stopped.await;
        }
    }
}

/// Where batches are written.
#[derive(Debug)]
pub enum Backend {
    /// Through the sea-orm pool, a round trip per statement.
    Pool(DatabaseConnection),
    /// On a SQLite connection of the writer's own.
    Sqlite(SqliteBatchWriter),
}

impl Backend {
    /// The writer's own connection for a SQLite file (checkpointed, and its
    /// log synced, as `config` says while written) or for PostgreSQL (a
    /// pool of one), else the store's pool (in-memory SQLite). The
    /// checkpoint thread is supervised by `workers`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database cannot be asked or the file opened.
    pub async fn for_store(
        store: &Store,
        config: &DatabaseConfig,
        workers: &Arc<Workers>,
    ) -> Result<Self, StoreError> {
        Ok(match store.sqlite_file().await? {
            Some(path) => Self::Sqlite(SqliteBatchWriter::open(
                &path,
                Schedule {
                    checkpoint_every: config.sqlite_checkpoint_interval(),
                    log_sync_every: config.sqlite_log_sync_interval(),
                },
                config.sqlite_synchronous,
                workers,
            )?),
            None => Self::Pool(match Store::writer_connection(config).await? {
                Some(own) => own,
                None => store.connection().clone(),
            }),
        })
    }

    /// Which writer this backend is, for the settings that depend on it.
    #[must_use]
    pub fn writer(&self) -> AppendWriter {
        match self {
            Self::Sqlite(_) => AppendWriter::SqliteFile,
            Self::Pool(db) if db.get_database_backend() == DatabaseBackend::Postgres => {
                AppendWriter::Postgres
            }
            Self::Pool(_) => AppendWriter::SqliteInMemory,
        }
    }

    /// Appends `batch` in one transaction, or message by message if that
    /// fails; one outcome per message, in order. On SQLite the commit runs
    /// on the calling thread: the hub calls this only on the writer's own
    /// thread (benchmarks and tests call it directly).
    pub async fn append(&mut self, batch: &[NewMessage]) -> BatchOutcomes {
        match self {
            Self::Sqlite(writer) => writer.append(batch),
            Self::Pool(db) => append_through_pool(db, batch, &mut RetryChecks::default()).await,
        }
    }
}

/// The running writer's handles: messages go through `appender`; receipts
/// through `receipts` on a SQLite file (else `None`: they go through the
/// pool); `handle` stops it.
#[derive(Debug)]
pub struct Writer {
    pub appender: Appender,
    pub receipts: Option<ReceiptWriter>,
    pub handle: WriterHandle,
}

/// Starts the writer on `backend`, supervised by `workers`; stored
/// messages go to `on_commit`.
///
/// # Errors
///
/// [`StoreError::Thread`] when the SQLite writer thread cannot be started.
pub fn start(
    backend: Backend,
    batching: Batching,
    on_commit: OnCommit,
    workers: &Arc<Workers>,
) -> Result<Writer, StoreError> {
    let (requests, incoming) = mpsc::channel(JOB_QUEUE_CAPACITY);
    let queue = Queue {
        incoming,
        batch_max: batching.max.max(1),
        linger: batching.linger,
        stopping: None,
        wrote_messages: false,
    };
    let receipts = match backend {
        Backend::Sqlite(writer) => {
            sqlite_writer::spawn(writer, queue, on_commit, Arc::clone(workers))?;
            Some(ReceiptWriter {
                requests: requests.clone(),
            })
        }
        Backend::Pool(db) => {
            // A failed run's lock is released with it: the next run takes
            // over the same queue.
            let writer = Arc::new(tokio::sync::Mutex::new((queue, on_commit)));
            let workers_for_runs = Arc::clone(workers);
            workers.spawn(Worker::Writer, move || {
                write_through_pool(
                    db.clone(),
                    Arc::clone(&writer),
                    Arc::clone(&workers_for_runs),
                )
            });
            None
        }
    };
    Ok(Writer {
        appender: Appender {
            requests: requests.clone(),
        },
        receipts,
        handle: WriterHandle { requests },
    })
}

/// How the writer forms its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Messages per transaction at most.
    pub max: usize,
    /// How long a batch's first message waits for others before the batch
    /// is written (zero: the batch is what is queued when the writer is
    /// free). Each commit costs the same whatever it carries, so a short
    /// wait trades that much latency for fewer commits.
    pub linger: Duration,
}

impl Batching {
    /// Batches of at most `max` messages, written as soon as the writer is
    /// free.
    #[must_use]
    pub fn up_to(max: usize) -> Self {
        Self {
            max,
            linger: Duration::ZERO,
        }
    }
}

/// The writer's side of the queue: hands out batches of what is waiting.
pub(super) struct Queue {
    incoming: mpsc::Receiver<Request>,
    batch_max: usize,
    linger: Duration,
    stopping: Option<oneshot::Sender<()>>,
    /// The last batch handed out carried messages.
    wrote_messages: bool,
}

impl Queue {
    /// The next batch, waiting for its first message on this thread; `None`
    /// once stopped (or every sender is gone) and nothing is left.
    ///
    /// With a linger, a queue found empty right after a batch of messages is
    /// slept on for the linger before the thread parks: under steady load the next messages arrive within
    /// it, and they are taken in one wake-up instead of two (parked until
    /// the first, then asleep for the rest of its linger). None of them has
    /// waited longer than the linger.
    pub(super) fn next_batch_blocking(&mut self) -> Option<Batch> {
        if self.stopping.is_some() {
            let first = self.incoming.try_recv().ok();
            return self.gather(first);
        }
        let first = match self.incoming.try_recv() {
            Ok(first) => Some(first),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => {
                if self.wrote_messages && !self.linger.is_zero() {
                    std::thread::sleep(self.linger);
                    if let Ok(first) = self.incoming.try_recv() {
                        return self.gather(Some(first));
                    }
                }
                self.incoming.blocking_recv()
            }
        };
        let wait = self.linger_of(first.as_ref());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        self.gather(first)
    }

    /// As [`Self::next_batch_blocking`], for a task.
    async fn next_batch(&mut self) -> Option<Batch> {
        let first = if self.stopping.is_some() {
            self.incoming.try_recv().ok()
        } else {
            self.incoming.recv().await
        };
        let wait = self.linger_of(first.as_ref());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.gather(first)
    }

    /// How much longer a batch starting with `first` waits for others: what
    /// is left of the linger since `first` was queued; nothing while
    /// stopping, or when the queue already holds a full batch.
    fn linger_of(&self, first: Option<&Request>) -> Duration {
        match first {
            Some(Request::Append(job))
                if self.stopping.is_none() && self.incoming.len() + 1 < self.batch_max =>
            {
                self.linger.saturating_sub(job.queued_at.elapsed())
            }
            _ => Duration::ZERO,
        }
    }

    /// `first` and whatever else is queued, up to the batch size.
    fn gather(&mut self, first: Option<Request>) -> Option<Batch> {
        let mut jobs = Vec::new();
        let mut receipts = Vec::new();
        let mut next = first;
        while let Some(request) = next {
            match request {
                Request::Append(job) => jobs.push(job),
                Request::Receipts(job) => receipts.push(job),
                Request::Stop(done) => {
                    // What is queued already is still written.
                    self.incoming.close();
                    self.stopping = Some(done);
                }
            }
            if jobs.len() >= self.batch_max {
                break;
            }
            next = self.incoming.try_recv().ok();
        }
        self.wrote_messages = !jobs.is_empty();
        (!jobs.is_empty() || !receipts.is_empty()).then_some(Batch { jobs, receipts })
    }

    /// Tells whoever asked the writer to stop that it has.
    pub(super) fn stopped(&mut self) {
        if let Some(done) = self.stopping.take() {
            let _gone = done.send(());
        }
        tracing::debug!("message writer stopped");
    }
}

/// What the writer takes from its queue at once: messages to append in
/// one transaction, and receipt flushes (each a transaction of its own,
/// after the messages).
pub(super) struct Batch {
    pub(super) jobs: Vec<Job>,
    pub(super) receipts: Vec<ReceiptsJob>,
}

/// Splits a batch into its messages and their replies, recording how long
/// each waited in the queue.
pub(super) fn split(batch: Vec<Job>) -> (Vec<NewMessage>, Vec<Reply>) {
    if !batch.is_empty() {
        // A batch of receipt flushes alone carries no message.
        metrics::histogram!("consult_append_batch_size").record(batch.len() as f64);
    }
    let queue_wait = metrics::histogram!("consult_append_queue_seconds");
    batch
        .into_iter()
        .map(|job| {
            queue_wait.record(job.queued_at.elapsed().as_secs_f64());
            (job.message, job.reply)
        })
        .unzip()
}

/// Publishes a written batch's stored messages, then answers its senders.
pub(super) fn finish(on_commit: &OnCommit, replies: Vec<Reply>, results: BatchOutcomes) {
    for result in &results {
        if let Ok(AppendOutcome::Stored(stored)) = result {
            on_commit(stored);
        }
    }
    for (reply, result) in replies.into_iter().zip(results) {
        // A sender that gave up waiting still has its message stored.
        let _ignored = reply.send(result);
    }
}

/// Logs a batch that failed as a whole before its messages are retried.
pub(super) fn log_batch_failure(error: &StoreError, size: usize) {
    tracing::warn!(error = %error, size, "batch append failed; retrying one by one");
}

/// The one outcome of a one-message batch.
pub(super) fn only(outcomes: Vec<AppendOutcome>) -> Result<AppendOutcome, StoreError> {
    outcomes
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("a one-message batch gave no outcome".to_owned()))
}

/// The pool writer's queue and publisher, held by the run in progress.
type PoolWriter = Arc<tokio::sync::Mutex<(Queue, OnCommit)>>;

async fn write_through_pool(db: DatabaseConnection, writer: PoolWriter, workers: Arc<Workers>) {
    let mut held = writer.lock().await;
    let (queue, on_commit) = &mut *held;
    let mut checks = RetryChecks::default();
    while let Some(batch) = queue.next_batch().await {
        for job in batch.receipts {
            // Receipts are handed to this writer only on a SQLite file.
            let _gone = job.reply.send(Err(StoreError::Corrupt(
                "receipts handed to the pool writer".to_owned(),
            )));
        }
        if batch.jobs.is_empty() {
            continue;
        }
        let (messages, replies) = split(batch.jobs);
        workers.fail_if_asked(Worker::Writer);
        let results = append_through_pool(&db, &messages, &mut checks).await;
        finish(on_commit, replies, results);
    }
    queue.stopped();
}

async fn append_through_pool(
    db: &DatabaseConnection,
    batch: &[NewMessage],
    checks: &mut RetryChecks,
) -> BatchOutcomes {
    let all: Vec<&NewMessage> = batch.iter().collect();
    let error = match append_all(db, &all, checks).await {
        Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
        Err(error) => error,
    };
    log_batch_failure(&error, batch.len());
    let mut results = Vec::with_capacity(batch.len());
    for message in batch {
        results.push(append_all(db, &[message], checks).await.and_then(only));
    }
    results
}

async fn append_all(
    db: &DatabaseConnection,
    messages: &[&NewMessage],
    checks: &mut RetryChecks,
) -> Result<Vec<AppendOutcome>, StoreError> {
    if db.get_database_backend() == DatabaseBackend::Postgres
        && super::pg_batch_append::fits(messages)
    {
        // One statement, one round trip, its own transaction.
        return super::pg_batch_append::append(db, messages, checks).await;
    }
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
