//! WAL checkpoints on a connection of their own, so that copying the log
//! back into the database file (and its fsync) never runs inside a message
//! batch's commit.
//!
//! A passive checkpoint runs when the writer has committed since the last
//! one, at most every checkpoint interval
//! (`database.sqlite_checkpoint_interval_ms`, 1 s), and once more when the
//! writer stops. It never blocks the writer, but under steady writes it
//! never catches up either (the writer appends while it copies), and the
//! log is only rewound once a checkpoint has copied all of it. A restart
//! checkpoint does that: it holds the writer off while it copies what was
//! appended meanwhile and syncs both files (several milliseconds on a disk),
//! and the next commit starts the log again from the beginning. So the log
//! is rewound when the writer has been quiet for an interval, which costs
//! nobody anything, and under writes without pause only once it passes
//! [`RESTART_FRAMES`]. Once it is rewound and nothing new is written, the
//! thread sleeps until the next commit wakes it.
//!
//! A checkpoint copies each page once, however many times the log holds it
//! since the last checkpoint: a consultation's row and index pages are
//! written again with each of its messages, so checkpoints a second apart
//! copy a fraction of what checkpoints 25 ms apart copy: this thread's CPU
//! per message at 5,000 messages a second fell from 22 µs to 6–7 µs
//! (docs/benchmarks.md, "Checkpoints a second apart, the log synced between
//! them").
//!
//! SQLite syncs the database file only after a checkpoint that copied the
//! log to its end, which under steady writes only a restart does. So this
//! thread syncs the file itself after each passive checkpoint, and before a
//! restart runs passive checkpoints until little is left to copy: the
//! restart then copies and syncs only that, instead of every page written
//! since the last rewind (10–50 ms measured, the writer held off).
//!
//! With `synchronous = normal` commits do not sync the log; left alone, the
//! kernel would write a second of it out at each checkpoint's sync, and a
//! commit appending to a page being written out waits for it. So in that
//! mode the thread also syncs the log between checkpoints, every log sync
//! interval (`database.sqlite_log_sync_interval_ms`, 25 ms), keeping each
//! sync small. With `full` every commit syncs the log and this is skipped.

use super::StoreError;
use crate::supervisor::{Worker, Workers};
use rusqlite::Connection;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Log size (pages) above which the log is rewound even while messages are
/// written: 256 MiB of 4 KiB pages, a few seconds of the heaviest load
/// measured, so that the writer is held off that rarely.
const RESTART_FRAMES: i64 = 65_536;

/// Passive checkpoints at most run to catch up before a restart.
const CATCH_UP_PASSES: usize = 3;

/// Log pages (4 MiB) arriving during a catch-up pass small enough for the
/// restart to copy while it holds the writer off.
const CATCH_UP_FRAMES: i64 = 1_024;

/// When the thread checkpoints, and whether it syncs the log between
/// checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// At most this often while the writer commits, a checkpoint.
    pub checkpoint_every: Duration,
    /// At most this often between checkpoints, a sync of the log; `None`
    /// when every commit syncs it (`synchronous = full`).
    pub log_sync_every: Option<Duration>,
}

impl Schedule {
    /// How long the thread sleeps between two looks at the writer.
    fn tick(self) -> Duration {
        self.log_sync_every.map_or(self.checkpoint_every, |every| {
            every.min(self.checkpoint_every)
        })
    }
}

/// What the writer and the checkpoint thread share.
#[derive(Debug, Default)]
struct Flags {
    /// Committed since the thread last looked.
    dirty: AtomicBool,
    /// The thread sleeps until the next commit (the log is rewound and
    /// nothing was written since).
    asleep: AtomicBool,
    /// The writer is gone: one last checkpoint, then the thread ends.
    stop: AtomicBool,
}

/// The writer's side: marks that there is something to checkpoint; dropping
/// it stops the checkpoint thread after a last checkpoint.
#[derive(Debug)]
pub(super) struct Checkpoints {
    flags: Arc<Flags>,
    thread: Thread,
}

impl Checkpoints {
    /// Records a commit, waking the thread if it sleeps.
    pub(super) fn written(&self) {
        self.flags.dirty.store(true, Ordering::SeqCst);
        if self.flags.asleep.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Starts the checkpoint thread on `connection`, checkpointing the database
/// (`database`, its file) and syncing the log (the file at `log`) as
/// `schedule` says while the writer commits, and sleeping while it does not.
/// A panic restarts the loop on the same connection (supervised).
pub(super) fn start(
    connection: Connection,
    database: File,
    log: PathBuf,
    schedule: Schedule,
    workers: &Arc<Workers>,
) -> Result<Checkpoints, StoreError> {
    let flags = Arc::new(Flags::default());
    let shared = flags.clone();
    let workers = Arc::clone(workers);
    let handle = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            workers.run_thread(Worker::Checkpoint, || {
                let files = Files {
                    database: &database,
                    log: LogFile::at(&log),
                };
                run(&connection, files, schedule, &shared, &workers);
            });
        })
        .map_err(|error| StoreError::Thread("sqlite-checkpoint", error))?;
    Ok(Checkpoints {
        flags,
        thread: handle.thread().clone(),
    })
}

/// The files the thread syncs.
struct Files<'a> {
    database: &'a File,
    log: LogFile<'a>,
}

fn run(
    connection: &Connection,
    mut files: Files<'_>,
    schedule: Schedule,
    flags: &Flags,
    workers: &Workers,
) {
    let tick = schedule.tick();
    // Written since the log was last rewound (after a restart, the next
    // commit's checkpoint finds out).
    let mut unrewound = false;
    // Committed since the last checkpoint.
    let mut pending = false;
    let mut last_checkpoint = Instant::now();
    loop {
        if unrewound || pending {
            std::thread::park_timeout(tick);
        } else {
            sleep_until_written(flags, tick);
        }
        workers.fail_if_asked(Worker::Checkpoint);
        let stopping = flags.stop.load(Ordering::SeqCst);
        let written = flags.dirty.swap(false, Ordering::SeqCst);
        pending |= written;
        if stopping || last_checkpoint.elapsed() >= schedule.checkpoint_every {
            if pending {
                unrewound = !copy_and_rewind_if_large(connection, files.database);
            } else if unrewound {
                // A quiet interval: rewinding holds no writer off.
                unrewound = run_checkpoint(connection, "RESTART").is_none();
            }
            pending = false;
            last_checkpoint = Instant::now();
            // Opened again at the next sync: a handle never outlives the
            // file SQLite may have replaced meanwhile by more than a second.
            files.log.close();
        } else if written && schedule.log_sync_every.is_some() {
            files.log.sync();
        }
        if stopping {
            break;
        }
    }
}

/// The log file, opened when first synced (SQLite creates it with the first
/// write).
struct LogFile<'a> {
    path: &'a Path,
    file: Option<File>,
}

impl<'a> LogFile<'a> {
    fn at(path: &'a Path) -> Self {
        Self { path, file: None }
    }

    fn close(&mut self) {
        self.file = None;
    }

    /// Syncs what the writer appended since the last sync; a failure is
    /// logged (the next checkpoint syncs the log anyway).
    fn sync(&mut self) {
        if self.file.is_none() {
            match File::open(self.path) {
                Ok(file) => self.file = Some(file),
                Err(error) => {
                    tracing::debug!(error = %error, "log file not opened for a sync");
                    return;
                }
            }
        }
        let Some(file) = &self.file else {
            return;
        };
        let started = Instant::now();
        match file.sync_data() {
            Ok(()) => metrics::histogram!("consult_sqlite_log_sync_seconds")
                .record(started.elapsed().as_secs_f64()),
            Err(error) => {
                tracing::warn!(error = %error, "log file sync failed");
                self.file = None;
            }
        }
    }
}

/// With the log rewound, sleeps until the writer commits (or stops), then
/// lets that commit's batch-mates join it for one interval.
fn sleep_until_written(flags: &Flags, interval: Duration) {
    flags.asleep.store(true, Ordering::SeqCst);
    // Checked after saying so: a commit either sees `asleep` and wakes this
    // thread, or happened before and is seen here.
    while !flags.dirty.load(Ordering::SeqCst) && !flags.stop.load(Ordering::SeqCst) {
        std::thread::park();
    }
    flags.asleep.store(false, Ordering::SeqCst);
    if !flags.stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(interval);
    }
}

/// A passive checkpoint (and a sync of the database file), then a restart
/// if the log is past [`RESTART_FRAMES`]; whether the log was rewound.
///
/// Before the restart, which holds the writer off while it copies what the
/// passive checkpoints have not, further passive checkpoints catch up on
/// what arrived meanwhile (at most [`CATCH_UP_PASSES`], until fewer than
/// [`CATCH_UP_FRAMES`] arrived during one), so that the restart has little
/// to copy and sync.
fn copy_and_rewind_if_large(connection: &Connection, database: &File) -> bool {
    let Some(mut log_frames) = run_checkpoint(connection, "PASSIVE") else {
        return false;
    };
    sync_database(database);
    if log_frames <= RESTART_FRAMES {
        return false;
    }
    for _ in 0..CATCH_UP_PASSES {
        let Some(now) = run_checkpoint(connection, "PASSIVE") else {
            break;
        };
        sync_database(database);
        let arrived = now.saturating_sub(log_frames);
        log_frames = now;
        if arrived < CATCH_UP_FRAMES {
            break;
        }
    }
    run_checkpoint(connection, "RESTART").is_some()
}

/// Syncs the database file after a passive checkpoint copied pages into it.
///
/// SQLite syncs the database only after a checkpoint that copied the log to
/// its end, which under writes without pause only the restart does: it then
/// wrote back every page the passive checkpoints had copied since the last
/// sync (several seconds of them, 10–50 ms) while holding the writer off.
/// Synced here, outside SQLite's locks, a restart has only its own pages to
/// sync.
fn sync_database(database: &File) {
    let started = Instant::now();
    match database.sync_data() {
        Ok(()) => metrics::histogram!("consult_sqlite_database_sync_seconds")
            .record(started.elapsed().as_secs_f64()),
        Err(error) => tracing::warn!(error = %error, "database file sync failed"),
    }
}

/// Runs one checkpoint; the log's size in pages, or `None` if it failed or
/// could not finish (a restart waits for readers of the old log only so
/// long; it is tried again after the next quiet interval or write).
fn run_checkpoint(connection: &Connection, mode: &'static str) -> Option<i64> {
    let started = Instant::now();
    let result = connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((busy, log_frames, copied)) => {
            let elapsed = started.elapsed();
            metrics::gauge!("consult_sqlite_wal_frames").set(log_frames as f64);
            metrics::histogram!("consult_sqlite_checkpoint_seconds", "mode" => mode)
                .record(elapsed.as_secs_f64());
            tracing::debug!(
                mode,
                busy,
                log_frames,
                copied,
                elapsed_us = elapsed.as_micros(),
                "checkpoint"
            );
            (busy == 0).then_some(log_frames)
        }
        Err(error) => {
            tracing::warn!(mode, error = %error, "sqlite checkpoint failed");
            None
        }
    }
}
