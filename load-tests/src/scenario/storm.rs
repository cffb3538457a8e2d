//! `storm`: N followers, each joined to a room, drop their TCP connections
//! at the same moment and reconnect, resuming with `join … since`, while
//! providers keep sending.
//!
//! Measures the time from the drop until every follower has its `joined`
//! answer, what was replayed, and what was missed: each follower checks
//! that it saw every `seq` of its room up to the last one sent (which must
//! be 0 missed).

use super::setup::{self, Population};
use super::{HubUsage, HubWatch, run_tag};
use crate::api::{Api, TokenRequest};
use crate::fleet::{Command, FinishReport, Fleet, Report};
use crate::pacer::{self, PaceOptions, SendStats};
use crate::progress;
use crate::report::{self, Plot, latency_line};
use crate::stats::{Buckets, LatencyRecorder, LatencySummary, unix_micros};
use crate::target::Target;
use anyhow::{Context, Result};
use consult_client::{Client, ClientConfig};
use consult_protocol::{ConsultationId, Role};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Parameters of a storm run.
#[derive(Debug, Clone, Serialize)]
pub struct StormOptions {
    /// Followers.
    pub clients: usize,
    /// Rooms they follow, round-robin.
    pub rooms: usize,
    /// Provider connections sending into the rooms (each owns rooms `p`,
    /// `p + P`, ...).
    pub providers: usize,
    /// Messages per second sent during the whole run, all rooms together.
    pub rate: f64,
    /// Sending time before the drop, seconds.
    pub before_secs: u64,
    /// Sending time after everyone resumed, seconds.
    pub after_secs: u64,
    /// Worker processes (1: followers live in this process).
    pub processes: usize,
    /// 127.0.0.x source addresses.
    pub sources: usize,
    /// Connects in flight at once, all workers together.
    pub connect_concurrency: usize,
    /// How long followers may take to catch up at the end, seconds.
    pub finish_timeout_secs: u64,
    /// Body length in bytes.
    pub body_bytes: usize,
    /// Executable for worker processes (this program when `None`).
    #[serde(skip)]
    pub worker_exe: Option<PathBuf>,
}

/// What a storm run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    /// The parameters.
    pub options: StormOptions,
    /// Followers connected and joined before the storm.
    pub connected: u64,
    /// Followers that could not connect before the storm.
    pub connect_failed: u64,
    /// Followers that reconnected and resumed.
    pub resumed: u64,
    /// Followers that could not resume, and the first reason.
    pub resume_failed: u64,
    /// The first resume failure.
    pub first_resume_error: Option<String>,
    /// From the drop command to the last follower's `joined`, seconds.
    pub time_to_resume_all_secs: f64,
    /// Per follower: from its worker's drop to its `joined`.
    pub resume_latency: LatencySummary,
    /// Messages replayed by `join … since`, all followers together.
    pub replayed: u64,
    /// The end-of-run count over all followers.
    pub finish: FinishReport,
    /// Live delivery latency over the run (send time to receipt).
    pub delivery_latency: LatencySummary,
    /// The providers' side.
    pub sent: SendStats,
    /// Hub usage from the first send to the end.
    pub hub: Option<HubUsage>,
    #[serde(skip)]
    resume_recorder: LatencyRecorder,
    #[serde(skip)]
    delivery_recorder: LatencyRecorder,
}

/// Runs the scenario.
///
/// # Errors
///
/// When setup fails or a worker dies.
pub async fn run(target: &Target, options: &StormOptions, quiet: bool) -> Result<StormResult> {
    let api = Api::new(&target.nodes[0].http_base, &target.api_key);
    let tag = run_tag();
    let clinic = format!("load-storm-{tag}");
    let population = Population {
        clinic: &clinic,
        tag: &tag,
        prefix: "storm",
        rooms: options.rooms,
        providers: options.providers,
        followers: options.clients,
        sources: options.sources,
    };
    let (rooms, followers) = setup::followers(&api, target, &population, quiet).await?;
    let senders = connect_providers(&api, target, &population, &rooms).await?;
    let ws_urls: Vec<String> = target.nodes.iter().map(|n| n.ws_url.clone()).collect();
    let finish_ms = options.finish_timeout_secs * 1000;
    let plans = crate::fleet::split(
        &ws_urls,
        followers,
        options.processes,
        options.connect_concurrency,
        finish_ms,
    );
    let exe = setup::worker_exe(options.processes, options.worker_exe.clone())?;
    let mut fleet = Fleet::start(plans, exe.as_deref()).await?;

    let bar = progress::bar(options.clients as u64, "connecting", quiet);
    fleet.broadcast(&Command::Connect).await?;
    let connected = setup::merge_phases(&fleet.collect(&bar, pick_connected).await?);
    bar.finish_and_clear();

    let watch = HubWatch::start(&target.hub_pids)?;
    let stop = CancellationToken::new();
    let pace = PaceOptions {
        rate: options.rate,
        limit: None,
        body_bytes: options.body_bytes,
        max_in_flight: 10_000,
    };
    let sending = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let hidden = indicatif::ProgressBar::hidden();
            pacer::run(&senders, &pace, &stop, &hidden).await
        })
    };
    tokio::time::sleep(Duration::from_secs(options.before_secs)).await;

    let bar = progress::bar(options.clients as u64, "resuming", quiet);
    let drop_unix_us = unix_micros();
    fleet.broadcast(&Command::Drop).await?;
    let resumed = setup::merge_phases(&fleet.collect(&bar, pick_resumed).await?);
    bar.finish_and_clear();
    progress::note(
        quiet,
        &format!(
            "{} resumed in {:.2} s; sending {} s more",
            resumed.ok,
            resumed.done_unix_us.saturating_sub(drop_unix_us) as f64 / 1e6,
            options.after_secs
        ),
    );
    tokio::time::sleep(Duration::from_secs(options.after_secs)).await;
    stop.cancel();
    let sent = sending.await.context("the sending task failed")?;

    let final_seqs: HashMap<ConsultationId, u64> = rooms
        .iter()
        .cloned()
        .zip(sent.last_seq.iter().copied())
        .collect();
    let bar = progress::bar(options.clients as u64, "finishing", quiet);
    fleet.broadcast(&Command::Finish { final_seqs }).await?;
    let finishes = fleet.collect(&bar, pick_finished).await?;
    bar.finish_and_clear();
    let hub = watch.finish().await?;
    fleet.close(&indicatif::ProgressBar::hidden()).await?;

    let (finish, delivery_recorder) = merge_finishes(&finishes);
    let resume_recorder = LatencyRecorder::from_buckets(&resumed.latency);
    Ok(StormResult {
        options: options.clone(),
        connected: connected.ok,
        connect_failed: connected.failed,
        resumed: resumed.ok,
        resume_failed: resumed.failed,
        first_resume_error: resumed.first_error.clone(),
        time_to_resume_all_secs: resumed.done_unix_us.saturating_sub(drop_unix_us) as f64 / 1e6,
        resume_latency: resume_recorder.summary(),
        replayed: resumed.replayed,
        finish,
        delivery_latency: delivery_recorder.summary(),
        sent,
        hub,
        resume_recorder,
        delivery_recorder,
    })
}

fn pick_connected(report: Report) -> Option<crate::fleet::PhaseReport> {
    match report {
        Report::Connected(phase) => Some(phase),
        _ => None,
    }
}

fn pick_resumed(report: Report) -> Option<crate::fleet::PhaseReport> {
    match report {
        Report::Resumed(phase) => Some(phase),
        _ => None,
    }
}

fn pick_finished(report: Report) -> Option<FinishReport> {
    match report {
        Report::Finished(finish) => Some(finish),
        _ => None,
    }
}

/// Connects one typed client per provider; room `r` is sent to by
/// provider `r mod P`.
async fn connect_providers(
    api: &Api,
    target: &Target,
    population: &Population<'_>,
    rooms: &[ConsultationId],
) -> Result<Vec<pacer::Target>> {
    let count = population.providers.max(1);
    let requests: Vec<TokenRequest> = (0..count)
        .map(|p| TokenRequest {
            user: setup::provider_id(population, p),
            role: Role::Provider,
            clinic: population.clinic.to_owned(),
        })
        .collect();
    let tokens = api.issue_tokens(&requests, || {}).await?;
    let config = ClientConfig {
        request_timeout: Duration::from_secs(60),
        commands_capacity: 1024,
        ..ClientConfig::default()
    };
    let mut providers = Vec::with_capacity(count);
    for (p, token) in tokens.iter().enumerate() {
        let url = &target.node_for(p).ws_url;
        let (client, _welcome) = Client::connect_with(url, token, config.clone())
            .await
            .with_context(|| format!("provider {p} connecting to {url}"))?;
        providers.push(Arc::new(client));
    }
    Ok(rooms
        .iter()
        .enumerate()
        .map(|(r, room)| pacer::Target {
            client: providers[r % count].clone(),
            room: room.clone(),
        })
        .collect())
}

fn merge_finishes(reports: &[FinishReport]) -> (FinishReport, LatencyRecorder) {
    let mut latency = LatencyRecorder::new();
    let mut total = FinishReport::default();
    for report in reports {
        total.absorb(report);
        latency.merge(&LatencyRecorder::from_buckets(&report.latency));
    }
    // The merged histogram is returned as a recorder; the buckets are only
    // for the trip between processes.
    total.latency = Buckets::default();
    (total, latency)
}

impl StormResult {
    /// One line per key figure.
    pub fn summary_lines(&self) -> Vec<String> {
        let o = &self.options;
        let mut lines = vec![
            format!(
                "{} followers in {} rooms ({} connected, {} failed) over {} process(es); providers sending {}/s",
                o.clients, o.rooms, self.connected, self.connect_failed, o.processes, o.rate
            ),
            format!(
                "storm: {} resumed, {} failed{}; all resumed {:.2} s after the drop; {} messages replayed",
                self.resumed,
                self.resume_failed,
                self.first_resume_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                self.time_to_resume_all_secs,
                self.replayed
            ),
            latency_line("drop -> joined", &self.resume_latency),
            format!(
                "missed {} (worst follower {}), gaps {}, stale {}, disconnected at the end {}; received {}",
                self.finish.missed,
                self.finish.worst_missed,
                self.finish.gaps,
                self.finish.stale,
                self.finish.disconnected,
                self.finish.received
            ),
            format!(
                "sent {} ok, {} failed{}",
                self.sent.ok,
                self.sent.failed,
                self.sent
                    .first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ),
            latency_line("live delivery", &self.delivery_latency),
        ];
        if let Some(hub) = &self.hub {
            lines.push(format!(
                "hub: {:.0}% of one core on average, RSS {} -> {} KiB (peak {}), fds {} -> {}",
                hub.cpu_percent_of_core,
                hub.start.rss_kib,
                hub.end.rss_kib,
                hub.end.rss_peak_kib,
                hub.start.fds,
                hub.end.fds
            ));
        }
        lines
    }

    /// Resume and delivery latency; sends and hub resources over time.
    pub fn plots(&self) -> Vec<Plot> {
        let mut plots = vec![
            Plot {
                name: "latency",
                chart: report::latency_chart(
                    "storm: latency by percentile",
                    &[
                        ("drop -> joined (resume)", &self.resume_recorder),
                        ("live delivery", &self.delivery_recorder),
                    ],
                ),
            },
            Plot {
                name: "throughput",
                chart: report::rate_chart(
                    "storm: messages sent per second",
                    "messages/s",
                    &[("sent (acknowledged)", &self.sent.timeline)],
                ),
            },
        ];
        if let Some(hub) = &self.hub {
            plots.push(Plot {
                name: "hub",
                chart: report::resources_chart("storm: hub CPU and memory", &hub.samples),
            });
        }
        plots
    }
}
