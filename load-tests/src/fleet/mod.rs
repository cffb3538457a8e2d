//! A fleet of followers: many raw connections, each joined to one room and
//! counting what it receives, driven through phases by the scenario.
//!
//! One process may hold at most 20,000 open files here, so a large fleet is
//! split into shards, each run by a worker: a task in this process
//! ([`Fleet::start`] without an executable) or a child process
//! (`consult-load worker --plan FILE`), spoken to by JSON lines on its stdin
//! and stdout. Both carry the same [`Command`]s and [`Report`]s, so the
//! scenarios do not know which they got.
//!
//! Phases: `Connect` (connect, `hello`, `join`), then optionally `Drop`
//! (close every TCP connection at once, reconnect, `join` with `since`),
//! then `Finish` (read until each room's final `seq`, then count), then
//! `Close`.
//!
//! Between phases a follower may also chat (a message into each of its
//! rooms every `chat_every_ms`, stopped by `Quiesce`), watch its dashboard,
//! and, with `auto_resume`, reconnect by itself to another node when its
//! connection ends (a node drained or killed), as the apps do. `Status`
//! asks for what happened since the last `Status`: resumes, their outage
//! times and delivery latency.
//!
//! - `follower`: one connection's task.
//! - `worker`: one shard: its followers and the tally of their reports.
//! - `child`: the process bridge, both ends.

mod child;
mod follower;
mod worker;

pub use child::run_child;
pub use worker::run_worker;

use crate::stats::Buckets;
use anyhow::{Result, bail};
use consult_protocol::ConsultationId;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Commands or reports buffered between a scenario and a worker.
const CHANNEL_CAPACITY: usize = 64;

/// What one shard runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPlan {
    /// WebSocket URL of every hub node.
    pub ws_urls: Vec<String>,
    /// This shard's followers.
    pub followers: Vec<FollowerPlan>,
    /// Connects (connect + `hello` + `join`) in flight at once.
    pub connect_concurrency: usize,
    /// How long `Finish` waits for followers to reach the final `seq`.
    pub finish_timeout_ms: u64,
    /// Followers that chat send one message into each of their rooms this
    /// often (0: nobody chats).
    #[serde(default)]
    pub chat_every_ms: u64,
    /// Chat message body length, bytes.
    #[serde(default)]
    pub body_bytes: usize,
    /// A follower whose connection ends between phases reconnects by
    /// itself, to another node first, and resumes.
    #[serde(default)]
    pub auto_resume: bool,
}

/// One follower.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowerPlan {
    /// Index into [`ShardPlan::ws_urls`].
    pub node: usize,
    /// Source address to bind.
    pub source: Ipv4Addr,
    /// Token for `hello`.
    pub token: String,
    /// The rooms to join and follow (none for a dashboard watcher only).
    pub rooms: Vec<ConsultationId>,
    /// Sends chat messages into its rooms (see [`ShardPlan::chat_every_ms`]).
    #[serde(default)]
    pub chat: bool,
    /// Watches its dashboard feed (providers and admins).
    #[serde(default)]
    pub watch_dashboard: bool,
}

/// A scenario's instruction to every shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Connect and join every follower.
    Connect,
    /// Close every connection at once, then reconnect and resume.
    Drop,
    /// Read until each room's final `seq` (or the timeout), then count.
    Finish {
        /// The last `seq` of each room.
        final_seqs: HashMap<ConsultationId, u64>,
    },
    /// Stop chatting; report each room's highest acknowledged `seq` once
    /// every send is answered.
    Quiesce,
    /// Report what happened since the last `Status` (resumes, latency).
    Status,
    /// Close every connection and stop.
    Close,
}

/// A shard's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Followers done with the current phase so far.
    Progress {
        /// How many.
        done: u64,
    },
    /// Every follower has tried to connect and join.
    Connected(PhaseReport),
    /// Every follower has tried to reconnect and resume.
    Resumed(PhaseReport),
    /// Every follower has counted what it received.
    Finished(FinishReport),
    /// Every follower has stopped chatting and its sends are answered.
    Quiesced(ChatReport),
    /// The answer to `Status`.
    Status(LiveReport),
    /// Every connection is closed; the worker stops.
    Closed,
    /// The worker cannot go on.
    Failed {
        /// Why.
        error: String,
    },
}

/// The outcome of a connect or resume phase in one shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Followers that succeeded.
    pub ok: u64,
    /// Followers that failed.
    pub failed: u64,
    /// The first failure, as an example.
    pub first_error: Option<String>,
    /// When the phase began in this shard (Unix µs).
    pub started_unix_us: u64,
    /// When its last follower succeeded (Unix µs).
    pub done_unix_us: u64,
    /// Time from the phase start to each follower's `joined`, µs.
    pub latency: Buckets,
    /// Messages replayed by `join … since`.
    pub replayed: u64,
}

/// What followers of one shard received, by the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FinishReport {
    /// Followers counted.
    pub followers: u64,
    /// Messages received in `seq` order.
    pub received: u64,
    /// Messages up to the final `seq` never received.
    pub missed: u64,
    /// Jumps in `seq`.
    pub gaps: u64,
    /// Messages received twice or out of order.
    pub stale: u64,
    /// Followers whose connection was down at the end.
    pub disconnected: u64,
    /// The most any one follower missed.
    pub worst_missed: u64,
    /// Delivery latency of live messages (body timestamp to receipt), µs;
    /// cleared once merged, so results do not carry it twice.
    #[serde(default, skip_serializing_if = "Buckets::is_empty")]
    pub latency: Buckets,
}

/// What the chatting followers of one shard sent, by the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatReport {
    /// Messages sent.
    pub sent: u64,
    /// Sends answered `ok`.
    pub acknowledged: u64,
    /// Sends answered with an error.
    pub refused: u64,
    /// The first refusal.
    pub first_refusal: Option<String>,
    /// Sends whose connection ended before the answer (the message may
    /// or may not be stored; receivers count it either way).
    pub unanswered: u64,
    /// The highest acknowledged `seq` of each room.
    pub acknowledged_seqs: HashMap<ConsultationId, u64>,
}

impl ChatReport {
    /// Adds `other`'s counts; each room keeps the higher `seq`.
    pub fn absorb(&mut self, other: Self) {
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.refused += other.refused;
        self.unanswered += other.unanswered;
        if self.first_refusal.is_none() {
            self.first_refusal = other.first_refusal;
        }
        for (room, seq) in other.acknowledged_seqs {
            let highest = self.acknowledged_seqs.entry(room).or_default();
            *highest = (*highest).max(seq);
        }
    }
}

impl FinishReport {
    /// Adds `other`'s counts (not its latency, which callers merge as
    /// histograms).
    pub fn absorb(&mut self, other: &Self) {
        self.followers += other.followers;
        self.received += other.received;
        self.missed += other.missed;
        self.gaps += other.gaps;
        self.stale += other.stale;
        self.disconnected += other.disconnected;
        self.worst_missed = self.worst_missed.max(other.worst_missed);
    }
}

/// What happened in one shard since the last `Status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveReport {
    /// Followers whose connection is up now.
    pub connected: u64,
    /// Connections that ended between phases.
    pub lost: u64,
    /// Followers that reconnected and resumed by themselves.
    pub resumed: u64,
    /// Resumes that gave up.
    pub resume_failed: u64,
    /// The first reason a resume gave up.
    pub first_resume_error: Option<String>,
    /// When the last resume completed (Unix µs; 0: none).
    pub last_resumed_unix_us: u64,
    /// From the connection's end to every room joined again, µs.
    pub outage: Buckets,
    /// Delivery latency of live messages from another member, µs.
    pub latency: Buckets,
    /// Dashboard deltas received.
    pub dashboard_deltas: u64,
}

/// A connection to one worker, in-process or child.
#[derive(Debug)]
struct Shard {
    commands_tx: mpsc::Sender<Command>,
    _child: Option<child::ChildWorker>,
}

/// Every shard of a fleet.
#[derive(Debug)]
pub struct Fleet {
    shards: Vec<Shard>,
    /// Every shard's reports, tagged with the shard's index.
    reports_rx: mpsc::Receiver<(usize, Report)>,
}

impl Fleet {
    /// Starts one worker per plan: child processes of `worker_exe` when
    /// given, tasks in this process otherwise.
    ///
    /// # Errors
    ///
    /// When a child process cannot be started.
    pub async fn start(plans: Vec<ShardPlan>, worker_exe: Option<&Path>) -> Result<Self> {
        let (merged_tx, reports_rx) = mpsc::channel(CHANNEL_CAPACITY * plans.len().max(1));
        let mut shards = Vec::with_capacity(plans.len());
        for (index, plan) in plans.into_iter().enumerate() {
            let (commands_tx, commands_rx) = mpsc::channel(CHANNEL_CAPACITY);
            let (reports_tx, reports_rx) = mpsc::channel(CHANNEL_CAPACITY);
            tokio::spawn(forward(index, reports_rx, merged_tx.clone()));
            let child = match worker_exe {
                Some(exe) => Some(child::ChildWorker::spawn(
                    exe,
                    &plan,
                    commands_rx,
                    reports_tx,
                )?),
                None => {
                    tokio::spawn(run_worker(plan, commands_rx, reports_tx));
                    None
                }
            };
            shards.push(Shard {
                commands_tx,
                _child: child,
            });
        }
        Ok(Self { shards, reports_rx })
    }

    /// Sends `command` to every shard, as close to the same moment as
    /// possible.
    ///
    /// # Errors
    ///
    /// When a worker has stopped.
    pub async fn broadcast(&self, command: &Command) -> Result<()> {
        for shard in &self.shards {
            if shard.commands_tx.send(command.clone()).await.is_err() {
                bail!("a fleet worker has stopped");
            }
        }
        Ok(())
    }

    /// Waits for one report from every shard that `pick` accepts, showing
    /// progress reports on `bar`.
    ///
    /// # Errors
    ///
    /// When a worker fails or stops first.
    pub async fn collect<T>(
        &mut self,
        bar: &ProgressBar,
        pick: impl Fn(Report) -> Option<T>,
    ) -> Result<Vec<T>> {
        let mut done = vec![0u64; self.shards.len()];
        let mut results: Vec<Option<T>> = (0..self.shards.len()).map(|_| None).collect();
        while results.iter().any(Option::is_none) {
            let Some((index, report)) = self.reports_rx.recv().await else {
                bail!("every fleet worker has stopped");
            };
            match report {
                Report::Progress { done: count } => {
                    done[index] = count;
                    bar.set_position(done.iter().sum());
                }
                Report::Failed { error } => bail!("fleet worker {index} failed: {error}"),
                other => {
                    if let Some(result) = pick(other) {
                        results[index] = Some(result);
                    }
                }
            }
        }
        Ok(results.into_iter().flatten().collect())
    }
}

impl Fleet {
    /// Closes every connection and waits until every worker has stopped,
    /// showing progress on `bar`.
    ///
    /// # Errors
    ///
    /// When a worker fails or stops first.
    pub async fn close(&mut self, bar: &ProgressBar) -> Result<()> {
        self.broadcast(&Command::Close).await?;
        self.collect(bar, |report| matches!(report, Report::Closed).then_some(()))
            .await?;
        Ok(())
    }
}

/// Tags one shard's reports with its index; a worker that stops without
/// saying goodbye is reported as failed.
async fn forward(
    index: usize,
    mut reports_rx: mpsc::Receiver<Report>,
    merged_tx: mpsc::Sender<(usize, Report)>,
) {
    let mut closed = false;
    while let Some(report) = reports_rx.recv().await {
        closed = matches!(report, Report::Closed);
        if merged_tx.send((index, report)).await.is_err() {
            return;
        }
    }
    if !closed {
        let error = "worker stopped without reporting".to_owned();
        // The fleet may already be gone; then nobody is waiting.
        let _gone = merged_tx.send((index, Report::Failed { error })).await;
    }
}

/// Splits followers into `shards` plans of near-equal size.
pub fn split(
    ws_urls: &[String],
    followers: Vec<FollowerPlan>,
    shards: usize,
    connect_concurrency: usize,
    finish_timeout_ms: u64,
) -> Vec<ShardPlan> {
    let shards = shards.max(1);
    let mut plans: Vec<ShardPlan> = (0..shards)
        .map(|_| ShardPlan {
            ws_urls: ws_urls.to_vec(),
            followers: Vec::new(),
            connect_concurrency: connect_concurrency.div_ceil(shards).max(1),
            finish_timeout_ms,
            chat_every_ms: 0,
            body_bytes: 0,
            auto_resume: false,
        })
        .collect();
    for (index, follower) in followers.into_iter().enumerate() {
        plans[index % shards].followers.push(follower);
    }
    plans
}

/// The executable to run child workers with: this program.
///
/// # Errors
///
/// When the running executable cannot be found.
pub fn this_executable() -> Result<PathBuf> {
    Ok(std::env::current_exe()?)
}
