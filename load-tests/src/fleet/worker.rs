//! One shard of the fleet: starts its followers, moves them through the
//! phases the scenario commands, and sums their events into one report per
//! phase, and what happens between phases (connections lost and resumed,
//! delivery latency) into one report per `Status`.
//!
//! It runs the same whether it is a task of the scenario's process or the
//! main task of a child process; it only sees channels.

use super::follower::{Event, Follower, Phase, Shared};
use super::{ChatReport, Command, FinishReport, LiveReport, PhaseReport, Report, ShardPlan};
use crate::stats::{LatencyRecorder, unix_micros};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};

/// Follower events buffered before followers wait.
const EVENTS_CAPACITY: usize = 4096;
/// How often progress is reported during a phase.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The phase whose outcome is being summed.
#[derive(Debug)]
enum Tally {
    Idle,
    Joining {
        resumed: bool,
        report: PhaseReport,
        latency: LatencyRecorder,
    },
    Finishing(FinishReport),
    Quiescing(u64, ChatReport),
    Closing(u64),
}

/// What happens between phases, summed until the next `Status`.
#[derive(Debug, Default)]
struct Live {
    /// Followers connected now.
    connected: u64,
    report: LiveReport,
    outage: LatencyRecorder,
}

/// Runs one shard until `Close` (or until its commands channel closes).
pub async fn run_worker(
    plan: ShardPlan,
    mut commands_rx: mpsc::Receiver<Command>,
    reports_tx: mpsc::Sender<Report>,
) {
    let total = plan.followers.len() as u64;
    let (phase_tx, _) = watch::channel(Phase::Hold);
    let (events_tx, mut events_rx) = mpsc::channel(EVENTS_CAPACITY);
    let shared = Shared {
        ws_urls: Arc::new(plan.ws_urls.clone()),
        events_tx,
        permits: Arc::new(Semaphore::new(plan.connect_concurrency.max(1))),
        latency: Arc::new(Mutex::new(LatencyRecorder::new())),
        dashboard_deltas: Arc::new(AtomicU64::new(0)),
        finish_timeout: Duration::from_millis(plan.finish_timeout_ms),
        chat_every: (plan.chat_every_ms > 0).then(|| Duration::from_millis(plan.chat_every_ms)),
        body_bytes: plan.body_bytes,
        auto_resume: plan.auto_resume,
    };
    let mut live = Live::default();
    let mut followers = Some(plan.followers);
    let mut tally = Tally::Idle;
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    loop {
        // All three are cancel-safe: `recv`, `recv`, `tick`.
        tokio::select! {
            command = commands_rx.recv() => {
                let command = command.unwrap_or(Command::Close);
                if matches!(command, Command::Status) {
                    let report = live.take(&shared);
                    if reports_tx.send(Report::Status(report)).await.is_err() {
                        return;
                    }
                    continue;
                }
                tally = start_phase(command, &mut followers, &shared, &phase_tx);
            }
            Some(event) = events_rx.recv() => {
                live.add(&event);
                tally.add(event);
            }
            _ = progress.tick() => {
                if let Some(done) = tally.done() {
                    // Progress is advisory: drop it rather than wait.
                    let _dropped = reports_tx.try_send(Report::Progress { done });
                }
            }
        }
        if tally.done() == Some(total) {
            let closing = matches!(tally, Tally::Closing(_));
            let report = std::mem::replace(&mut tally, Tally::Idle).into_report(&shared);
            if reports_tx.send(report).await.is_err() || closing {
                return;
            }
        }
    }
}

fn start_phase(
    command: Command,
    followers: &mut Option<Vec<super::FollowerPlan>>,
    shared: &Shared,
    phase_tx: &watch::Sender<Phase>,
) -> Tally {
    let joining = |resumed| Tally::Joining {
        resumed,
        report: PhaseReport {
            started_unix_us: unix_micros(),
            ..PhaseReport::default()
        },
        latency: LatencyRecorder::new(),
    };
    match command {
        Command::Connect => {
            for plan in followers.take().unwrap_or_default() {
                let follower = Follower::new(plan, shared.clone(), phase_tx.subscribe());
                tokio::spawn(follower.run());
            }
            joining(false)
        }
        Command::Drop => {
            let tally = joining(true);
            phase_tx.send_replace(Phase::Drop);
            tally
        }
        Command::Quiesce => {
            phase_tx.send_replace(Phase::Quiesce);
            Tally::Quiescing(0, ChatReport::default())
        }
        // Answered by the worker's loop; never a phase.
        Command::Status => Tally::Idle,
        Command::Finish { final_seqs } => {
            phase_tx.send_replace(Phase::Finish(Arc::new(final_seqs)));
            Tally::Finishing(FinishReport::default())
        }
        Command::Close => {
            phase_tx.send_replace(Phase::Close);
            Tally::Closing(0)
        }
    }
}

impl Tally {
    /// Followers done with the current phase; `None` when idle.
    fn done(&self) -> Option<u64> {
        match self {
            Self::Idle => None,
            Self::Joining { report, .. } => Some(report.ok + report.failed),
            Self::Finishing(report) => Some(report.followers),
            Self::Quiescing(done, _) | Self::Closing(done) => Some(*done),
        }
    }

    fn add(&mut self, event: Event) {
        match (self, event) {
            (
                Self::Joining {
                    resumed,
                    report,
                    latency,
                },
                Event::Joined {
                    resumed: event_resumed,
                    outcome,
                },
            ) if *resumed == event_resumed => match outcome {
                Ok(joined) => {
                    report.ok += 1;
                    report.replayed += u64::from(joined.replayed);
                    report.done_unix_us = report.done_unix_us.max(joined.at_unix_us);
                    latency.record(joined.at_unix_us.saturating_sub(report.started_unix_us));
                }
                Err(error) => {
                    report.failed += 1;
                    report.first_error.get_or_insert(error);
                }
            },
            (Self::Quiescing(done, report), Event::Quiesced(chat)) => {
                *done += 1;
                report.absorb(chat);
            }
            (Self::Finishing(report), Event::Finished(summary)) => {
                report.followers += 1;
                report.received += summary.in_order;
                report.missed += summary.missed;
                report.gaps += summary.gaps;
                report.stale += summary.stale;
                report.worst_missed = report.worst_missed.max(summary.missed);
                if !summary.connected {
                    report.disconnected += 1;
                }
            }
            (Self::Closing(closed), Event::Closed) => *closed += 1,
            (_, Event::Lost | Event::AutoResumed(_)) => {}
            (_, event) => tracing::debug!(?event, "follower event outside its phase"),
        }
    }

    fn into_report(self, shared: &Shared) -> Report {
        match self {
            Self::Joining {
                resumed,
                mut report,
                latency,
            } => {
                report.latency = latency.to_buckets();
                if resumed {
                    Report::Resumed(report)
                } else {
                    Report::Connected(report)
                }
            }
            Self::Finishing(mut report) => {
                if let Ok(latency) = shared.latency.lock() {
                    report.latency = latency.to_buckets();
                }
                Report::Finished(report)
            }
            Self::Quiescing(_, report) => Report::Quiesced(report),
            Self::Idle | Self::Closing(_) => Report::Closed,
        }
    }
}

impl Live {
    fn add(&mut self, event: &Event) {
        match event {
            Event::Joined {
                outcome: Ok(_),
                resumed: false,
            } => self.connected += 1,
            Event::Lost => {
                self.connected = self.connected.saturating_sub(1);
                self.report.lost += 1;
            }
            Event::AutoResumed(Ok(outage)) => {
                self.connected += 1;
                self.report.resumed += 1;
                self.report.last_resumed_unix_us =
                    self.report.last_resumed_unix_us.max(outage.at_unix_us);
                self.outage.record(outage.micros);
            }
            Event::AutoResumed(Err(error)) => {
                self.report.resume_failed += 1;
                self.report
                    .first_resume_error
                    .get_or_insert_with(|| error.clone());
            }
            _ => {}
        }
    }

    /// The report since the last one; starts the next window.
    fn take(&mut self, shared: &Shared) -> LiveReport {
        let mut report = std::mem::take(&mut self.report);
        report.connected = self.connected;
        report.outage = std::mem::take(&mut self.outage).to_buckets();
        if let Ok(mut latency) = shared.latency.lock() {
            report.latency = std::mem::take(&mut *latency).to_buckets();
        }
        report.dashboard_deltas = shared.dashboard_deltas.swap(0, Ordering::Relaxed);
        report
    }
}
