//! `cluster`: the whole deployment on one machine, at the scale of a large
//! clinic group. One command starts PostgreSQL, the broker (one Redis or a
//! Redis Cluster) and N hub nodes, connects every patient (one
//! consultation each), the providers of the consultations that chat, and a
//! few admins per clinic watching its dashboard, spread over the nodes;
//! patients idle (answering the hub's heartbeats) while a share of the
//! consultations chat both ways. Then, as operations would: one node is
//! drained (`SIGTERM`) and started again, later another is killed
//! (`kill -9`); their clients reconnect to other nodes by themselves and
//! resume. At the end every room is read to its last acknowledged `seq`:
//! a message acknowledged to its sender and not received by a member is
//! lost.
//!
//! Reports per node and in total: RSS per connection, CPU, Redis commands
//! per second and CPU, PostgreSQL commits and rows written per second,
//! delivery latency, and, for the drain and the kill, how long until every
//! moved client had resumed.
//!
//! - `services`: the processes of the run.
//! - `population`: consultations, tokens, who connects where.
//! - `observe`: readings of every part and the figures of a window.
//! - `outcome`: the result, its summary lines and plots.

pub mod observe;
pub mod outcome;
pub mod population;
pub mod services;

pub use outcome::{ClusterResult, FaultOutcome};

use self::outcome::{Measured, SteadyFigures};
pub use services::Broker;

use self::observe::{Reading, read, window};
use self::population::Census;
use self::services::{Services, ServicesSpec};
use super::run_tag;
use super::setup::{merge_phases, worker_exe};
use crate::api::Api;
use crate::fleet::{self, ChatReport, Command, FinishReport, Fleet, LiveReport, Report};
use crate::hub_process::LOAD_API_KEY;
use crate::progress;
use crate::stats::{LatencyRecorder, unix_micros};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often every part is read for the plots.
const TIMELINE_EVERY: Duration = Duration::from_secs(5);
/// The longest a drained node may take to exit before it is killed.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How long clients may take to be back after a drain or a kill.
const RESUME_WAIT: Duration = Duration::from_secs(180);
/// How long `Finish` waits for followers to reach the final `seq`.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Parameters of a cluster run.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterOptions {
    /// The `consult-hub` binary.
    pub hub: PathBuf,
    /// The `redis-server` binary.
    pub redis_server: PathBuf,
    /// One Redis or a Redis Cluster.
    pub broker: Broker,
    /// A PostgreSQL URL for the hubs (default: a private, durable one).
    pub database_url: Option<String>,
    /// Hub nodes.
    pub nodes: usize,
    /// Patients, one consultation each.
    pub patients: usize,
    /// Consultations per provider.
    pub patients_per_provider: usize,
    /// Clinics the providers are spread over.
    pub clinics: usize,
    /// Admins watching each clinic's dashboard.
    pub admins_per_clinic: usize,
    /// Share of consultations that chat, percent.
    pub chat_percent: u32,
    /// Messages per minute each member of a chatting consultation sends.
    pub messages_per_minute: f64,
    /// Chat message body length, bytes.
    pub body_bytes: usize,
    /// Worker processes holding the clients.
    pub processes: usize,
    /// 127.0.0.x source addresses.
    pub sources: usize,
    /// Connects in flight at once, all processes together.
    pub connect_concurrency: usize,
    /// Measured steady state before the faults, seconds.
    pub steady_secs: u64,
    /// Between restarting the drained node and the kill, seconds.
    pub between_secs: u64,
    /// Measured steady state after the kill, seconds.
    pub after_secs: u64,
    /// Extra `CONSULT_…` settings for every node.
    #[serde(skip)]
    pub hub_env: Vec<(String, String)>,
    /// Executable for worker processes (this program when `None`).
    #[serde(skip)]
    pub worker_exe: Option<PathBuf>,
}

/// Runs the scenario.
///
/// # Errors
///
/// When a part does not start, setup fails or a worker dies.
pub async fn run(options: &ClusterOptions, quiet: bool) -> Result<ClusterResult> {
    if options.nodes < 3 {
        bail!("a cluster run drains one node and kills another: give --nodes 3 or more");
    }
    progress::note(quiet, "starting PostgreSQL, the broker and the hub nodes");
    let mut services = Services::start(&ServicesSpec {
        hub: options.hub.clone(),
        redis_server: options.redis_server.clone(),
        broker: options.broker,
        database_url: options.database_url.clone(),
        nodes: options.nodes,
        hub_env: options.hub_env.clone(),
    })
    .await?;
    let http = reqwest::Client::new();
    let api = Api::new(&services.nodes[0].http_base, LOAD_API_KEY);
    let tag = run_tag();
    let (plans, census) = population::plan(&api, options, &tag, quiet).await?;
    let ws_urls: Vec<String> = services.nodes.iter().map(|n| n.ws_url.clone()).collect();
    let mut shards = fleet::split(
        &ws_urls,
        plans,
        options.processes,
        options.connect_concurrency,
        u64::try_from(FINISH_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    );
    let chat_every_ms = (60_000.0 / options.messages_per_minute.max(0.001)) as u64;
    for shard in &mut shards {
        shard.chat_every_ms = chat_every_ms;
        shard.body_bytes = options.body_bytes;
        shard.auto_resume = true;
    }
    let exe = worker_exe(options.processes, options.worker_exe.clone())?;
    let mut fleet = Fleet::start(shards, exe.as_deref()).await?;
    let total = census.connections();

    let mut timeline = Vec::new();
    let baseline = read(&services, &http).await;
    timeline.push(baseline.clone());
    let bar = progress::bar(total, "connecting", quiet);
    fleet.broadcast(&Command::Connect).await?;
    let connected = fleet
        .collect(&bar, |report| match report {
            Report::Connected(phase) => Some(phase),
            _ => None,
        })
        .await?;
    bar.finish_and_clear();
    let connect = merge_phases(&connected);
    if connect.ok < total {
        progress::note(
            quiet,
            &format!(
                "{} of {total} connected; first failure: {}",
                connect.ok,
                connect.first_error.as_deref().unwrap_or("none")
            ),
        );
    }
    let after_connect = read(&services, &http).await;
    let connect_window = window(&baseline, &baseline, &after_connect);
    timeline.push(after_connect);

    // Steady state: chat, heartbeats, dashboards.
    progress::note(
        quiet,
        &format!("steady state for {} s", options.steady_secs),
    );
    let steady = measure_steady(
        &mut fleet,
        &services,
        &http,
        &baseline,
        options.steady_secs,
        &mut timeline,
    )
    .await?;

    // A rolling restart's step: drain node 0, start it again.
    progress::note(quiet, "draining node 0 (SIGTERM)");
    let drained_at = unix_micros();
    let moving = current_connections(&services, &http, 0).await;
    let (drain_took, drained_cleanly) = services.nodes[0].terminate(DRAIN_LIMIT).await?;
    let expected = connect.ok;
    let drain = await_resumes(
        &mut fleet,
        &services,
        &http,
        expected,
        drained_at,
        &mut timeline,
    )
    .await?
    .with_fault(
        "drain (SIGTERM) of node 0",
        moving,
        drain_took,
        drained_cleanly,
    );
    services.nodes[0]
        .start()
        .await
        .context("starting the drained node again")?;
    sleep_reading(&services, &http, options.between_secs, &mut timeline).await;

    // A crash: kill -9 node 1.
    progress::note(quiet, "killing node 1 (kill -9)");
    let moving = current_connections(&services, &http, 1).await;
    let killed_at = unix_micros();
    let kill_started = Instant::now();
    services.nodes[1].kill();
    let kill_took = kill_started.elapsed();
    let killed = await_resumes(
        &mut fleet,
        &services,
        &http,
        expected,
        killed_at,
        &mut timeline,
    )
    .await?
    .with_fault("kill -9 of node 1", moving, kill_took, false);

    progress::note(
        quiet,
        &format!("after the kill for {} s", options.after_secs),
    );
    let after = measure_steady(
        &mut fleet,
        &services,
        &http,
        &baseline,
        options.after_secs,
        &mut timeline,
    )
    .await?;

    // The end: stop chatting, read every room to its last acknowledged seq.
    let bar = progress::bar(total, "quiescing", quiet);
    fleet.broadcast(&Command::Quiesce).await?;
    let chat = merge_chat(
        fleet
            .collect(&bar, |report| match report {
                Report::Quiesced(chat) => Some(chat),
                _ => None,
            })
            .await?,
    );
    bar.finish_and_clear();
    let bar = progress::bar(total, "finishing", quiet);
    fleet
        .broadcast(&Command::Finish {
            final_seqs: chat.acknowledged_seqs.clone(),
        })
        .await?;
    let finish = merge_finish(
        fleet
            .collect(&bar, |report| match report {
                Report::Finished(finish) => Some(finish),
                _ => None,
            })
            .await?,
    );
    bar.finish_and_clear();
    fleet.close(&indicatif::ProgressBar::hidden()).await?;

    Ok(ClusterResult::from(Measured {
        options: options.clone(),
        census,
        connect,
        connect_window,
        steady,
        drain,
        kill: killed,
        after,
        chat,
        finish,
        timeline,
    }))
}

/// Asks every shard for what happened since the last `Status`, merged.
async fn status(fleet: &mut Fleet) -> Result<LiveReport> {
    fleet.broadcast(&Command::Status).await?;
    let hidden = indicatif::ProgressBar::hidden();
    let reports = fleet
        .collect(&hidden, |report| match report {
            Report::Status(live) => Some(live),
            _ => None,
        })
        .await?;
    Ok(merge_live(reports))
}

/// A window of `secs` of steady state: the clients' report over it (the
/// `Status` before it starts the window) and every part's figures.
async fn measure_steady(
    fleet: &mut Fleet,
    services: &Services,
    http: &reqwest::Client,
    baseline: &Reading,
    secs: u64,
    timeline: &mut Vec<Reading>,
) -> Result<SteadyFigures> {
    status(fleet).await?;
    let start = read(services, http).await;
    sleep_reading(services, http, secs, timeline).await;
    let end = read(services, http).await;
    let live = status(fleet).await?;
    let figures = SteadyFigures::new(window(baseline, &start, &end), &live);
    timeline.push(end);
    Ok(figures)
}

/// Sleeps `secs`, reading every part every [`TIMELINE_EVERY`].
async fn sleep_reading(
    services: &Services,
    http: &reqwest::Client,
    secs: u64,
    timeline: &mut Vec<Reading>,
) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(TIMELINE_EVERY)).await;
        timeline.push(read(services, http).await);
    }
}

/// Waits until every client that lost its connection is back (or
/// [`RESUME_WAIT`] passes), reading the parts meanwhile; what resumed
/// since `fault_unix_us`.
async fn await_resumes(
    fleet: &mut Fleet,
    services: &Services,
    http: &reqwest::Client,
    expected: u64,
    fault_unix_us: u64,
    timeline: &mut Vec<Reading>,
) -> Result<FaultOutcome> {
    let deadline = Instant::now() + RESUME_WAIT;
    let mut merged = LiveReport::default();
    let mut outage = LatencyRecorder::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let live = status(fleet).await?;
        outage.merge(&LatencyRecorder::from_buckets(&live.outage));
        let connected = live.connected;
        add_live(&mut merged, live);
        timeline.push(read(services, http).await);
        let settled = merged.lost > 0 && merged.resumed + merged.resume_failed >= merged.lost;
        if (settled && connected + merged.resume_failed >= expected) || Instant::now() > deadline {
            break;
        }
    }
    merged.outage = outage.to_buckets();
    Ok(FaultOutcome::from_live(merged, fault_unix_us))
}

/// Sessions node `index` holds now (0 when it cannot be read).
async fn current_connections(services: &Services, http: &reqwest::Client, index: usize) -> f64 {
    match crate::hub_metrics::read(http, &services.nodes[index].http_base).await {
        Ok(reading) => reading.total("consult_connections_active"),
        Err(_) => 0.0,
    }
}

/// Adds `live` (one `Status` window) into `into`; latency buckets are
/// merged by the caller.
fn add_live(into: &mut LiveReport, live: LiveReport) {
    into.connected = live.connected;
    into.lost += live.lost;
    into.resumed += live.resumed;
    into.resume_failed += live.resume_failed;
    if into.first_resume_error.is_none() {
        into.first_resume_error = live.first_resume_error;
    }
    into.last_resumed_unix_us = into.last_resumed_unix_us.max(live.last_resumed_unix_us);
    into.dashboard_deltas += live.dashboard_deltas;
    let mut latency = LatencyRecorder::from_buckets(&into.latency);
    latency.merge(&LatencyRecorder::from_buckets(&live.latency));
    into.latency = latency.to_buckets();
}

fn merge_live(reports: Vec<LiveReport>) -> LiveReport {
    let mut merged = LiveReport::default();
    let mut outage = LatencyRecorder::new();
    let mut connected = 0;
    for report in reports {
        connected += report.connected;
        outage.merge(&LatencyRecorder::from_buckets(&report.outage));
        add_live(&mut merged, report);
    }
    merged.connected = connected;
    merged.outage = outage.to_buckets();
    merged
}

fn merge_chat(reports: Vec<ChatReport>) -> ChatReport {
    let mut merged = ChatReport::default();
    for report in reports {
        merged.absorb(report);
    }
    merged
}

fn merge_finish(reports: Vec<FinishReport>) -> FinishReport {
    let mut merged = FinishReport::default();
    for report in &reports {
        merged.absorb(report);
    }
    merged
}

impl Census {
    /// Followers per node as planned (for the record).
    pub fn summary(&self) -> String {
        format!(
            "{} patients, {} providers, {} admins ({} connections); {} consultations chat",
            self.patients,
            self.providers,
            self.admins,
            self.connections(),
            self.chatting_rooms
        )
    }
}
