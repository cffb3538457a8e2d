//! The fault schedule: two tracks drawing from generators seeded from the
//! campaign's seed. The infrastructure track injects one fault at a time
//! (kill -9 or SIGTERM and restart of a node, restart of Redis or
//! PostgreSQL, delay, loss or partition on one node's link to Redis or
//! PostgreSQL), heals it, pauses, and draws the next; the provider track
//! switches the fake provider between normal, slow, failing and late.
//! Every fault goes to the journal; a drain that overruns its deadline is
//! an anomaly.

use super::cluster::{Cluster, DRAIN_TIMEOUT_SECS, Service};
use super::journal::{FaultRecord, Journal};
use super::provider::ProviderMode;
use super::proxy::LinkFault;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longer than this between SIGTERM and exit is an anomaly: the drain
/// deadline plus the outbox's last pass and closing the database.
const SHUTDOWN_ALLOWANCE: Duration = Duration::from_secs(DRAIN_TIMEOUT_SECS + 10);
/// After this long a draining node is killed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(DRAIN_TIMEOUT_SECS + 40);

/// Runs the infrastructure track until `stop`; the fault in progress is
/// healed before it returns.
pub async fn infrastructure(
    cluster: &Cluster,
    journal: &Journal,
    seed: u64,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let nodes = cluster.nodes.len();
    while !stop.is_cancelled() {
        let pause = rng.random_range(1000..=5000);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
        let node = rng.random_range(0..nodes);
        let service = if rng.random_bool(0.5) {
            Service::Redis
        } else {
            Service::Postgres
        };
        let hold = Duration::from_millis(rng.random_range(2000..=8000));
        let down = Duration::from_millis(rng.random_range(500..=3000));
        match rng.random_range(0..100) {
            0..15 => kill_node(cluster, journal, node, down).await,
            15..30 => term_node(cluster, journal, node, down).await,
            30..40 => restart_redis(cluster, journal, down).await,
            40..50 => restart_postgres(cluster, journal, down, rng.random_bool(0.5)).await,
            50..65 => {
                let ms = rng.random_range(50..=400);
                link_fault(
                    cluster,
                    journal,
                    node,
                    service,
                    LinkFault::Delay { ms },
                    hold,
                )
                .await;
            }
            65..80 => {
                let percent = rng.random_range(10..=40);
                let fault = LinkFault::Loss { percent };
                link_fault(cluster, journal, node, service, fault, hold).await;
            }
            _ => {
                let fault = LinkFault::Partition;
                link_fault(cluster, journal, node, service, fault, hold).await;
            }
        }
    }
}

/// Runs the provider track until `stop`, leaving the provider normal.
pub async fn provider(cluster: &Cluster, journal: &Journal, seed: u64, stop: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0000_0000_00AB_CDEF);
    while !stop.is_cancelled() {
        let pause = rng.random_range(2000..=8000);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
        let (mode, kind) = match rng.random_range(0..3) {
            0 => (ProviderMode::Slow, "provider_slow"),
            1 => (ProviderMode::Failing, "provider_failing"),
            _ => (ProviderMode::Late, "provider_late"),
        };
        let hold = rng.random_range(2000..=8000);
        let at_ms = journal.now_ms();
        cluster.provider.set(mode);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(hold)) => {}
        }
        cluster.provider.set(ProviderMode::Normal);
        journal.fault(FaultRecord {
            at_ms,
            until_ms: journal.now_ms(),
            kind,
            target: "provider".to_owned(),
            node: None,
            detail: format!("{hold} ms"),
        });
    }
    cluster.provider.set(ProviderMode::Normal);
}

async fn kill_node(cluster: &Cluster, journal: &Journal, index: usize, down: Duration) {
    let mut node = cluster.nodes[index].lock().await;
    let at_ms = journal.now_ms();
    node.kill();
    tokio::time::sleep(down).await;
    let detail = restart_node(&mut node, journal).await;
    journal.fault(FaultRecord {
        at_ms,
        until_ms: journal.now_ms(),
        kind: "kill_node",
        target: format!("node {index}"),
        node: Some(index),
        detail,
    });
}

async fn term_node(cluster: &Cluster, journal: &Journal, index: usize, down: Duration) {
    let mut node = cluster.nodes[index].lock().await;
    let at_ms = journal.now_ms();
    let drained = node.terminate(SHUTDOWN_LIMIT).await;
    let detail = match drained {
        Ok((took, true)) if took <= SHUTDOWN_ALLOWANCE => {
            format!("exited in {} ms", took.as_millis())
        }
        Ok((took, exited)) => {
            journal.anomaly(
                "slow_shutdown",
                format!(
                    "node {index} took {} ms after SIGTERM (allowed {} ms; exited by itself: {exited})",
                    took.as_millis(),
                    SHUTDOWN_ALLOWANCE.as_millis()
                ),
            );
            format!("took {} ms", took.as_millis())
        }
        Err(error) => format!("SIGTERM failed: {error}"),
    };
    tokio::time::sleep(down).await;
    let restarted = restart_node(&mut node, journal).await;
    journal.fault(FaultRecord {
        at_ms,
        until_ms: journal.now_ms(),
        kind: "term_node",
        target: format!("node {index}"),
        node: Some(index),
        detail: format!("{detail}; {restarted}"),
    });
}

/// Starts a node again, trying a few times (a start can meet another
/// fault's aftermath); says how it went.
async fn restart_node(node: &mut super::nodes::ChaosNode, journal: &Journal) -> String {
    for attempt in 1..=3 {
        match node.start().await {
            Ok(()) => return format!("restarted (attempt {attempt})"),
            Err(error) => {
                tracing::warn!(node = node.index, %error, "restart failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    journal.anomaly(
        "node_start_failed",
        format!("node {} did not start in 3 attempts", node.index),
    );
    "not restarted".to_owned()
}

async fn restart_redis(cluster: &Cluster, journal: &Journal, down: Duration) {
    let mut redis = cluster.redis.lock().await;
    let at_ms = journal.now_ms();
    redis.kill();
    tokio::time::sleep(down).await;
    let detail = match redis.restart().await {
        Ok(()) => format!("down {} ms", down.as_millis()),
        Err(error) => {
            journal.anomaly("service_start_failed", format!("redis: {error}"));
            "not restarted".to_owned()
        }
    };
    journal.fault(FaultRecord {
        at_ms,
        until_ms: journal.now_ms(),
        kind: "restart_redis",
        target: "redis".to_owned(),
        node: None,
        detail,
    });
}

async fn restart_postgres(cluster: &Cluster, journal: &Journal, down: Duration, immediate: bool) {
    let at_ms = journal.now_ms();
    let mode = if immediate { "immediate" } else { "fast" };
    let stopped = cluster.postgres.stop(immediate).await;
    tokio::time::sleep(down).await;
    let started = cluster.postgres.start_server().await;
    let detail = match (stopped, started) {
        (Ok(()), Ok(())) => format!("stop -m {mode}, down {} ms", down.as_millis()),
        (stopped, started) => {
            journal.anomaly(
                "service_start_failed",
                format!(
                    "postgres: stop {:?}, start {:?}",
                    stopped.err().map(|error| error.to_string()),
                    started.err().map(|error| error.to_string())
                ),
            );
            "failed".to_owned()
        }
    };
    journal.fault(FaultRecord {
        at_ms,
        until_ms: journal.now_ms(),
        kind: "restart_postgres",
        target: "postgres".to_owned(),
        node: None,
        detail,
    });
}

async fn link_fault(
    cluster: &Cluster,
    journal: &Journal,
    node: usize,
    service: Service,
    fault: LinkFault,
    hold: Duration,
) {
    let link = cluster.link(node, service);
    let at_ms = journal.now_ms();
    link.set(fault);
    tokio::time::sleep(hold).await;
    link.set(LinkFault::None);
    let (kind, detail) = match fault {
        LinkFault::Delay { ms } => ("link_delay", format!("{ms} ms per chunk")),
        LinkFault::Loss { percent } => ("link_loss", format!("{percent} % of chunks")),
        LinkFault::Partition | LinkFault::None => ("link_partition", String::new()),
    };
    let service = match service {
        Service::Redis => "redis",
        Service::Postgres => "postgres",
    };
    journal.fault(FaultRecord {
        at_ms,
        until_ms: journal.now_ms(),
        kind,
        target: format!("node {node} -> {service}"),
        node: Some(node),
        detail: format!("{detail} for {} ms", hold.as_millis()),
    });
}
