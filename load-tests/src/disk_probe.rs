//! The disk's own sync latency, measured beside a hub during a run: a
//! thread writes 4 KiB into a file of its own in the hub's folder and syncs
//! it (`fdatasync`), every [`EVERY`], and records how long each sync took.
//!
//! In the hub's durable mode every commit waits for such a sync, so a
//! delivery's tail can be no better than the disk's; the run reports both
//! side by side (docs/benchmarks.md compares the durable mode's p99 with
//! the target plus this probe's p99). The probe's own load, 400 KiB/s of
//! writes, is small beside a hub's log.

use crate::stats::{LatencyRecorder, LatencySummary};
use anyhow::{Context, Result};
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

/// A running probe; [`DiskProbe::finish`] stops it.
#[derive(Debug)]
pub struct DiskProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<LatencyRecorder>>,
}

impl DiskProbe {
    /// Starts probing the file system of `folder`.
    ///
    /// # Errors
    ///
    /// When the probe's file cannot be created or the thread started.
    pub fn start(folder: &Path) -> Result<Self> {
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
            .spawn(move || probe(&file, &stopping))
            .context("starting the disk probe thread")?;
        Ok(Self { stop, thread })
    }

    /// Stops the probe and returns the syncs' latencies.
    ///
    /// # Errors
    ///
    /// When a write or a sync failed, or the thread panicked.
    pub fn finish(self) -> Result<LatencySummary> {
        self.stop.store(true, Ordering::Relaxed);
        let recorder = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the disk probe thread panicked"))??;
        Ok(recorder.summary())
    }
}

fn probe(file: &File, stop: &AtomicBool) -> Result<LatencyRecorder> {
    let mut recorder = LatencyRecorder::new();
    let page = [0x5a_u8; WRITE_BYTES];
    let mut index = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let offset = (index % PAGES) * WRITE_BYTES as u64;
        file.write_all_at(&page, offset)
            .context("writing the disk probe's page")?;
        let started = Instant::now();
        file.sync_data().context("syncing the disk probe's file")?;
        recorder.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        index += 1;
        std::thread::sleep(EVERY);
    }
    Ok(recorder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_records_a_sync_per_round_and_leaves_its_file_small() {
        let folder = tempfile::tempdir().unwrap();
        let probe = DiskProbe::start(folder.path()).unwrap();
        std::thread::sleep(EVERY * 30);
        let summary = probe.finish().unwrap();
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
}
