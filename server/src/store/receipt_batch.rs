//! The receipt batcher: every `ack` of a node goes through it, and it owns
//! writing them. It collects receipts for [`FLUSH_AFTER`] from the first one
//! (or until [`FLUSH_AT`] are pending), keeps only the highest delivered and
//! read position per (consultation, user), and writes them in one
//! transaction per flush: on a SQLite file one WAL commit for many receipts
//! instead of one each, on PostgreSQL one call of the flush function
//! ([`pg_receipts`]), one round trip, instead of one per receipt.
//!
//! A position is stored only when it grows: each upsert's `DO UPDATE` has a
//! `WHERE` that compares the stored position with the new one, and
//! `RETURNING` names the rows it changed. Those are the receipts that
//! *moved*, decided by the database under its row lock, so two nodes (or two
//! connections of one member) acknowledging at once cannot both move a
//! position, nor move it backwards. A read by the consultation's provider
//! that moved bumps the consultation's `rev` in the same transaction.
//!
//! After the commit, and before any waiter is answered, each moved receipt
//! goes to the node's [`OnReceiptCommit`] (which publishes it), in commit
//! order: one batcher per node means a room sees each member's positions
//! only grow. Each waiter is answered once its flush committed; a flush that
//! fails answers every one of its waiters with the error, and a batcher that
//! fails (see [`crate::supervisor`]) answers the receipts in hand with
//! [`StoreError::ReceiptsStopped`], while those still queued wait for the
//! restart. Stopping writes what is queued first.
//!
//! A receipt must not name a `seq` beyond the consultation's last message.
//! The caller says up to where it knows messages are stored (what the
//! connection was sent, the consultation as it last read it); only receipts
//! beyond that are checked, with one read per flush for all of them.

use super::appender::ReceiptWriter;
use super::entities::{consultation, receipt};
use super::pg_receipts;
use super::{StoreError, to_i64, to_u64};
use crate::supervisor::{Worker, Workers};
use chrono::{DateTime, Utc};
use consult_protocol::{ConsultationId, ReceiptKind, Role, UserId};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect, QueryTrait, Set, TransactionTrait,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long the first receipt of a flush waits for others.
pub const FLUSH_AFTER: Duration = Duration::from_millis(5);
/// Pending receipts that start a flush without waiting.
pub const FLUSH_AT: usize = 512;
/// Receipts queued before [`ReceiptBatcher::record`] waits.
const QUEUE_CAPACITY: usize = 8192;
/// Rows per statement: five bound values each, well under every backend's
/// limit.
const ROWS_PER_STATEMENT: usize = 500;

/// A receipt to record.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// Who acknowledged.
    pub user: UserId,
    /// Their role, for the `receipt` frame.
    pub role: Role,
    /// Delivered or read.
    pub kind: ReceiptKind,
    /// Every message up to and including this one.
    pub seq: u64,
    /// A sequence number the consultation is known to hold: a receipt up to
    /// it is not checked against the database.
    pub known_stored: u64,
    /// The consultation's own provider acknowledging: a read that moves
    /// bumps the consultation's `rev` (its dashboard row's unread count
    /// changed).
    pub bumps_rev: bool,
}

/// What became of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Committed, or already covered by the stored position.
    Recorded,
    /// Its `seq` is beyond the consultation's last message (this one).
    BeyondLastMessage(u64),
    /// The consultation does not exist.
    NotFound,
}

/// A position that moved in a committed flush: the highest of the flush's
/// receipts of that kind for that member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedReceipt {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The member.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// The position that moved.
    pub kind: ReceiptKind,
    /// Where it stands now.
    pub seq: u64,
    /// The consultation's `rev` was bumped with it (the provider's read).
    pub rev_bumped: bool,
}

/// One member's positions as a flush writes them: the highest `delivered`
/// (0: none, or covered by the read) and `read` (0: none) of the flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// The consultation.
    pub consultation_id: String,
    /// The member.
    pub user_id: String,
    /// The `delivered` position to write (0: none).
    pub delivered: u64,
    /// The `read` position to write (0: none).
    pub read: u64,
    /// A read that moves bumps the consultation's `rev`.
    pub bumps_rev: bool,
}

/// The (consultation, user) keys whose stored position grew in a flush, by
/// kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangedPositions {
    /// Keys whose `delivered` position grew.
    pub delivered: HashSet<(String, String)>,
    /// Keys whose `read` position grew.
    pub read: HashSet<(String, String)>,
}

/// Where a flush's positions are written. On a SQLite file, on the message
/// writer's own connection and thread, so that receipts never wait for its
/// write lock nor hold it against messages; elsewhere, through the pool.
#[derive(Debug, Clone)]
pub enum ReceiptSink {
    /// Through the pool: on PostgreSQL one call of its flush function, on
    /// SQLite one transaction.
    Pool(DatabaseConnection),
    /// Handed to the SQLite message writer.
    Writer(ReceiptWriter),
}

/// Called with every moved position, in commit order, after its flush
/// commits and before any waiter of the flush is answered. Runs on the
/// batcher's task: it must not block.
pub type OnReceiptCommit = Box<dyn Fn(&MovedReceipt) + Send + Sync>;

type Reply = oneshot::Sender<Result<ReceiptOutcome, StoreError>>;

/// One waiter's receipt and where its outcome goes.
struct Job {
    receipt: NewReceipt,
    reply: Reply,
    queued_at: Instant,
}

/// What the batcher's queue carries.
enum Request {
    /// A receipt to record.
    Record(Job),
    /// Write what is queued, refuse the rest, then say so.
    Stop(oneshot::Sender<()>),
}

/// A handle for recording receipts through the batcher.
#[derive(Debug, Clone)]
pub struct ReceiptBatcher {
    requests: mpsc::Sender<Request>,
}

impl ReceiptBatcher {
    /// Records `receipt` and waits until its flush committed.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReceiptsStopped`] after shutdown or when the batcher
    /// failed with the receipt in hand; [`StoreError::Db`] when its flush
    /// failed.
    pub async fn record(&self, receipt: NewReceipt) -> Result<ReceiptOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Record(Job {
                receipt,
                reply,
                queued_at: Instant::now(),
            }))
            .await
            .map_err(|_| StoreError::ReceiptsStopped)?;
        answer.await.map_err(|_| StoreError::ReceiptsStopped)?
    }
}

/// Stops the batcher.
#[derive(Debug)]
pub struct ReceiptBatcherHandle {
    requests: mpsc::Sender<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl ReceiptBatcherHandle {
    /// Returns once every receipt queued before this call is written (and
    /// published) and the batcher has ended; later receipts fail with
    /// [`StoreError::ReceiptsStopped`].
    pub async fn stop(self) {
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Stop(done)).await.is_ok() {
            // An error means the batcher is gone already.
            let _gone = stopped.await;
        }
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "receipt batcher panicked");
        }
    }
}

/// Starts the batcher, supervised by `workers`: it reads through `db` and
/// writes to `sink`; moved positions go to `on_commit`.
pub fn start(
    db: DatabaseConnection,
    sink: ReceiptSink,
    on_commit: OnReceiptCommit,
    workers: &Arc<Workers>,
) -> (ReceiptBatcher, ReceiptBatcherHandle) {
    let (requests, incoming) = mpsc::channel(QUEUE_CAPACITY);
    // A failed run's lock is released with it: the next run takes over the
    // same queue.
    let held = Arc::new(tokio::sync::Mutex::new(Batcher {
        incoming,
        on_commit,
        stopping: None,
    }));
    let workers_for_runs = Arc::clone(workers);
    let task = workers.spawn(Worker::Receipts, move || {
        run(
            db.clone(),
            sink.clone(),
            Arc::clone(&held),
            Arc::clone(&workers_for_runs),
        )
    });
    (
        ReceiptBatcher {
            requests: requests.clone(),
        },
        ReceiptBatcherHandle { requests, task },
    )
}

/// The batcher's queue and publisher, held by the run in progress.
struct Batcher {
    incoming: mpsc::Receiver<Request>,
    on_commit: OnReceiptCommit,
    stopping: Option<oneshot::Sender<()>>,
}

impl Batcher {
    /// The next flush's receipts: the first one, then whatever arrives
    /// until it is [`FLUSH_AFTER`] old or [`FLUSH_AT`] are pending (once
    /// stopping, only what is queued). `None` once stopped (or every sender
    /// is gone) and nothing is left.
    async fn next_batch(&mut self) -> Option<Vec<Job>> {
        let mut next = if self.stopping.is_some() {
            self.incoming.try_recv().ok()
        } else {
            self.incoming.recv().await
        };
        let mut jobs: Vec<Job> = Vec::new();
        let mut deadline = None;
        while let Some(request) = next {
            match request {
                Request::Record(job) => {
                    deadline.get_or_insert(job.queued_at + FLUSH_AFTER);
                    jobs.push(job);
                }
                Request::Stop(done) => {
                    // What is queued already is still written.
                    self.incoming.close();
                    self.stopping = Some(done);
                }
            }
            if jobs.len() >= FLUSH_AT {
                break;
            }
            next = match (self.incoming.try_recv(), deadline) {
                (Ok(request), _) => Some(request),
                (Err(TryRecvError::Empty), Some(deadline)) if self.stopping.is_none() => {
                    tokio::time::timeout_at(deadline, self.incoming.recv())
                        .await
                        .unwrap_or(None)
                }
                (Err(_), _) => None,
            };
        }
        (!jobs.is_empty()).then_some(jobs)
    }

    /// Tells whoever asked the batcher to stop that it has.
    fn stopped(&mut self) {
        if let Some(done) = self.stopping.take() {
            let _gone = done.send(());
        }
        tracing::debug!("receipt batcher stopped");
    }
}

async fn run(
    db: DatabaseConnection,
    sink: ReceiptSink,
    held: Arc<tokio::sync::Mutex<Batcher>>,
    workers: Arc<Workers>,
) {
    let mut batcher = held.lock().await;
    while let Some(jobs) = batcher.next_batch().await {
        workers.fail_if_asked(Worker::Receipts);
        flush(&db, &sink, jobs, &batcher.on_commit).await;
    }
    batcher.stopped();
}

/// One member's highest positions in a flush.
#[derive(Debug)]
struct Pending {
    consultation_id: ConsultationId,
    user: UserId,
    role: Role,
    /// Highest `delivered` receipt (0 when none).
    delivered: u64,
    /// Highest `read` receipt (0 when none).
    read: u64,
    bumps_rev: bool,
}

/// Checks, coalesces and writes one flush's receipts, publishes what moved,
/// then answers every waiter.
async fn flush(
    db: &DatabaseConnection,
    sink: &ReceiptSink,
    jobs: Vec<Job>,
    on_commit: &OnReceiptCommit,
) {
    let last_seqs = match last_seqs_to_check(db, &jobs).await {
        Ok(last_seqs) => last_seqs,
        Err(error) => return fail(jobs, &error),
    };
    let mut accepted = Vec::with_capacity(jobs.len());
    // Sorted by key, so that concurrent flushes (two nodes) lock rows in
    // the same order.
    let mut pending: BTreeMap<(String, String), Pending> = BTreeMap::new();
    for job in jobs {
        let receipt = &job.receipt;
        if receipt.seq > receipt.known_stored {
            let refusal = match last_seqs.get(receipt.consultation_id.as_str()) {
                None => Some(ReceiptOutcome::NotFound),
                Some(&last) if receipt.seq > last => Some(ReceiptOutcome::BeyondLastMessage(last)),
                Some(_) => None,
            };
            if let Some(refusal) = refusal {
                let _gone = job.reply.send(Ok(refusal));
                continue;
            }
        }
        let key = (
            receipt.consultation_id.to_string(),
            receipt.user.to_string(),
        );
        let entry = pending.entry(key).or_insert_with(|| Pending {
            consultation_id: receipt.consultation_id.clone(),
            user: receipt.user.clone(),
            role: receipt.role,
            delivered: 0,
            read: 0,
            bumps_rev: false,
        });
        match receipt.kind {
            ReceiptKind::Delivered => entry.delivered = entry.delivered.max(receipt.seq),
            ReceiptKind::Read => entry.read = entry.read.max(receipt.seq),
        }
        entry.role = receipt.role;
        entry.bumps_rev |= receipt.bumps_rev;
        accepted.push(job);
    }
    if accepted.is_empty() {
        return;
    }
    let rows: Vec<&Pending> = pending.values().collect();
    let moved = match write(sink, &rows).await {
        Ok(moved) => moved,
        Err(error) => return fail(accepted, &error),
    };
    metrics::counter!("consult_receipts_total").increment(accepted.len() as u64);
    for receipt in &moved {
        on_commit(receipt);
    }
    for job in accepted {
        // A waiter that gave up still has its receipt stored.
        let _gone = job.reply.send(Ok(ReceiptOutcome::Recorded));
    }
}

/// Answers every waiter of a failed flush with the failure. A writer that
/// stopped with the flush in hand (the SQLite message writer, which writes
/// flushes on a SQLite file) is `ReceiptsStopped`, so that the `ack`s hear
/// `unavailable` and try again.
fn fail(jobs: Vec<Job>, error: &StoreError) {
    tracing::warn!(error = %error, receipts = jobs.len(), "receipt flush failed");
    let stopped = matches!(
        error,
        StoreError::WriterStopped | StoreError::ReceiptsStopped
    );
    for job in jobs {
        let failure = if stopped {
            StoreError::ReceiptsStopped
        } else {
            StoreError::Db(DbErr::Custom(format!("receipt flush failed: {error}")))
        };
        let _gone = job.reply.send(Err(failure));
    }
}

/// The `last_seq` of each consultation that a receipt beyond what its
/// caller knew to be stored names; one read for the whole flush, before the
/// transaction (a `last_seq` only grows, so the check stays true). Absent
/// consultations are left out.
async fn last_seqs_to_check(
    db: &DatabaseConnection,
    jobs: &[Job],
) -> Result<HashMap<String, u64>, StoreError> {
    let ids: HashSet<&str> = jobs
        .iter()
        .filter(|job| job.receipt.seq > job.receipt.known_stored)
        .map(|job| job.receipt.consultation_id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(String, i64)> = consultation::Entity::find()
            .select_only()
            .column(consultation::Column::Id)
            .column(consultation::Column::LastSeq)
            .filter(consultation::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|(id, last)| (id, to_u64(last))));
    }
    Ok(found)
}

/// Writes a flush's positions in one transaction; the positions that moved.
/// A delivered position is written only where it exceeds the flush's read
/// position for the member (a read counts as delivered, and its frame says
/// so).
async fn write(sink: &ReceiptSink, rows: &[&Pending]) -> Result<Vec<MovedReceipt>, StoreError> {
    let delivered: Vec<&Pending> = rows
        .iter()
        .copied()
        .filter(|row| row.delivered > row.read)
        .collect();
    let read: Vec<&Pending> = rows.iter().copied().filter(|row| row.read > 0).collect();
    if delivered.is_empty() && read.is_empty() {
        // Receipts of `seq` 0: nothing can move.
        return Ok(Vec::new());
    }
    let moved = match sink {
        ReceiptSink::Pool(db) if db.get_database_backend() != DatabaseBackend::Postgres => {
            write_through_pool(db, &delivered, &read).await?
        }
        ReceiptSink::Pool(db) => {
            let changed = pg_receipts::write(db, &positions_of(rows)).await?;
            moved_of_changed(&delivered, &read, &changed)
        }
        ReceiptSink::Writer(writer) => {
            let changed = writer.write(positions_of(rows)).await?;
            moved_of_changed(&delivered, &read, &changed)
        }
    };
    metrics::counter!("consult_receipt_flushes_total").increment(1);
    Ok(moved)
}

/// A flush's rows as the SQLite writer and PostgreSQL's flush function
/// write them: `delivered` only where it exceeds the read.
fn positions_of(rows: &[&Pending]) -> Vec<ReceiptRow> {
    rows.iter()
        .map(|row| ReceiptRow {
            consultation_id: row.consultation_id.to_string(),
            user_id: row.user.to_string(),
            delivered: if row.delivered > row.read {
                row.delivered
            } else {
                0
            },
            read: row.read,
            bumps_rev: row.bumps_rev,
        })
        .collect()
}

/// The moved positions `changed` names, delivered ones first.
fn moved_of_changed(
    delivered: &[&Pending],
    read: &[&Pending],
    changed: &ChangedPositions,
) -> Vec<MovedReceipt> {
    let mut moved = moved_of(delivered, &changed.delivered, ReceiptKind::Delivered);
    moved.extend(moved_of(read, &changed.read, ReceiptKind::Read));
    moved
}

/// [`write`] through the pool on SQLite (a database in memory), in chunks
/// of [`ROWS_PER_STATEMENT`].
async fn write_through_pool(
    db: &DatabaseConnection,
    delivered: &[&Pending],
    read: &[&Pending],
) -> Result<Vec<MovedReceipt>, StoreError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let mut moved = Vec::new();
    for chunk in delivered.chunks(ROWS_PER_STATEMENT) {
        let changed = upsert(&txn, chunk, ReceiptKind::Delivered, now).await?;
        moved.extend(moved_of(chunk, &changed, ReceiptKind::Delivered));
    }
    for chunk in read.chunks(ROWS_PER_STATEMENT) {
        let changed = upsert(&txn, chunk, ReceiptKind::Read, now).await?;
        moved.extend(moved_of(chunk, &changed, ReceiptKind::Read));
    }
    let bumped: Vec<String> = moved
        .iter()
        .filter(|receipt| receipt.rev_bumped)
        .map(|receipt| receipt.consultation_id.to_string())
        .collect();
    for chunk in bumped.chunks(ROWS_PER_STATEMENT) {
        consultation::Entity::update_many()
            .col_expr(
                consultation::Column::Rev,
                Expr::col(consultation::Column::Rev).add(1),
            )
            .filter(consultation::Column::Id.is_in(chunk.iter().cloned()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(moved)
}

/// The rows of `chunk` that `changed` names, as moved positions of `kind`.
fn moved_of(
    chunk: &[&Pending],
    changed: &HashSet<(String, String)>,
    kind: ReceiptKind,
) -> Vec<MovedReceipt> {
    chunk
        .iter()
        .filter(|row| changed.contains(&(row.consultation_id.to_string(), row.user.to_string())))
        .map(|row| MovedReceipt {
            consultation_id: row.consultation_id.clone(),
            user: row.user.clone(),
            role: row.role,
            kind,
            seq: match kind {
                ReceiptKind::Delivered => row.delivered,
                ReceiptKind::Read => row.read,
            },
            rev_bumped: kind == ReceiptKind::Read && row.bumps_rev,
        })
        .collect()
}

/// Upserts one position of `kind` for each row, changing a stored row only
/// where that position grows (a read also raises `delivered` to it); the
/// keys of the rows inserted or changed.
async fn upsert(
    db: &impl ConnectionTrait,
    rows: &[&Pending],
    kind: ReceiptKind,
    now: DateTime<Utc>,
) -> Result<HashSet<(String, String)>, StoreError> {
    let backend = db.get_database_backend();
    let models = rows.iter().map(|row| {
        let (delivered, read) = match kind {
            ReceiptKind::Delivered => (row.delivered, 0),
            ReceiptKind::Read => (row.read, row.read),
        };
        receipt::ActiveModel {
            consultation_id: Set(row.consultation_id.to_string()),
            user_id: Set(row.user.to_string()),
            delivered_seq: Set(to_i64(delivered)),
            read_seq: Set(to_i64(read)),
            updated_at: Set(now),
        }
    });
    let column = match kind {
        ReceiptKind::Delivered => receipt::Column::DeliveredSeq,
        ReceiptKind::Read => receipt::Column::ReadSeq,
    };
    let mut on_conflict =
        OnConflict::columns([receipt::Column::ConsultationId, receipt::Column::UserId]);
    on_conflict.update_columns([column, receipt::Column::UpdatedAt]);
    if kind == ReceiptKind::Read {
        // SQLite's two-argument `MAX` (PostgreSQL flushes through
        // `pg_receipts`).
        on_conflict.value(
            receipt::Column::DeliveredSeq,
            Expr::cust("MAX(receipts.delivered_seq, excluded.delivered_seq)"),
        );
    }
    // Only a position that grows changes the row (and is returned).
    on_conflict.action_and_where(
        Expr::col((receipt::Entity, column)).lt(Expr::col((Alias::new("excluded"), column))),
    );
    let mut statement = receipt::Entity::insert_many(models)
        .on_conflict(on_conflict)
        .into_query();
    statement.returning(
        Query::returning().columns([receipt::Column::ConsultationId, receipt::Column::UserId]),
    );
    let mut changed = HashSet::new();
    for row in db.query_all(backend.build(&statement)).await? {
        let consultation: String = row.try_get("", "consultation_id")?;
        let user: String = row.try_get("", "user_id")?;
        changed.insert((consultation, user));
    }
    Ok(changed)
}

#[cfg(test)]
mod tests;
