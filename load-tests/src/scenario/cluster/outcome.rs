//! What a cluster run measured: the result written as JSON, its summary
//! lines (one per figure, per node where it applies) and its plots
//! (sessions per node over time, CPU over time, delivery latency, resume
//! times).

use super::ClusterOptions;
use super::observe::{Reading, Window};
use super::population::Census;
use crate::fleet::{ChatReport, FinishReport, LiveReport, PhaseReport};
use crate::report::{self, Plot, latency_line};
use crate::stats::{LatencyRecorder, LatencySummary};
use crate::svg::{Chart, Series, XAxis};
use serde::Serialize;
use std::time::Duration;

/// One fault (a drain or a kill) and how the clients got over it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOutcome {
    /// What was done.
    pub what: String,
    /// Sessions the node held just before.
    pub sessions_on_node: f64,
    /// From the signal to the process gone, seconds.
    pub stop_secs: f64,
    /// Whether the process exited by itself (a drain that finished).
    pub exited_by_itself: bool,
    /// Connections that ended.
    pub lost: u64,
    /// Of those, resumed on another node.
    pub resumed: u64,
    /// Resumes that gave up.
    pub resume_failed: u64,
    /// The first reason one gave up.
    pub first_resume_error: Option<String>,
    /// From the signal to the last client resumed, seconds.
    pub all_back_secs: Option<f64>,
    /// Per client: from its connection's end to every room joined again.
    pub outage: LatencySummary,
    /// Delivery latency of live messages while it lasted.
    pub delivery: LatencySummary,
    #[serde(skip)]
    outage_recorder: LatencyRecorder,
}

impl FaultOutcome {
    /// From the clients' reports since the fault at `fault_unix_us`.
    pub fn from_live(live: LiveReport, fault_unix_us: u64) -> Self {
        let outage_recorder = LatencyRecorder::from_buckets(&live.outage);
        Self {
            what: String::new(),
            sessions_on_node: 0.0,
            stop_secs: 0.0,
            exited_by_itself: false,
            lost: live.lost,
            resumed: live.resumed,
            resume_failed: live.resume_failed,
            first_resume_error: live.first_resume_error,
            all_back_secs: (live.last_resumed_unix_us > fault_unix_us)
                .then(|| (live.last_resumed_unix_us - fault_unix_us) as f64 / 1e6),
            outage: outage_recorder.summary(),
            delivery: LatencyRecorder::from_buckets(&live.latency).summary(),
            outage_recorder,
        }
    }

    /// Names the fault and how the node stopped.
    pub fn with_fault(
        mut self,
        what: &str,
        sessions_on_node: f64,
        stop: Duration,
        exited_by_itself: bool,
    ) -> Self {
        what.clone_into(&mut self.what);
        self.sessions_on_node = sessions_on_node;
        self.stop_secs = stop.as_secs_f64();
        self.exited_by_itself = exited_by_itself;
        self
    }

    fn line(&self) -> String {
        format!(
            "{}: the node held {:.0} sessions and was gone after {:.1} s{}; {} connections ended, \
             {} resumed on other nodes ({} gave up{}), all back {} after the signal; outage per \
             client p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.what,
            self.sessions_on_node,
            self.stop_secs,
            if self.exited_by_itself {
                " (exited by itself)"
            } else {
                ""
            },
            self.lost,
            self.resumed,
            self.resume_failed,
            self.first_resume_error
                .as_ref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            self.all_back_secs
                .map_or("never".to_owned(), |secs| format!("{secs:.1} s")),
            self.outage.p50_us as f64 / 1000.0,
            self.outage.p99_us as f64 / 1000.0,
            self.outage.max_us as f64 / 1000.0,
        )
    }
}

/// What chatting members sent.
#[derive(Debug, Clone, Serialize)]
pub struct ChatFigures {
    /// Messages sent.
    pub sent: u64,
    /// Answered `ok` (stored).
    pub acknowledged: u64,
    /// Answered with an error.
    pub refused: u64,
    /// The first refusal.
    pub first_refusal: Option<String>,
    /// Connection ended before the answer.
    pub unanswered: u64,
}

impl From<&ChatReport> for ChatFigures {
    fn from(chat: &ChatReport) -> Self {
        Self {
            sent: chat.sent,
            acknowledged: chat.acknowledged,
            refused: chat.refused,
            first_refusal: chat.first_refusal.clone(),
            unanswered: chat.unanswered,
        }
    }
}

/// A measured stretch of steady state.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyFigures {
    /// Parts' figures.
    pub window: Window,
    /// Delivery latency of live messages from another member.
    pub delivery: LatencySummary,
    /// Messages delivered per second (timed ones).
    pub delivered_per_sec: f64,
    /// Dashboard deltas received per second.
    pub dashboard_deltas_per_sec: f64,
    #[serde(skip)]
    recorder: LatencyRecorder,
}

impl SteadyFigures {
    /// From a window and the clients' report over it.
    pub fn new(window: Window, live: &LiveReport) -> Self {
        let recorder = LatencyRecorder::from_buckets(&live.latency);
        Self {
            delivery: recorder.summary(),
            delivered_per_sec: recorder.count() as f64 / window.secs,
            dashboard_deltas_per_sec: live.dashboard_deltas as f64 / window.secs,
            window,
            recorder,
        }
    }
}

/// Everything a cluster run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    /// The parameters.
    pub options: ClusterOptions,
    /// Who took part.
    pub census: Census,
    /// Connections that joined.
    pub connected: u64,
    /// Connections that failed.
    pub connect_failed: u64,
    /// The first failure.
    pub first_connect_error: Option<String>,
    /// From the connect command to the last join, seconds.
    pub connect_secs: f64,
    /// The parts over the connect phase (memory per session afterwards).
    pub connect_window: Window,
    /// Steady state before the faults.
    pub steady: SteadyFigures,
    /// The drain.
    pub drain: FaultOutcome,
    /// The kill.
    pub kill: FaultOutcome,
    /// Steady state after the kill.
    pub after: SteadyFigures,
    /// What was sent.
    pub chat: ChatFigures,
    /// Messages members received in order, over the whole run.
    pub received: u64,
    /// Messages up to the last acknowledged `seq` of their room that a
    /// member never received: lost.
    pub lost: u64,
    /// Jumps in `seq` seen by members.
    pub gaps: u64,
    /// Messages received twice or out of order.
    pub stale: u64,
    /// Members not connected at the end.
    pub disconnected_at_end: u64,
    /// Every part, every few seconds.
    pub timeline: Vec<Reading>,
}

/// The parts of a [`ClusterResult`] the run hands over.
#[derive(Debug)]
pub struct Measured {
    pub options: ClusterOptions,
    pub census: Census,
    pub connect: PhaseReport,
    pub connect_window: Window,
    pub steady: SteadyFigures,
    pub drain: FaultOutcome,
    pub kill: FaultOutcome,
    pub after: SteadyFigures,
    pub chat: ChatReport,
    pub finish: FinishReport,
    pub timeline: Vec<Reading>,
}

impl From<Measured> for ClusterResult {
    fn from(m: Measured) -> Self {
        Self {
            connected: m.connect.ok,
            connect_failed: m.connect.failed,
            first_connect_error: m.connect.first_error.clone(),
            connect_secs: m
                .connect
                .done_unix_us
                .saturating_sub(m.connect.started_unix_us) as f64
                / 1e6,
            options: m.options,
            census: m.census,
            connect_window: m.connect_window,
            steady: m.steady,
            drain: m.drain,
            kill: m.kill,
            after: m.after,
            chat: ChatFigures::from(&m.chat),
            received: m.finish.received,
            lost: m.finish.missed,
            gaps: m.finish.gaps,
            stale: m.finish.stale,
            disconnected_at_end: m.finish.disconnected,
            timeline: m.timeline,
        }
    }
}

impl ClusterResult {
    /// One line per key figure.
    pub fn summary_lines(&self) -> Vec<String> {
        let o = &self.options;
        let mut lines = vec![
            format!(
                "{} hub nodes, {}, {}; {}",
                o.nodes,
                o.broker,
                if o.database_url.is_some() {
                    "the given PostgreSQL"
                } else {
                    "a private PostgreSQL (fsync on)"
                },
                self.census.summary()
            ),
            format!(
                "{} of {} connected and joined in {:.1} s ({} failed{})",
                self.connected,
                self.census.connections(),
                self.connect_secs,
                self.connect_failed,
                self.first_connect_error
                    .as_ref()
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default()
            ),
            format!(
                "chat: {} messages per minute per member in {} consultations; {} sent, {} \
                 acknowledged, {} refused{}, {} unanswered when a connection ended",
                o.messages_per_minute,
                self.census.chatting_rooms,
                self.chat.sent,
                self.chat.acknowledged,
                self.chat.refused,
                self.chat
                    .first_refusal
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                self.chat.unanswered
            ),
            format!(
                "LOST: {} messages acknowledged to their sender and never received by a member \
                 ({} received in order, {} gaps, {} stale, {} members disconnected at the end)",
                self.lost, self.received, self.gaps, self.stale, self.disconnected_at_end
            ),
        ];
        lines.extend(window_lines("steady state", &self.steady));
        lines.push(self.drain.line());
        lines.push(self.kill.line());
        lines.extend(window_lines("after the kill", &self.after));
        lines.push(format!(
            "memory right after connecting: {}",
            self.connect_window
                .nodes
                .iter()
                .map(|n| format!(
                    "node {} {:.0} sessions {}",
                    n.node,
                    n.connections,
                    n.rss_kib_per_connection
                        .map_or("n/a".to_owned(), |kib| format!("{kib:.2} KiB each"))
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        lines
    }

    /// Sessions per node and CPU over the run, delivery latency, outages.
    pub fn plots(&self) -> Vec<Plot> {
        let origin = self.timeline.first().map_or(0, |r| r.at_unix_us);
        let secs = |r: &Reading| r.at_unix_us.saturating_sub(origin) as f64 / 1e6;
        let sessions = (0..self.options.nodes)
            .map(|index| Series {
                name: format!("node {index}"),
                points: self
                    .timeline
                    .iter()
                    .map(|r| {
                        let connections = r.nodes.get(index).map_or(0.0, |n| n.connections);
                        (secs(r), connections)
                    })
                    .collect(),
            })
            .collect();
        let cpu_series = |name: &str, cpu: &dyn Fn(&Reading, &Reading) -> f64| Series {
            name: name.to_owned(),
            points: self
                .timeline
                .windows(2)
                .map(|pair| {
                    let wall = pair[1].at_unix_us.saturating_sub(pair[0].at_unix_us).max(1);
                    (
                        secs(&pair[1]),
                        cpu(&pair[0], &pair[1]) / wall as f64 * 100.0,
                    )
                })
                .collect(),
        };
        let hub_cpu = |a: &Reading, b: &Reading| {
            a.nodes
                .iter()
                .zip(&b.nodes)
                .filter_map(|(x, y)| y.process?.cpu_us.checked_sub(x.process?.cpu_us))
                .sum::<u64>() as f64
        };
        let redis_cpu = |a: &Reading, b: &Reading| {
            a.redis
                .iter()
                .zip(&b.redis)
                .map(|(x, y)| (y.cpu_secs - x.cpu_secs).max(0.0) * 1e6)
                .sum::<f64>()
        };
        vec![
            Plot {
                name: "sessions",
                chart: Chart {
                    title: "cluster: sessions per node (drain of node 0, kill -9 of node 1)"
                        .to_owned(),
                    x_label: "time (s)".to_owned(),
                    y_label: "sessions".to_owned(),
                    x_axis: XAxis::Linear,
                    series: sessions,
                },
            },
            Plot {
                name: "cpu",
                chart: Chart {
                    title: "cluster: CPU, all hub nodes and Redis".to_owned(),
                    x_label: "time (s)".to_owned(),
                    y_label: "% of one core".to_owned(),
                    x_axis: XAxis::Linear,
                    series: vec![
                        cpu_series("hub nodes", &hub_cpu),
                        cpu_series("Redis", &redis_cpu),
                    ],
                },
            },
            Plot {
                name: "machine",
                chart: Chart {
                    title: "cluster: the whole machine's CPU (hubs, clients, Redis, PostgreSQL)"
                        .to_owned(),
                    x_label: "time (s)".to_owned(),
                    y_label: "% of one core".to_owned(),
                    x_axis: XAxis::Linear,
                    series: vec![Series {
                        name: "machine".to_owned(),
                        points: self
                            .timeline
                            .windows(2)
                            .filter_map(|pair| {
                                let (a, b) = (pair[0].machine?, pair[1].machine?);
                                Some((secs(&pair[1]), b.busy_percent_of_core_since(&a)))
                            })
                            .collect(),
                    }],
                },
            },
            Plot {
                name: "latency",
                chart: report::latency_chart(
                    "cluster: delivery latency, live messages between members",
                    &[
                        ("steady state", &self.steady.recorder),
                        ("after the kill", &self.after.recorder),
                    ],
                ),
            },
            Plot {
                name: "resume",
                chart: report::latency_chart(
                    "cluster: outage per moved client (connection end to rooms joined again)",
                    &[
                        ("drain", &self.drain.outage_recorder),
                        ("kill -9", &self.kill.outage_recorder),
                    ],
                ),
            },
        ]
    }
}

fn window_lines(name: &str, figures: &SteadyFigures) -> Vec<String> {
    let w = &figures.window;
    let mut lines = vec![
        format!(
            "{name} over {:.0} s: hub CPU {:.1} % of one core (all nodes; the whole machine {}); \
             Redis {:.0} commands/s, {:.1} % CPU; PostgreSQL {} transactions/s, {} rows written/s; \
             {:.0} messages delivered/s, {:.0} dashboard deltas/s",
            w.secs,
            w.hub_cpu_percent,
            w.machine_cpu_percent
                .map_or("n/a".to_owned(), |v| format!("{v:.0} %")),
            w.redis_commands_per_sec,
            w.redis_cpu_percent,
            w.postgres_commits_per_sec
                .map_or("n/a".to_owned(), |v| format!("{v:.0}")),
            w.postgres_rows_per_sec
                .map_or("n/a".to_owned(), |v| format!("{v:.0}")),
            figures.delivered_per_sec,
            figures.dashboard_deltas_per_sec
        ),
        latency_line(&format!("{name}: delivery"), &figures.delivery),
    ];
    for node in &w.nodes {
        lines.push(format!(
            "{name}: node {}: {:.0} sessions, CPU {:.1} %, RSS {:.0} MiB, {} per session",
            node.node,
            node.connections,
            node.cpu_percent,
            node.rss_mib,
            node.rss_kib_per_connection
                .map_or("n/a".to_owned(), |kib| format!("{kib:.2} KiB"))
        ));
    }
    if w.redis_commands_per_sec_each.len() > 1 {
        lines.push(format!(
            "{name}: Redis commands/s per server: {}",
            w.redis_commands_per_sec_each
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines
}
