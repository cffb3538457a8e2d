//! WAL checkpoints on a connection of their own, so that copying the log
//! back into the database file (and its fsync) never runs inside a message
//! batch's commit.
//!
//! A passive checkpoint runs when the writer has committed since the last
//! one, at most every interval (`database.sqlite_checkpoint_interval_ms`),
//! and once more when the writer stops. It never blocks the writer, but under
//! steady writes it never catches up either (the writer appends while it
//! copies), and the log is only rewound once a checkpoint has copied all of
//! it. A restart checkpoint does that: it holds the writer off while it
//! copies what was appended meanwhile and syncs both files (several
//! milliseconds on a disk), and the next commit starts the log again from the
//! beginning. So the log is rewound when the writer has been quiet for an
//! interval, which costs nobody anything, and under writes without pause only
//! once it passes [`RESTART_FRAMES`]. Once it is rewound and nothing new is
//! written, the thread sleeps until the next commit wakes it.
//!
//! SQLite syncs the database file only after a checkpoint that copied the
//! log to its end, which under steady writes only a restart does. So this
//! thread syncs the file itself after each passive checkpoint, and before a
//! restart runs passive checkpoints until little is left to copy: the
//! restart then copies and syncs only that, instead of every page written
//! since the last rewind (10–50 ms measured, the writer held off).
//!
//! The interval is short (25 ms by default) because a passive checkpoint
//! first syncs the log, and while the kernel writes the log's last page out
//! the writer's next commit, which appends to that page, waits for it. The
//! less log a sync has to write, the shorter that wait
//! (docs/benchmarks.md, "Checkpoints every 25 ms").

use super::StoreError;
use crate::supervisor::{Worker, Workers};
use rusqlite::Connection;
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

/// What the writer and the checkpoint thread share.
#[derive(Debug, Default)]
struct Flags {
    /// Committed since the last checkpoint.
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

/// Starts the checkpoint thread on `connection`, checkpointing at most every
/// `interval` while the writer commits, and sleeping while it does not.
/// A panic restarts the loop on the same connection (supervised).
pub(super) fn start(
    connection: Connection,
    database: std::fs::File,
    interval: Duration,
    workers: &Arc<Workers>,
) -> Result<Checkpoints, StoreError> {
    let flags = Arc::new(Flags::default());
    let shared = flags.clone();
    let workers = Arc::clone(workers);
    let handle = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            workers.run_thread(Worker::Checkpoint, || {
                run(&connection, &database, interval, &shared, &workers);
            });
        })
        .map_err(|error| StoreError::Thread("sqlite-checkpoint", error))?;
    Ok(Checkpoints {
        flags,
        thread: handle.thread().clone(),
    })
}

fn run(
    connection: &Connection,
    database: &std::fs::File,
    interval: Duration,
    flags: &Flags,
    workers: &Workers,
) {
    // Written since the log was last rewound (after a restart, the next
    // commit's checkpoint finds out).
    let mut unrewound = false;
    loop {
        if unrewound {
            std::thread::park_timeout(interval);
        } else {
            sleep_until_written(flags, interval);
        }
        workers.fail_if_asked(Worker::Checkpoint);
        let stopping = flags.stop.load(Ordering::SeqCst);
        if flags.dirty.swap(false, Ordering::SeqCst) {
            unrewound = !copy_and_rewind_if_large(connection, database);
        } else if unrewound {
            // A quiet interval: rewinding holds no writer off.
            unrewound = run_checkpoint(connection, "RESTART").is_none();
        }
        if stopping {
            break;
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
fn copy_and_rewind_if_large(connection: &Connection, database: &std::fs::File) -> bool {
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
fn sync_database(database: &std::fs::File) {
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
