//! Measurements: latency histograms (HdrHistogram, microseconds), counts per
//! time bucket, and the wall clock shared by every harness process.
//!
//! Pure bookkeeping with no I/O, so histograms can be merged across tasks
//! and, through [`Buckets`], across worker processes.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest latency a histogram tracks exactly, in microseconds (10 minutes);
/// larger values are clamped to it.
const HISTOGRAM_MAX_US: u64 = 600_000_000;
/// Significant decimal digits kept by every histogram (0.1 % error).
const HISTOGRAM_DIGITS: u8 = 3;

/// Microseconds since the Unix epoch. Every harness process on the machine
/// reads the same clock, so a timestamp written into a message body by one
/// process can be compared with the receive time in another.
pub fn unix_micros() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// Latencies recorded into a histogram shared by many receivers, a few at a
/// time: one lock per [`LATENCY_BATCH`] values instead of one per message,
/// and no histogram (168 KiB) per receiver.
#[derive(Debug)]
pub struct LatencyBatch {
    shared: Arc<Mutex<LatencyRecorder>>,
    pending: Vec<u64>,
}

/// Latencies a [`LatencyBatch`] holds before it records them.
pub const LATENCY_BATCH: usize = 64;

impl LatencyBatch {
    /// An empty batch for `shared`.
    pub fn new(shared: Arc<Mutex<LatencyRecorder>>) -> Self {
        Self {
            shared,
            pending: Vec::new(),
        }
    }

    /// Records `micros`, into the shared histogram once the batch is full.
    pub fn record(&mut self, micros: u64) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(LATENCY_BATCH);
        }
        self.pending.push(micros);
        if self.pending.len() >= LATENCY_BATCH {
            self.flush();
        }
    }

    /// Records what is held into the shared histogram.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // A receiver that panicked holding the lock left whole values only.
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for micros in self.pending.drain(..) {
            shared.record(micros);
        }
    }
}

impl Drop for LatencyBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty histogram covering 1 µs to 10 minutes at 3 significant digits.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        // Constant, valid bounds: low 1 ≥ 1, high ≥ 2 × low, digits ≤ 5.
        let histogram = Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_DIGITS)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one latency; 0 counts as 1 µs, anything above the range is
    /// clamped to its top.
    pub fn record(&mut self, micros: u64) {
        self.histogram
            .saturating_record(micros.clamp(1, HISTOGRAM_MAX_US));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        // Both histograms share the same bounds, so `add` cannot fail; should
        // it, fall back to re-recording value by value.
        if self.histogram.add(&other.histogram).is_err() {
            for value in other.histogram.iter_recorded() {
                self.histogram.saturating_record_n(
                    value.value_iterated_to().clamp(1, HISTOGRAM_MAX_US),
                    value.count_at_value(),
                );
            }
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Value at `quantile` (0.0 to 1.0), in microseconds.
    pub fn quantile(&self, quantile: f64) -> u64 {
        self.histogram.value_at_quantile(quantile)
    }

    /// The usual percentiles.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        LatencySummary {
            count: h.len(),
            min_us: if h.is_empty() { 0 } else { h.min() },
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// The percentile spectrum: `(percentile, microseconds)` points for a
    /// latency-by-percentile plot, denser towards the tail.
    pub fn spectrum(&self) -> Vec<(f64, u64)> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        self.histogram
            .iter_quantiles(4)
            .map(|value| {
                (
                    value.quantile_iterated_to() * 100.0,
                    value.value_iterated_to(),
                )
            })
            .collect()
    }

    /// The non-empty buckets, to carry the histogram across a process
    /// boundary.
    pub fn to_buckets(&self) -> Buckets {
        Buckets(
            self.histogram
                .iter_recorded()
                .map(|value| (value.value_iterated_to(), value.count_at_value()))
                .collect(),
        )
    }

    /// Rebuilds a histogram from [`Self::to_buckets`] output.
    pub fn from_buckets(buckets: &Buckets) -> Self {
        let mut recorder = Self::new();
        for &(value, count) in &buckets.0 {
            recorder
                .histogram
                .saturating_record_n(value.clamp(1, HISTOGRAM_MAX_US), count);
        }
        recorder
    }
}

/// A histogram as `(value µs, count)` pairs, for JSON lines between
/// processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(u64, u64)>);

impl Buckets {
    /// True when nothing was recorded (or the buckets were cleared after use).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest value.
    pub min_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

/// Counts per fixed time bucket since a start time (Unix microseconds), for
/// throughput-over-time plots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// Unix microseconds at which bucket 0 starts.
    pub start_unix_us: u64,
    /// Width of one bucket in milliseconds.
    pub bucket_ms: u64,
    /// Events per bucket.
    pub counts: Vec<u64>,
}

/// Longest timeline kept, in buckets; later events land in the last bucket.
const TIMELINE_MAX_BUCKETS: usize = 100_000;

impl Timeline {
    /// An empty timeline starting at `start_unix_us`.
    pub fn new(start_unix_us: u64, bucket_ms: u64) -> Self {
        Self {
            start_unix_us,
            bucket_ms: bucket_ms.max(1),
            counts: Vec::new(),
        }
    }

    /// Counts `n` events at `at_unix_us` (events before the start go to
    /// bucket 0).
    pub fn add(&mut self, at_unix_us: u64, n: u64) {
        let offset_ms = at_unix_us.saturating_sub(self.start_unix_us) / 1000;
        let index = usize::try_from(offset_ms / self.bucket_ms)
            .unwrap_or(usize::MAX)
            .min(TIMELINE_MAX_BUCKETS - 1);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += n;
    }

    /// Adds another timeline's counts, aligning their start times.
    pub fn merge(&mut self, other: &Self) {
        for (i, &count) in other.counts.iter().enumerate() {
            if count > 0 {
                let offset_us = u64::try_from(i).unwrap_or(u64::MAX) * other.bucket_ms * 1000;
                self.add(other.start_unix_us + offset_us, count);
            }
        }
    }

    /// `(seconds since start, events per second)` for each bucket.
    pub fn rate_points(&self) -> Vec<(f64, f64)> {
        let width_secs = self.bucket_ms as f64 / 1000.0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &count)| (i as f64 * width_secs, count as f64 / width_secs))
            .collect()
    }

    /// Median rate (events per second) over the full buckets, leaving out
    /// the first and last, which a run only partly covers.
    pub fn steady_rate(&self) -> f64 {
        let width_secs = self.bucket_ms as f64 / 1000.0;
        let mut inner: Vec<u64> = match self.counts.len() {
            0 => return 0.0,
            1 | 2 => self.counts.clone(),
            n => self.counts[1..n - 1].to_vec(),
        };
        inner.sort_unstable();
        inner[inner.len() / 2] as f64 / width_secs
    }
}

/// Counts of in-order delivery by sequence number for one receiver: what
/// arrived, what was skipped, what came twice or late.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTracker {
    /// Highest `seq` seen so far (the join position before any message).
    pub last: u64,
    /// Messages received with `seq = last + 1`.
    pub in_order: u64,
    /// Jumps forward (each one a gap).
    pub gaps: u64,
    /// Messages skipped by those jumps.
    pub skipped: u64,
    /// Messages with `seq ≤ last`.
    pub stale: u64,
}

impl SeqTracker {
    /// Starts after `position` (the room's last `seq` when joined).
    pub fn starting_at(position: u64) -> Self {
        Self {
            last: position,
            ..Self::default()
        }
    }

    /// Accounts for a received `seq`.
    pub fn observe(&mut self, seq: u64) {
        if seq == self.last + 1 {
            self.in_order += 1;
            self.last = seq;
        } else if seq > self.last {
            self.gaps += 1;
            self.skipped += seq - self.last - 1;
            self.in_order += 1;
            self.last = seq;
        } else {
            self.stale += 1;
        }
    }

    /// Messages up to `final_seq` not received: those skipped plus the tail
    /// not reached.
    pub fn missed(&self, final_seq: u64) -> u64 {
        self.skipped + final_seq.saturating_sub(self.last)
    }
}

#[cfg(test)]
mod tests;
