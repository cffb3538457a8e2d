//! The stored floor: the floor with every message written to a SQLite file
//! the way the hub's SQLite writer writes it, and nothing else added. A
//! thread of its own holds one connection; it takes what is queued (after
//! the hub's linger), and in one `BEGIN IMMEDIATE … COMMIT` reads each
//! room's position, inserts the message into a table with the hub's columns
//! and unique index and moves the room's `last_seq`, with cached prepared
//! statements; then it answers each sender, who fans the message out. A
//! second thread runs a passive checkpoint every second, as the hub's does.
//! Both install the hub's page cache guard and log-frame shim first.
//!
//! Left out on purpose, since they are the hub's own work rather than
//! storage: authorization, notification planning, presence, metrics,
//! dashboards, the duplicate answer of a retried `client_msg_id` (a clash is
//! an error here) and, with `synchronous = normal`, the hub's log syncs
//! between checkpoints. So the hub's CPU per message over this floor's is
//! what the hub adds beyond storing each message in SQLite.

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Messages written in one transaction at most, as the hub's default.
const BATCH_MAX: usize = 256;
/// The hub's writer connection's page cache (SQLite's negative KiB count).
const WRITER_CACHE_KIB: i64 = -16 * 1024;
/// The hub's default spacing of checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The hub's tables as its migrations leave them on SQLite: `messages`
/// with its unique `(consultation_id, seq)` index (the hub's writer keeps
/// `client_msg_id`s apart itself on SQLite), and the consultation row the
/// writer reads and moves.
const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS consultations ( id varchar(128) NOT NULL PRIMARY KEY, \
  clinic_id varchar(128) NOT NULL, provider_id varchar(128) NOT NULL, \
  patient_id varchar(128) NOT NULL, status varchar(32) NOT NULL, scheduled_at text NOT NULL, \
  waiting_since text NULL, staff_messaged_first boolean NOT NULL DEFAULT FALSE, \
  last_seq bigint NOT NULL DEFAULT 0, rev bigint NOT NULL DEFAULT 0, created_at text NOT NULL, \
  updated_at text NOT NULL, ended_at text NULL, messages_purged_at text NULL);
CREATE TABLE IF NOT EXISTS messages ( id integer NOT NULL PRIMARY KEY, \
  consultation_id varchar(128) NOT NULL, seq bigint NOT NULL, sender_id varchar(128) NOT NULL, \
  sender_role varchar(16) NOT NULL, kind varchar(16) NOT NULL, body text NOT NULL, \
  client_msg_id varchar(128) NULL, created_at text NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ux_messages_consultation_seq ON messages (consultation_id, seq);";

const NEW_ROOM: &str = "INSERT INTO consultations (id, clinic_id, provider_id, patient_id, \
     status, scheduled_at, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, 'in_progress', ?5, ?5, ?5)";

const POSITION: &str = "SELECT rowid, last_seq, status, staff_messaged_first \
     FROM consultations WHERE id = ?1";

const INSERT_MESSAGE: &str = "INSERT INTO messages \
     (consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, created_at) \
     VALUES (?1, ?2, ?3, ?4, 'chat', ?5, ?6, ?7)";

const NEXT_SEQ: &str = "UPDATE consultations SET last_seq = ?2, rev = rev + ?3, \
     staff_messaged_first = staff_messaged_first OR ?4 WHERE rowid = ?1";

/// What the stored floor writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The hub's SQLite tables.
    Sqlite,
    /// An append-only file of messages beside the database path.
    Log,
}

impl StoreKind {
    /// `sqlite` or `log`.
    ///
    /// # Errors
    ///
    /// For anything else.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "sqlite" => Ok(Self::Sqlite),
            "log" => Ok(Self::Log),
            other => Err(anyhow!(
                "the stored floor writes sqlite or log, not {other}"
            )),
        }
    }
}

/// How the stored floor writes: what, where, how durably, how long a batch
/// waits.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite tables or an append-only file.
    pub kind: StoreKind,
    /// The SQLite file (created when missing); the log is this path with
    /// its extension changed to `messages`.
    pub path: PathBuf,
    /// `PRAGMA synchronous`: `FULL` (the hub's default) or `NORMAL`.
    pub synchronous: String,
    /// How long a batch's first message waits for others (the hub's 500 µs).
    pub linger: Duration,
}

impl StoreConfig {
    /// Reads, for `kind`, the hub's settings the harness passes to a
    /// started hub:
    /// `CONSULT_DATABASE__URL` (`sqlite://PATH[?…]`),
    /// `CONSULT_DATABASE__SQLITE_SYNCHRONOUS` and
    /// `CONSULT_DATABASE__APPEND_LINGER_US`, through `var`.
    ///
    /// # Errors
    ///
    /// When the URL is missing or not a SQLite file, or a value is not
    /// understood.
    pub fn from_vars(kind: StoreKind, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = var("CONSULT_DATABASE__URL")
            .ok_or_else(|| anyhow!("the stored floor needs CONSULT_DATABASE__URL"))?;
        let path = url
            .strip_prefix("sqlite://")
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty() && !path.starts_with(':'))
            .ok_or_else(|| anyhow!("the stored floor writes a SQLite file, not {url}"))?;
        let synchronous = match var("CONSULT_DATABASE__SQLITE_SYNCHRONOUS").as_deref() {
            None | Some("full") => "FULL",
            Some("normal") => "NORMAL",
            Some(other) => return Err(anyhow!("sqlite_synchronous {other}: full or normal")),
        };
        let linger_us = match var("CONSULT_DATABASE__APPEND_LINGER_US") {
            None => 500,
            Some(value) => value
                .parse()
                .with_context(|| format!("append_linger_us {value}"))?,
        };
        Ok(Self {
            kind,
            path: PathBuf::from(path),
            synchronous: synchronous.to_owned(),
            linger: Duration::from_micros(linger_us),
        })
    }
}

/// A message for the writer.
#[derive(Debug)]
pub(crate) struct NewMessage {
    pub(crate) room: String,
    pub(crate) sender: String,
    pub(crate) sender_role: &'static str,
    pub(crate) body: String,
    pub(crate) client_msg_id: String,
}

/// Where a stored message went: its `seq` and time.
pub(crate) type Stored = (u64, DateTime<Utc>);

/// What the writer thread writes each batch with.
pub(crate) trait BatchWriter: Send + 'static {
    /// Writes `jobs` at once; an outcome per job, `Some` for a message.
    ///
    /// # Errors
    ///
    /// When the batch could not be written (none of it then counts).
    fn write(&mut self, jobs: &[Job]) -> Result<Vec<Option<Stored>>, String>;
}

impl BatchWriter for Connection {
    fn write(&mut self, jobs: &[Job]) -> Result<Vec<Option<Stored>>, String> {
        write(self, jobs).map_err(|error| error.to_string())
    }
}

pub(crate) enum Job {
    Room {
        id: String,
        clinic: String,
        provider: String,
        patient: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Message {
        message: NewMessage,
        queued_at: Instant,
        reply: oneshot::Sender<Result<Stored, String>>,
    },
}

/// The writer's queue.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    queue: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Store {
    /// Opens the file (for SQLite: creates the tables and starts the
    /// checkpoint thread) and starts the writer thread.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or a thread cannot start.
    pub(crate) fn start(config: &StoreConfig) -> Result<Self> {
        let (queue, incoming) = mpsc::unbounded_channel();
        let linger = config.linger;
        let writer: Box<dyn FnOnce() + Send> = match config.kind {
            StoreKind::Sqlite => {
                let writer = open_sqlite(config)?;
                Box::new(move || write_loop(writer, incoming, linger))
            }
            StoreKind::Log => {
                let writer = super::log_store::MessageLog::open(
                    &config.path.with_extension("messages"),
                    config.synchronous == "FULL",
                )?;
                Box::new(move || write_loop(writer, incoming, linger))
            }
        };
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(writer)
            .context("starting the writer")?;
        Ok(Self { queue })
    }

    /// Stores a room (a consultation row) for `id`.
    pub(crate) async fn add_room(
        &self,
        id: &str,
        clinic: &str,
        provider: &str,
        patient: &str,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Room {
                id: id.to_owned(),
                clinic: clinic.to_owned(),
                provider: provider.to_owned(),
                patient: patient.to_owned(),
                reply,
            })
            .map_err(|_| "the writer stopped".to_owned())?;
        answer.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Stores `message` and answers once its batch has committed.
    pub(crate) async fn append(&self, message: NewMessage) -> Result<Stored, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Message {
                message,
                queued_at: Instant::now(),
                reply,
            })
            .map_err(|_| "the writer stopped".to_owned())?;
        answer.await.map_err(|_| "the writer stopped".to_owned())?
    }
}

/// The writer's connection, after the guard, the shim and the tables, and
/// the checkpoint thread on a second connection.
fn open_sqlite(config: &StoreConfig) -> Result<Connection> {
    // The hub's guard and shim, as `store::prepare_sqlite` installs them.
    consult_sqlite_pcache::install().map_err(|error| anyhow!("{error}"))?;
    consult_sqlite_wal_frames::install().map_err(|error| anyhow!("{error}"))?;
    let writer = open(&config.path, &config.synchronous)?;
    writer
        .execute_batch(SCHEMA)
        .context("creating the tables")?;
    writer.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    let checkpointer = open(&config.path, &config.synchronous)?;
    std::thread::Builder::new()
        .name("floor-checkpoint".into())
        .spawn(move || checkpoint_loop(&checkpointer))
        .context("starting the checkpoints")?;
    Ok(writer)
}

fn open(path: &Path, synchronous: &str) -> Result<Connection> {
    let connection =
        Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", synchronous)?;
    Ok(connection)
}

fn write_loop(
    mut writer: impl BatchWriter,
    mut incoming: mpsc::UnboundedReceiver<Job>,
    linger: Duration,
) {
    while let Some(first) = incoming.blocking_recv() {
        if let Job::Message { queued_at, .. } = &first {
            let wait = linger.saturating_sub(queued_at.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MAX {
            match incoming.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        match writer.write(&jobs) {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    answer(job, Ok(outcome));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "floor batch not written");
                for job in jobs {
                    answer(job, Err(error.clone()));
                }
            }
        }
    }
}

/// A job's outcome: `Some` for a message, `None` for a room.
fn answer(job: Job, outcome: Result<Option<Stored>, String>) {
    match job {
        Job::Room { reply, .. } => {
            let _gone = reply.send(outcome.map(|_| ()));
        }
        Job::Message { reply, .. } => {
            let stored = outcome.and_then(|stored| stored.ok_or_else(|| "not stored".to_owned()));
            let _gone = reply.send(stored);
        }
    }
}

fn write(connection: &mut Connection, jobs: &[Job]) -> rusqlite::Result<Vec<Option<Stored>>> {
    let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = Utc::now();
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Room {
                id,
                clinic,
                provider,
                patient,
                ..
            } => {
                txn.prepare_cached(NEW_ROOM)?
                    .execute(params![id, clinic, provider, patient, at])?;
                outcomes.push(None);
            }
            Job::Message { message, .. } => {
                let position = txn
                    .prepare_cached(POSITION)?
                    .query_row(params![message.room], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, bool>(3)?,
                        ))
                    })
                    .optional()?;
                let Some((rowid, last_seq, _status, _staff_first)) = position else {
                    return Err(rusqlite::Error::QueryReturnedNoRows);
                };
                let seq = last_seq + 1;
                let sent_at = Utc::now();
                txn.prepare_cached(INSERT_MESSAGE)?.execute(params![
                    message.room,
                    seq,
                    message.sender,
                    message.sender_role,
                    message.body,
                    message.client_msg_id,
                    sent_at.to_rfc3339_opts(SecondsFormat::Micros, true)
                ])?;
                txn.prepare_cached(NEXT_SEQ)?
                    .execute(params![rowid, seq, 0, false])?;
                outcomes.push(Some((seq.unsigned_abs(), sent_at)));
            }
        }
    }
    txn.commit()?;
    Ok(outcomes)
}

fn checkpoint_loop(connection: &Connection) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "floor checkpoint failed");
        }
    }
}
