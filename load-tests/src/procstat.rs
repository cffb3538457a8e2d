//! Resource use of hub processes, read from `/proc/<pid>/stat` (CPU time)
//! and `/proc/<pid>/status` (resident memory).
//!
//! Knows nothing of the hub: it samples any process ids it is given, once
//! ([`sample`]) or once a second in the background ([`Monitor`]).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::stats::unix_micros;

/// One reading of a set of processes, summed over them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// When it was taken (Unix microseconds).
    pub at_unix_us: u64,
    /// User plus system CPU time consumed so far, in microseconds.
    pub cpu_us: u64,
    /// Resident set size now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, in KiB (`VmHWM`).
    pub rss_peak_kib: u64,
    /// Open file descriptors now.
    pub fds: u64,
}

impl ProcSample {
    /// CPU microseconds consumed between `earlier` and `self`.
    pub fn cpu_since(&self, earlier: &Self) -> u64 {
        self.cpu_us.saturating_sub(earlier.cpu_us)
    }

    /// Resident memory gained since `earlier`, in KiB (negative when it shrank).
    pub fn rss_delta_kib(&self, earlier: &Self) -> i64 {
        i64::try_from(self.rss_kib).unwrap_or(i64::MAX)
            - i64::try_from(earlier.rss_kib).unwrap_or(i64::MAX)
    }
}

/// Reads every process in `pids` and sums the readings.
///
/// # Errors
///
/// When a process does not exist or its `/proc` files cannot be parsed.
pub fn sample(pids: &[u32]) -> Result<ProcSample> {
    let mut total = ProcSample {
        at_unix_us: unix_micros(),
        ..ProcSample::default()
    };
    for &pid in pids {
        let one = sample_one(pid)?;
        total.cpu_us += one.cpu_us;
        total.rss_kib += one.rss_kib;
        total.rss_peak_kib += one.rss_peak_kib;
        total.fds += one.fds;
    }
    Ok(total)
}

fn sample_one(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count() as u64)
        .unwrap_or(0);
    Ok(ProcSample {
        at_unix_us: unix_micros(),
        cpu_us: parse_cpu_us(&stat, clock_ticks_per_sec())?,
        rss_kib: parse_status_kib(&status, "VmRSS:").unwrap_or(0),
        rss_peak_kib: parse_status_kib(&status, "VmHWM:").unwrap_or(0),
        fds,
    })
}

/// `utime + stime` from a `/proc/<pid>/stat` line, in microseconds.
pub(crate) fn parse_cpu_us(stat: &str, ticks_per_sec: u64) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces, so
    // count fields from the last ')'. utime and stime are fields 14 and 15,
    // that is the 12th and 13th after the name.
    let Some(close) = stat.rfind(')') else {
        bail!("no command name in /proc stat line");
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let tick = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .context("short /proc stat line")?
            .parse::<u64>()
            .context("non-numeric CPU time in /proc stat line")
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(ticks * 1_000_000 / ticks_per_sec.max(1))
}

/// A `Key:   1234 kB` line of `/proc/<pid>/status`, in KiB.
pub(crate) fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Kernel clock ticks per second for `/proc` CPU times (`getconf CLK_TCK`),
/// 100 when it cannot be asked: that is USER_HZ on every Linux architecture
/// this runs on.
fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Machine-wide CPU time from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineTimes {
    /// Ticks spent on anything but idle and I/O wait, all cores together.
    pub busy: u64,
    /// All ticks, all cores together.
    pub total: u64,
    /// Number of cores.
    pub cores: u64,
}

impl MachineTimes {
    /// Reads `/proc/stat` now.
    ///
    /// # Errors
    ///
    /// When `/proc/stat` cannot be read or parsed.
    pub fn now() -> Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_machine_times(&stat)
    }

    /// CPU used by the whole machine since `earlier`, in percent of one core
    /// (200 % = two cores fully busy).
    pub fn busy_percent_of_core_since(&self, earlier: &Self) -> f64 {
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        busy / total * self.cores as f64 * 100.0
    }
}

pub(crate) fn parse_machine_times(stat: &str) -> Result<MachineTimes> {
    let first = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = first
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().context("non-numeric /proc/stat field"))
        .collect::<Result<_>>()?;
    if ticks.len() < 5 {
        bail!("short cpu line in /proc/stat");
    }
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let total: u64 = ticks.iter().take(8).sum();
    let cores = stat
        .lines()
        .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
        .count() as u64;
    Ok(MachineTimes {
        busy: total - ticks[3] - ticks[4],
        total,
        cores: cores.max(1),
    })
}

/// Samples processes once a second in a background task until stopped.
#[derive(Debug)]
pub struct Monitor {
    samples: Arc<Mutex<Vec<ProcSample>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Starts sampling `pids` every `every`. With no pids it records nothing.
    pub fn start(pids: Vec<u32>, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(Self::run(pids, every, samples.clone(), stop.clone()));
        Self {
            samples,
            stop,
            task,
        }
    }

    async fn run(
        pids: Vec<u32>,
        every: Duration,
        samples: Arc<Mutex<Vec<ProcSample>>>,
        stop: CancellationToken,
    ) {
        if pids.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            // A process that has exited ends the series; the error says why
            // in the final sample taken by the caller.
            let Ok(reading) = sample(&pids) else { break };
            if let Ok(mut all) = samples.lock() {
                all.push(reading);
            }
        }
    }

    /// Stops sampling and returns the series.
    pub async fn finish(self) -> Vec<ProcSample> {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "process monitor task failed");
        }
        match self.samples.lock() {
            Ok(mut all) => std::mem::take(&mut *all),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
