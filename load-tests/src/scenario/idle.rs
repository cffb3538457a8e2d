//! `idle`: N clients connect, authenticate, join a room each and stay
//! silent.
//!
//! Measures the hub's resident memory per connection (RSS gained ÷ N) and
//! CPU per connect (CPU spent connecting ÷ N), and how long connecting all
//! of them took. Clients are raw connections ([`crate::raw`]) spread over
//! 127.0.0.x source addresses and, above one process's file limit, over
//! several worker processes ([`crate::fleet`]).

use super::setup::{self, Population};
use super::{HubUsage, HubWatch, per, run_tag};
use crate::api::Api;
use crate::fleet::{self, Command, Fleet, Report};
use crate::procstat::ProcSample;
use crate::progress;
use crate::report::{self, Plot, latency_line};
use crate::stats::{LatencyRecorder, LatencySummary};
use crate::target::Target;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Parameters of an idle run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleOptions {
    /// Connections to open.
    pub clients: usize,
    /// Rooms they join, round-robin.
    pub rooms: usize,
    /// Worker processes (1: connections live in this process).
    pub processes: usize,
    /// 127.0.0.x source addresses to spread connections over.
    pub sources: usize,
    /// Connects in flight at once, all workers together.
    pub connect_concurrency: usize,
    /// Wait after the last join before measuring memory, seconds.
    pub settle_secs: u64,
    /// How long to hold the connections after measuring, seconds.
    pub hold_secs: u64,
    /// Executable for worker processes (this program when `None`).
    #[serde(skip)]
    pub worker_exe: Option<PathBuf>,
}

/// What an idle run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// The parameters.
    pub options: IdleOptions,
    /// Connections that joined.
    pub connected: u64,
    /// Connections that failed, and the first reason.
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// From the connect command to the last join, seconds.
    pub connect_secs: f64,
    /// Per connection: from the connect command to its `joined`.
    pub connect_latency: LatencySummary,
    /// Hub before connecting.
    pub before: Option<ProcSample>,
    /// Hub right after the last join.
    pub after_connect: Option<ProcSample>,
    /// Hub after settling.
    pub settled: Option<ProcSample>,
    /// Hub at the end of the hold.
    pub held: Option<ProcSample>,
    /// (settled RSS − RSS before) ÷ connected, bytes.
    pub rss_bytes_per_connection: Option<f64>,
    /// Same at the end of the hold.
    pub rss_bytes_per_connection_held: Option<f64>,
    /// CPU from the connect command to the last join ÷ connected, µs.
    pub cpu_us_per_connect: Option<f64>,
    /// The whole run's hub usage, sampled once a second.
    pub hub: Option<HubUsage>,
    #[serde(skip)]
    connect_recorder: LatencyRecorder,
}

/// Runs the scenario.
///
/// # Errors
///
/// When setup fails or a worker dies.
pub async fn run(target: &Target, options: &IdleOptions, quiet: bool) -> Result<IdleResult> {
    let api = Api::new(&target.nodes[0].http_base, &target.api_key);
    let tag = run_tag();
    let clinic = format!("load-idle-{tag}");
    let population = Population {
        clinic: &clinic,
        tag: &tag,
        prefix: "idle",
        rooms: options.rooms,
        providers: 1,
        followers: options.clients,
        sources: options.sources,
    };
    let (_rooms, followers) = setup::followers(&api, target, &population, quiet).await?;
    let ws_urls: Vec<String> = target.nodes.iter().map(|n| n.ws_url.clone()).collect();
    let plans = fleet::split(
        &ws_urls,
        followers,
        options.processes,
        options.connect_concurrency,
        10_000,
    );
    let exe = setup::worker_exe(options.processes, options.worker_exe.clone())?;
    let mut fleet = Fleet::start(plans, exe.as_deref()).await?;

    let watch = HubWatch::start(&target.hub_pids)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = watch.now()?;
    let bar = progress::bar(options.clients as u64, "connecting", quiet);
    fleet.broadcast(&Command::Connect).await?;
    let reports = fleet
        .collect(&bar, |report| match report {
            Report::Connected(phase) => Some(phase),
            _ => None,
        })
        .await?;
    let after_connect = watch.now()?;
    bar.finish_and_clear();
    let phase = setup::merge_phases(&reports);
    tokio::time::sleep(Duration::from_secs(options.settle_secs)).await;
    let settled = watch.now()?;
    progress::note(
        quiet,
        &format!(
            "holding {} connections for {} s",
            phase.ok, options.hold_secs
        ),
    );
    tokio::time::sleep(Duration::from_secs(options.hold_secs)).await;
    let held = watch.now()?;

    let bar = progress::bar(options.clients as u64, "closing", quiet);
    fleet.close(&bar).await?;
    bar.finish_and_clear();
    let hub = watch.finish().await?;

    let connect_recorder = LatencyRecorder::from_buckets(&phase.latency);
    let rss_per = |later: &Option<ProcSample>| match (&before, later) {
        (Some(before), Some(later)) => per(later.rss_delta_kib(before) as f64 * 1024.0, phase.ok),
        _ => None,
    };
    let cpu_per = match (&before, &after_connect) {
        (Some(before), Some(after)) => per(after.cpu_since(before) as f64, phase.ok),
        _ => None,
    };
    Ok(IdleResult {
        options: options.clone(),
        connected: phase.ok,
        failed: phase.failed,
        first_error: phase.first_error.clone(),
        connect_secs: phase.done_unix_us.saturating_sub(phase.started_unix_us) as f64 / 1e6,
        connect_latency: connect_recorder.summary(),
        rss_bytes_per_connection: rss_per(&settled),
        rss_bytes_per_connection_held: rss_per(&held),
        cpu_us_per_connect: cpu_per,
        before,
        after_connect,
        settled,
        held,
        hub,
        connect_recorder,
    })
}

impl IdleResult {
    /// One line per key figure.
    pub fn summary_lines(&self) -> Vec<String> {
        let kib = |bytes: Option<f64>| {
            bytes.map_or("n/a".to_owned(), |b| format!("{:.2} KiB", b / 1024.0))
        };
        vec![
            format!(
                "{} of {} connected and joined ({} failed{}) in {:.1} s over {} process(es), {} source address(es)",
                self.connected,
                self.options.clients,
                self.failed,
                self.first_error
                    .as_ref()
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default(),
                self.connect_secs,
                self.options.processes,
                self.options.sources
            ),
            latency_line("connect+hello+join", &self.connect_latency),
            format!(
                "hub RSS per idle connection: {} after settling, {} after holding {} s",
                kib(self.rss_bytes_per_connection),
                kib(self.rss_bytes_per_connection_held),
                self.options.hold_secs
            ),
            format!(
                "hub CPU per connect: {}; RSS {} -> {} KiB; fds {} -> {}",
                self.cpu_us_per_connect
                    .map_or("n/a".to_owned(), |c| format!("{c:.0} us")),
                self.before.map_or(0, |s| s.rss_kib),
                self.held.map_or(0, |s| s.rss_kib),
                self.before.map_or(0, |s| s.fds),
                self.held.map_or(0, |s| s.fds),
            ),
        ]
    }

    /// Connect latency and hub resources over the run.
    pub fn plots(&self) -> Vec<Plot> {
        let mut plots = vec![Plot {
            name: "latency",
            chart: report::latency_chart(
                "idle: connect + hello + join, from the connect command",
                &[("connect", &self.connect_recorder)],
            ),
        }];
        if let Some(hub) = &self.hub {
            plots.push(Plot {
                name: "hub",
                chart: report::resources_chart("idle: hub CPU and memory", &hub.samples),
            });
        }
        plots
    }
}
