//! The scenarios, one module each, and what they share: watching the hub's
//! resource use over a run, and the run tag that keeps ids of repeated runs
//! against one hub apart.
//!
//! - `fanout`: paced senders, many receivers per room; loss and latency.
//! - `abuse`: the honest 1:1 load alone and beside attackers, in rounds.
//! - `idle`: many joined, silent connections; memory and CPU per connection.
//! - `storm`: every follower drops at once and resumes; time and misses.
//! - `dashboard`: status cycles under dashboard watchers; delta latency.
//! - `cluster`: the whole deployment (PostgreSQL, Redis or a Redis
//!   Cluster, N nodes) under a large idle and chatting population, through
//!   a drain and a `kill -9`.
//! - `setup`: rooms, tokens and worker plumbing shared by `idle` and `storm`.

pub mod abuse;
pub mod cluster;
pub mod dashboard;
pub mod fanout;
pub mod idle;
pub mod setup;
pub mod storm;

use crate::procstat::{self, Monitor, ProcSample};
use crate::stats::unix_micros;
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;

/// How often the hub is sampled during a run.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The hub's CPU and memory over one measured window.
#[derive(Debug, Clone, Serialize)]
pub struct HubUsage {
    /// Reading at the start of the window.
    pub start: ProcSample,
    /// Reading at its end.
    pub end: ProcSample,
    /// CPU time used in the window, µs (all hub processes together).
    pub cpu_us: u64,
    /// That CPU time as a share of the wall time, in percent of one core.
    pub cpu_percent_of_core: f64,
    /// Readings once a second through the window.
    pub samples: Vec<ProcSample>,
}

/// Samples the hub processes from [`HubWatch::start`] to
/// [`HubWatch::finish`]; does nothing when no pids are known.
#[derive(Debug)]
pub struct HubWatch {
    pids: Vec<u32>,
    start: Option<ProcSample>,
    monitor: Monitor,
}

impl HubWatch {
    /// Takes the first reading and starts sampling.
    ///
    /// # Errors
    ///
    /// When a given process cannot be read.
    pub fn start(pids: &[u32]) -> Result<Self> {
        let start = if pids.is_empty() {
            None
        } else {
            Some(procstat::sample(pids)?)
        };
        Ok(Self {
            pids: pids.to_vec(),
            start,
            monitor: Monitor::start(pids.to_vec(), SAMPLE_EVERY),
        })
    }

    /// A reading now, if pids are known.
    ///
    /// # Errors
    ///
    /// When a process cannot be read (it has exited, for example).
    pub fn now(&self) -> Result<Option<ProcSample>> {
        if self.pids.is_empty() {
            return Ok(None);
        }
        Ok(Some(procstat::sample(&self.pids)?))
    }

    /// Takes the last reading and returns the window's usage.
    ///
    /// # Errors
    ///
    /// When a process cannot be read.
    pub async fn finish(self) -> Result<Option<HubUsage>> {
        let end = self.now()?;
        let samples = self.monitor.finish().await;
        let (Some(start), Some(end)) = (self.start, end) else {
            return Ok(None);
        };
        let wall_us = end.at_unix_us.saturating_sub(start.at_unix_us).max(1);
        let cpu_us = end.cpu_since(&start);
        Ok(Some(HubUsage {
            start,
            end,
            cpu_us,
            cpu_percent_of_core: cpu_us as f64 / wall_us as f64 * 100.0,
            samples,
        }))
    }
}

/// A short tag unique to this run, for user ids and clinics, so repeated
/// runs against one hub do not share people.
pub fn run_tag() -> String {
    format!("{:x}", unix_micros() % 0xffff_ffff)
}

/// Per-unit ratio, `None` when there are no units.
pub fn per(total: f64, units: u64) -> Option<f64> {
    (units > 0).then(|| total / units as f64)
}
