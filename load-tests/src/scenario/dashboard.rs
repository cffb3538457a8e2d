//! `dashboard`: many consultations taken through open → ready → enter →
//! end by provider/patient pairs, while W admins watch the clinic's
//! dashboard.
//!
//! Each status change should reach every watcher as one `dashboard` delta
//! carrying the new status. Measures delta latency (command sent to delta
//! received), deltas received against expected, and command latency.

use super::{HubUsage, HubWatch, run_tag};
use crate::api::{Api, NewConsultation, TokenRequest};
use crate::progress;
use crate::report::{self, Plot, latency_line};
use crate::stats::{LatencyRecorder, LatencySummary, Timeline, unix_micros};
use crate::target::Target;
use anyhow::{Context, Result};
use consult_client::{Client, ClientConfig};
use consult_protocol::{ConsultationId, ConsultationStatus, Role, ServerFrame};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Events a watcher's client buffers.
const WATCHER_EVENTS_CAPACITY: usize = 1 << 16;

/// Parameters of a dashboard run.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardOptions {
    /// Admins watching the clinic's dashboard.
    pub watchers: usize,
    /// Provider/patient pairs driving cycles concurrently.
    pub pairs: usize,
    /// Consultations taken through a full cycle.
    pub cycles: usize,
    /// How long watchers may take after the last change, seconds.
    pub drain_timeout_secs: u64,
}

/// What a dashboard run measured.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardResult {
    /// The parameters.
    pub options: DashboardOptions,
    /// Status changes answered `ok`.
    pub changes_ok: u64,
    /// Status commands refused or unanswered, and the first reason.
    pub changes_failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Status changes per second while driving.
    pub changes_per_sec: f64,
    /// Deltas expected: changes × watchers.
    pub deltas_expected: u64,
    /// Deltas received that match a change.
    pub deltas_received: u64,
    /// Deltas not matching any change made here.
    pub deltas_other: u64,
    /// Command sent to delta received.
    pub delta_latency: LatencySummary,
    /// Command sent to `ok`.
    pub command_latency: LatencySummary,
    /// Deltas received per second.
    pub deltas_timeline: Timeline,
    /// Changes per second.
    pub changes_timeline: Timeline,
    /// Hub usage while driving.
    pub hub: Option<HubUsage>,
    #[serde(skip)]
    delta_recorder: LatencyRecorder,
    #[serde(skip)]
    command_recorder: LatencyRecorder,
}

/// When each change was commanded, by consultation and resulting status.
type SentTimes = Arc<Mutex<HashMap<(ConsultationId, ConsultationStatus), u64>>>;

/// What drivers tally.
#[derive(Debug)]
struct DriveTally {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    latency: LatencyRecorder,
    timeline: Timeline,
}

/// Runs the scenario.
///
/// # Errors
///
/// When setup fails.
pub async fn run(
    target: &Target,
    options: &DashboardOptions,
    quiet: bool,
) -> Result<DashboardResult> {
    let api = Api::new(&target.nodes[0].http_base, &target.api_key);
    let tag = run_tag();
    let clinic = format!("load-dash-{tag}");
    let pairs = options.pairs.max(1);
    let specs: Vec<NewConsultation> = (0..options.cycles)
        .map(|c| NewConsultation {
            clinic: clinic.clone(),
            provider: format!("dash-{tag}-prov-{}", c % pairs),
            patient: format!("dash-{tag}-pat-{}", c % pairs),
        })
        .collect();
    let bar = progress::bar(specs.len() as u64, "rooms", quiet);
    let rooms = api.create_consultations(&specs, || bar.inc(1)).await?;
    bar.finish_and_clear();

    let token = |user: String, role| TokenRequest {
        user,
        role,
        clinic: clinic.clone(),
    };
    let mut requests: Vec<TokenRequest> = (0..options.watchers)
        .map(|w| token(format!("dash-{tag}-adm-{w}"), Role::Admin))
        .collect();
    for p in 0..pairs {
        requests.push(token(format!("dash-{tag}-prov-{p}"), Role::Provider));
        requests.push(token(format!("dash-{tag}-pat-{p}"), Role::Patient));
    }
    let tokens = api.issue_tokens(&requests, || {}).await?;
    let clients = connect_all(target, &tokens).await?;
    let (watcher_clients, driver_clients) = clients.split_at(options.watchers);
    for watcher in watcher_clients {
        watcher
            .watch_dashboard(None)
            .await
            .context("watch_dashboard")?;
    }

    let sent_times: SentTimes = Arc::default();
    let started_unix_us = unix_micros();
    let delta_latency = Arc::new(Mutex::new(LatencyRecorder::new()));
    let (done_tx, done_rx) = watch::channel(false);
    let matched = Arc::new(AtomicU64::new(0));
    let watchers: Vec<_> = watcher_clients
        .iter()
        .map(|client| {
            tokio::spawn(watch_deltas(
                client.clone(),
                sent_times.clone(),
                delta_latency.clone(),
                matched.clone(),
                done_rx.clone(),
                started_unix_us,
            ))
        })
        .collect();

    let hub_watch = HubWatch::start(&target.hub_pids)?;
    let tally = Arc::new(Mutex::new(DriveTally {
        ok: 0,
        failed: 0,
        first_error: None,
        latency: LatencyRecorder::new(),
        timeline: Timeline::new(started_unix_us, 1000),
    }));
    let bar = progress::bar(options.cycles as u64, "cycles", quiet);
    let drivers: Vec<_> = (0..pairs)
        .map(|p| {
            let provider = driver_clients[2 * p].clone();
            let patient = driver_clients[2 * p + 1].clone();
            let mine: Vec<ConsultationId> = rooms.iter().skip(p).step_by(pairs).cloned().collect();
            let (sent_times, tally, bar) = (sent_times.clone(), tally.clone(), bar.clone());
            tokio::spawn(async move {
                for room in mine {
                    cycle(&provider, &patient, &room, &sent_times, &tally).await;
                    bar.inc(1);
                }
            })
        })
        .collect();
    for driver in drivers {
        driver.await.context("a driver task failed")?;
    }
    bar.finish_and_clear();
    let driving_secs = unix_micros().saturating_sub(started_unix_us) as f64 / 1e6;
    let (changes_ok, changes_failed, first_error, command_recorder, changes_timeline) = {
        let tally = tally
            .lock()
            .map_err(|_| anyhow::anyhow!("driver tally poisoned"))?;
        (
            tally.ok,
            tally.failed,
            tally.first_error.clone(),
            tally.latency.clone(),
            tally.timeline.clone(),
        )
    };
    let deltas_expected = changes_ok * options.watchers as u64;
    let drain = Duration::from_secs(options.drain_timeout_secs);
    let received = wait_for_deltas(watchers, done_tx, &matched, deltas_expected, drain).await?;
    let hub = hub_watch.finish().await?;
    let delta_recorder = delta_latency
        .lock()
        .map_err(|_| anyhow::anyhow!("latency poisoned"))?
        .clone();
    Ok(DashboardResult {
        options: options.clone(),
        changes_ok,
        changes_failed,
        first_error,
        changes_per_sec: changes_ok as f64 / driving_secs.max(1e-3),
        deltas_expected,
        deltas_received: received.matched,
        deltas_other: received.other,
        delta_latency: delta_recorder.summary(),
        command_latency: command_recorder.summary(),
        deltas_timeline: received.timeline,
        changes_timeline,
        hub,
        delta_recorder,
        command_recorder,
    })
}

async fn connect_all(target: &Target, tokens: &[String]) -> Result<Vec<Arc<Client>>> {
    let config = ClientConfig {
        events_capacity: WATCHER_EVENTS_CAPACITY,
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let connects = tokens.iter().enumerate().map(|(i, token)| {
        let url = target.node_for(i).ws_url.clone();
        let config = config.clone();
        async move {
            let (client, _welcome) = Client::connect_with(&url, token, config)
                .await
                .with_context(|| format!("client {i} connecting to {url}"))?;
            Ok::<_, anyhow::Error>(Arc::new(client))
        }
    });
    stream::iter(connects)
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// One consultation through open (provider), ready (patient), enter and
/// end (provider); stops at the first refusal.
async fn cycle(
    provider: &Client,
    patient: &Client,
    room: &ConsultationId,
    sent_times: &SentTimes,
    tally: &Mutex<DriveTally>,
) {
    use ConsultationStatus::{Ended, InProgress, PatientReady, WaitingForPatient};
    for (client, status) in [
        (provider, WaitingForPatient),
        (patient, PatientReady),
        (provider, InProgress),
        (provider, Ended),
    ] {
        let sent = unix_micros();
        if let Ok(mut times) = sent_times.lock() {
            times.insert((room.clone(), status), sent);
        }
        let outcome = match status {
            WaitingForPatient => client.open(room).await,
            PatientReady => client.ready(room).await,
            InProgress => client.enter(room).await,
            _ => client.end(room).await,
        };
        let answered = unix_micros();
        let Ok(mut tally) = tally.lock() else { return };
        match outcome {
            Ok(_) => {
                tally.ok += 1;
                tally.latency.record(answered.saturating_sub(sent));
                tally.timeline.add(answered, 1);
            }
            Err(error) => {
                tally.failed += 1;
                tally.first_error.get_or_insert_with(|| error.to_string());
                return;
            }
        }
    }
}

/// What one watcher received.
#[derive(Debug)]
struct Received {
    matched: u64,
    other: u64,
    timeline: Timeline,
}

async fn watch_deltas(
    client: Arc<Client>,
    sent_times: SentTimes,
    latency: Arc<Mutex<LatencyRecorder>>,
    matched: Arc<AtomicU64>,
    mut done_rx: watch::Receiver<bool>,
    started_unix_us: u64,
) -> Received {
    let mut received = Received {
        matched: 0,
        other: 0,
        timeline: Timeline::new(started_unix_us, 1000),
    };
    loop {
        // Both branch futures are cancel-safe.
        tokio::select! {
            event = client.next_event() => match event {
                Some(ServerFrame::Dashboard { entry }) => {
                    let now = unix_micros();
                    let key = (entry.consultation_id, entry.status);
                    let sent = sent_times.lock().ok().and_then(|times| times.get(&key).copied());
                    match (sent, latency.lock()) {
                        (Some(sent), Ok(mut latency)) => {
                            received.matched += 1;
                            matched.fetch_add(1, Ordering::Relaxed);
                            received.timeline.add(now, 1);
                            latency.record(now.saturating_sub(sent));
                        }
                        _ => received.other += 1,
                    }
                }
                Some(_) => {}
                None => break,
            },
            changed = done_rx.changed() => {
                if changed.is_err() || *done_rx.borrow() {
                    break;
                }
            }
        }
    }
    received
}

/// Waits until watchers together have `expected` deltas or the drain time
/// passes, then stops them and sums what they received.
async fn wait_for_deltas(
    watchers: Vec<tokio::task::JoinHandle<Received>>,
    done_tx: watch::Sender<bool>,
    matched: &AtomicU64,
    expected: u64,
    drain: Duration,
) -> Result<Received> {
    let deadline = tokio::time::Instant::now() + drain;
    while matched.load(Ordering::Relaxed) < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done_tx.send_replace(true);
    let mut total: Option<Received> = None;
    for watcher in watchers {
        let received = watcher.await.context("a watcher task failed")?;
        match &mut total {
            None => total = Some(received),
            Some(total) => {
                total.matched += received.matched;
                total.other += received.other;
                total.timeline.merge(&received.timeline);
            }
        }
    }
    Ok(total.unwrap_or(Received {
        matched: 0,
        other: 0,
        timeline: Timeline::new(unix_micros(), 1000),
    }))
}

impl DashboardResult {
    /// One line per key figure.
    pub fn summary_lines(&self) -> Vec<String> {
        let o = &self.options;
        let mut lines = vec![
            format!(
                "{} consultations cycled by {} provider/patient pairs under {} watchers: {} changes ok, {} failed{} ({:.0} changes/s)",
                o.cycles,
                o.pairs,
                o.watchers,
                self.changes_ok,
                self.changes_failed,
                self.first_error
                    .as_ref()
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default(),
                self.changes_per_sec
            ),
            format!(
                "deltas received {} of {} expected ({} missing), {} others",
                self.deltas_received,
                self.deltas_expected,
                self.deltas_expected.saturating_sub(self.deltas_received),
                self.deltas_other
            ),
            latency_line("command -> dashboard delta", &self.delta_latency),
            latency_line("command -> ok", &self.command_latency),
        ];
        if let Some(hub) = &self.hub {
            lines.push(format!(
                "hub: {:.0}% of one core on average, {:.0} us CPU per delta delivered; RSS {} -> {} KiB",
                hub.cpu_percent_of_core,
                hub.cpu_us as f64 / self.deltas_received.max(1) as f64,
                hub.start.rss_kib,
                hub.end.rss_kib
            ));
        }
        lines
    }

    /// Latency distributions and rates over time.
    pub fn plots(&self) -> Vec<Plot> {
        let mut plots = vec![
            Plot {
                name: "latency",
                chart: report::latency_chart(
                    "dashboard: latency by percentile",
                    &[
                        ("command -> delta", &self.delta_recorder),
                        ("command -> ok", &self.command_recorder),
                    ],
                ),
            },
            Plot {
                name: "throughput",
                chart: report::rate_chart(
                    "dashboard: changes and deltas per second",
                    "per second",
                    &[
                        ("status changes", &self.changes_timeline),
                        ("deltas delivered", &self.deltas_timeline),
                    ],
                ),
            },
        ];
        if let Some(hub) = &self.hub {
            plots.push(Plot {
                name: "hub",
                chart: report::resources_chart("dashboard: hub CPU and memory", &hub.samples),
            });
        }
        plots
    }
}
