//! Readings of a cluster run's parts, and the figures of a window between
//! two readings: per node CPU, memory and connections (from `/proc` and
//! the node's own `/metrics`), Redis commands and CPU (from `INFO`),
//! PostgreSQL transactions and rows written (from `pg_stat_database`), and
//! the whole machine's CPU.

use super::services::Services;
use crate::hub_metrics;
use crate::procstat::{self, MachineTimes, ProcSample};
use crate::redis_cluster;
use crate::stats::unix_micros;
use serde::Serialize;

/// One node at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeReading {
    /// Whether its process runs.
    pub running: bool,
    /// CPU and memory, when it runs.
    pub process: Option<ProcSample>,
    /// WebSocket sessions it holds (`consult_connections_active`).
    pub connections: f64,
}

/// One Redis server at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RedisReading {
    /// `total_commands_processed`.
    pub commands: f64,
    /// `used_cpu_user + used_cpu_sys`, seconds.
    pub cpu_secs: f64,
}

/// PostgreSQL's counters for the database, at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PostgresReading {
    /// `xact_commit`.
    pub commits: f64,
    /// `tup_inserted + tup_updated + tup_deleted`.
    pub rows_written: f64,
}

/// Every part at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reading {
    /// When (Unix µs).
    pub at_unix_us: u64,
    /// Each node, by index.
    pub nodes: Vec<NodeReading>,
    /// Each Redis server.
    pub redis: Vec<RedisReading>,
    /// PostgreSQL, when the run started it.
    pub postgres: Option<PostgresReading>,
    /// The whole machine's CPU time (hubs, harness, Redis, PostgreSQL).
    pub machine: Option<MachineTimes>,
}

/// Reads every part; a part that cannot be read is left at its default
/// (a killed node reads as not running).
pub async fn read(services: &Services, http: &reqwest::Client) -> Reading {
    let mut nodes = Vec::with_capacity(services.nodes.len());
    for node in &services.nodes {
        let process = node.pid().and_then(|pid| procstat::sample(&[pid]).ok());
        let connections = match hub_metrics::read(http, &node.http_base).await {
            Ok(reading) => reading.total("consult_connections_active"),
            Err(_) => 0.0,
        };
        nodes.push(NodeReading {
            running: process.is_some(),
            process,
            connections,
        });
    }
    let mut redis = Vec::new();
    for port in services.redis_ports() {
        let info = redis_cluster::info(services.redis_cli(), port)
            .await
            .unwrap_or_default();
        let field = |name: &str| info.get(name).copied().unwrap_or(0.0);
        redis.push(RedisReading {
            commands: field("total_commands_processed"),
            cpu_secs: field("used_cpu_user") + field("used_cpu_sys"),
        });
    }
    let postgres = match services.postgres() {
        Some(pg) => pg
            .query(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted \
                 FROM pg_stat_database WHERE datname = 'postgres'",
            )
            .await
            .ok()
            .and_then(|row| {
                let (commits, rows) = row.trim().split_once('|')?;
                Some(PostgresReading {
                    commits: commits.parse().ok()?,
                    rows_written: rows.parse().ok()?,
                })
            }),
        None => None,
    };
    Reading {
        at_unix_us: unix_micros(),
        nodes,
        redis,
        postgres,
        machine: MachineTimes::now().ok(),
    }
}

/// One node over a window.
#[derive(Debug, Clone, Serialize)]
pub struct NodeWindow {
    /// Its index.
    pub node: usize,
    /// Sessions at the window's end.
    pub connections: f64,
    /// CPU, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// (RSS at the end − RSS before any client) ÷ sessions, KiB.
    pub rss_kib_per_connection: Option<f64>,
}

/// Every part over a window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Its length, seconds.
    pub secs: f64,
    /// Each node that ran through it.
    pub nodes: Vec<NodeWindow>,
    /// All nodes' CPU together, percent of one core.
    pub hub_cpu_percent: f64,
    /// Redis commands per second, all servers.
    pub redis_commands_per_sec: f64,
    /// Each Redis server's commands per second.
    pub redis_commands_per_sec_each: Vec<f64>,
    /// Redis CPU, all servers, percent of one core.
    pub redis_cpu_percent: f64,
    /// PostgreSQL transactions committed per second (`xact_commit`:
    /// read-only ones too).
    pub postgres_commits_per_sec: Option<f64>,
    /// PostgreSQL rows inserted, updated or deleted per second.
    pub postgres_rows_per_sec: Option<f64>,
    /// The whole machine's CPU, percent of one core (its cores × 100 is
    /// all of it).
    pub machine_cpu_percent: Option<f64>,
}

/// The figures between `start` and `end`; `baseline` is each node's
/// reading before any client connected.
pub fn window(baseline: &Reading, start: &Reading, end: &Reading) -> Window {
    let secs = end.at_unix_us.saturating_sub(start.at_unix_us).max(1) as f64 / 1e6;
    let mut nodes = Vec::new();
    for (index, (before, after)) in start.nodes.iter().zip(&end.nodes).enumerate() {
        let (Some(before), Some(after)) = (before.process, after.process) else {
            continue;
        };
        if after.cpu_us < before.cpu_us {
            // Restarted within the window: not comparable.
            continue;
        }
        let empty = baseline
            .nodes
            .get(index)
            .and_then(|node| node.process)
            .map_or(0, |process| process.rss_kib);
        let connections = end.nodes[index].connections;
        let grown = after.rss_kib.saturating_sub(empty) as f64;
        nodes.push(NodeWindow {
            node: index,
            connections,
            cpu_percent: after.cpu_since(&before) as f64 / (secs * 1e6) * 100.0,
            rss_mib: after.rss_kib as f64 / 1024.0,
            rss_kib_per_connection: (connections >= 1.0).then(|| grown / connections),
        });
    }
    let hub_cpu_percent = nodes.iter().map(|node| node.cpu_percent).sum();
    let redis_commands_per_sec_each: Vec<f64> = start
        .redis
        .iter()
        .zip(&end.redis)
        .map(|(a, b)| (b.commands - a.commands).max(0.0) / secs)
        .collect();
    let redis_cpu: f64 = start
        .redis
        .iter()
        .zip(&end.redis)
        .map(|(a, b)| (b.cpu_secs - a.cpu_secs).max(0.0))
        .sum();
    let postgres = start.postgres.zip(end.postgres);
    Window {
        secs,
        nodes,
        hub_cpu_percent,
        redis_commands_per_sec: redis_commands_per_sec_each.iter().sum(),
        redis_commands_per_sec_each,
        redis_cpu_percent: redis_cpu / secs * 100.0,
        postgres_commits_per_sec: postgres.map(|(a, b)| (b.commits - a.commits) / secs),
        postgres_rows_per_sec: postgres.map(|(a, b)| (b.rows_written - a.rows_written) / secs),
        machine_cpu_percent: start
            .machine
            .zip(end.machine)
            .map(|(a, b)| b.busy_percent_of_core_since(&a)),
    }
}
