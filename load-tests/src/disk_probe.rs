//! The disk's own sync latency, measured beside a hub during a run: a
//! thread writes 4 KiB into a file of its own in the hub's folder and syncs
//! it (`fdatasync`), every [`EVERY`], and records how long each sync took.
//!
//! In the hub's durable mode every commit waits for such a sync, so a
//! delivery's tail can be no better than the disk's; the run reports both
//! side by side (docs/benchmarks.md compares the durable mode's p99 with
//! the target plus this probe's p99). The probe's own load, 400 KiB/s of
//! writes, is small beside a hub's log.
//!
//! It also keeps each sync that took its caller's threshold or longer (the
//! delay at which the scenario beside it counts a delivery as late), with
//! when it began, so that a run of late deliveries can be set beside the
//! moments the disk itself stood still: a durable commit waits out such a
//! sync as the probe does.

use crate::stats::{LatencyRecorder, LatencySummary, unix_micros};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between one sync's end and the next write.
pub const EVERY: Duration = Duration::from_millis(10);
/// Bytes written before each sync: one page.
const WRITE_BYTES: usize = 4096;
/// Pages the file cycles through, so it stays small.
const PAGES: u64 = 256;
/// The probe's file name in the folder it is given.
const FILE_NAME: &str = "disk-probe.bin";
/// Slow syncs kept at most; later ones are counted in the summary only.
const SLOW_KEPT: usize = 1_000;

/// One sync that took the probe's threshold or longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowSync {
    /// When the sync began, Unix microseconds.
    pub at_unix_us: u64,
    /// How long it took, microseconds.
    pub took_us: u64,
}

/// What a probe measured.
#[derive(Debug, Clone)]
pub struct DiskSyncs {
    /// Every sync's latency.
    pub summary: LatencySummary,
    /// The slow ones, in the order they began.
    pub slow: Vec<SlowSync>,
}

/// The syncs a probe has timed so far.
#[derive(Debug)]
struct SyncLog {
    /// A sync this long (microseconds) or longer is kept in `slow`.
    slow_after_us: u64,
    recorder: LatencyRecorder,
    slow: Vec<SlowSync>,
}

impl SyncLog {
    fn new(slow_after_us: u64) -> Self {
        Self {
            slow_after_us,
            recorder: LatencyRecorder::new(),
            slow: Vec::new(),
        }
    }

    fn record(&mut self, at_unix_us: u64, took_us: u64) {
        self.recorder.record(took_us);
        if took_us >= self.slow_after_us && self.slow.len() < SLOW_KEPT {
            self.slow.push(SlowSync {
                at_unix_us,
                took_us,
            });
        }
    }

    fn finish(self) -> DiskSyncs {
        DiskSyncs {
            summary: self.recorder.summary(),
            slow: self.slow,
        }
    }
}

/// A running probe; [`DiskProbe::finish`] stops it.
#[derive(Debug)]
pub struct DiskProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<SyncLog>>,
}

impl DiskProbe {
    /// Starts probing the file system of `folder`, keeping each sync of
    /// `slow_after_us` or longer in [`DiskSyncs::slow`].
    ///
    /// # Errors
    ///
    /// When the probe's file cannot be created or the thread started.
    pub fn start(folder: &Path, slow_after_us: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(folder.join(FILE_NAME))
            .with_context(|| format!("creating the disk probe's file in {}", folder.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("disk-probe".into())
            .spawn(move || probe(&file, &stopping, slow_after_us))
            .context("starting the disk probe thread")?;
        Ok(Self { stop, thread })
    }

    /// Stops the probe and returns the syncs' latencies and the slow ones.
    ///
    /// # Errors
    ///
    /// When a write or a sync failed, or the thread panicked.
    pub fn finish(self) -> Result<DiskSyncs> {
        self.stop.store(true, Ordering::Relaxed);
        let log = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the disk probe thread panicked"))??;
        Ok(log.finish())
    }
}

fn probe(file: &File, stop: &AtomicBool, slow_after_us: u64) -> Result<SyncLog> {
    let mut log = SyncLog::new(slow_after_us);
    let page = [0x5a_u8; WRITE_BYTES];
    let mut index = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let offset = (index % PAGES) * WRITE_BYTES as u64;
        file.write_all_at(&page, offset)
            .context("writing the disk probe's page")?;
        let at_unix_us = unix_micros();
        let started = Instant::now();
        file.sync_data().context("syncing the disk probe's file")?;
        log.record(
            at_unix_us,
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
        index += 1;
        std::thread::sleep(EVERY);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold the tests give their probes.
    const SLOW: u64 = 20_000;

    #[test]
    fn a_probe_records_a_sync_per_round_and_leaves_its_file_small() {
        let folder = tempfile::tempdir().unwrap();
        let probe = DiskProbe::start(folder.path(), SLOW).unwrap();
        std::thread::sleep(EVERY * 30);
        let DiskSyncs { summary, slow } = probe.finish().unwrap();
        assert!(slow.len() as u64 <= summary.count);
        assert!(slow.iter().all(|sync| sync.took_us >= SLOW));
        // At most one sync per EVERY, and some at all.
        assert!(summary.count >= 1, "{summary:?}");
        assert!(summary.count <= 31, "{summary:?}");
        assert!(summary.min_us >= 1);
        assert!(summary.p50_us <= summary.max_us);
        let size = std::fs::metadata(folder.path().join(FILE_NAME))
            .unwrap()
            .len();
        assert!(size <= PAGES * WRITE_BYTES as u64, "{size}");
    }

    #[test]
    fn only_syncs_of_the_slow_threshold_or_longer_are_kept_with_when_they_began() {
        let mut log = SyncLog::new(SLOW);
        log.record(1_000, 400);
        log.record(2_000, SLOW - 1);
        log.record(3_000, SLOW);
        log.record(4_000, 154_000);
        let syncs = log.finish();
        assert_eq!(syncs.summary.count, 4);
        assert_eq!(
            syncs.slow,
            vec![
                SlowSync {
                    at_unix_us: 3_000,
                    took_us: SLOW
                },
                SlowSync {
                    at_unix_us: 4_000,
                    took_us: 154_000
                },
            ]
        );
    }

    #[test]
    fn slow_syncs_kept_are_capped() {
        let mut log = SyncLog::new(SLOW);
        for i in 0..(SLOW_KEPT as u64 + 5) {
            log.record(i, SLOW + i);
        }
        let syncs = log.finish();
        assert_eq!(syncs.slow.len(), SLOW_KEPT);
        assert_eq!(syncs.summary.count, SLOW_KEPT as u64 + 5);
    }
}
