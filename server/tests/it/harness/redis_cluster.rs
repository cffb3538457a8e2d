//! A real Redis Cluster per test: six redis-server processes (three
//! primaries, three replicas) on free ports with `--cluster-enabled yes`,
//! joined by `redis-cli --cluster create … --cluster-replicas 1`, killed on
//! `Drop`. A short node timeout (1 s) lets a replica take over a killed
//! primary's slots within a few seconds; `cluster-require-full-coverage no`
//! keeps the other shards serving meanwhile, as in production.

use super::redis::{RedisOptions, RedisServer};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the cluster gets to form, or to fail over.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

/// A running Redis Cluster.
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// `redis-cli` beside `CONSULT_TEST_REDIS_SERVER`, else from `PATH`.
fn redis_cli() -> PathBuf {
    std::env::var_os("CONSULT_TEST_REDIS_SERVER")
        .map(PathBuf::from)
        .map(|server| server.with_file_name("redis-cli"))
        .filter(|cli| cli.exists())
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

fn directive(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// One command on the node at `url`, as an administrator would.
pub(crate) async fn admin<T: redis::FromRedisValue>(
    url: &str,
    args: &[&str],
) -> redis::RedisResult<T> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(&mut connection).await
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node
    /// reports `cluster_state:ok` and every replica is in sync.
    pub(crate) async fn start() -> Self {
        let options = RedisOptions {
            tls: None,
            directives: vec![
                directive(&["cluster-enabled", "yes"]),
                directive(&["cluster-config-file", "nodes.conf"]),
                directive(&["cluster-node-timeout", "1000"]),
                directive(&["cluster-replica-validity-factor", "0"]),
                directive(&["cluster-require-full-coverage", "no"]),
                // Replicas sync at once instead of after the default 5 s.
                directive(&["repl-diskless-sync-delay", "0"]),
            ],
        };
        // `redis-cli --cluster create` has failed here, rarely, before
        // printing anything; such an attempt is reported and made again on
        // six new nodes.
        let mut attempts = 0;
        let nodes = loop {
            attempts += 1;
            let mut nodes = Vec::with_capacity(6);
            for _ in 0..6 {
                nodes.push(RedisServer::start_with(options.clone()).await);
            }
            let addresses: Vec<String> = nodes
                .iter()
                .map(|node| format!("127.0.0.1:{}", node.port()))
                .collect();
            let output = Command::new(redis_cli())
                .arg("--cluster")
                .arg("create")
                .args(&addresses)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("redis-cli runs");
            if output.status.success() {
                break nodes;
            }
            let failure = format!(
                "redis-cli --cluster create failed ({}, attempt {attempts}): stdout: {} stderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(attempts < 3, "{failure}");
            eprintln!("{failure}; starting six new nodes");
        };
        let cluster = Self { nodes };
        cluster.wait_until_ok().await;
        cluster
    }

    /// Kills every node (SIGKILL).
    pub(crate) fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Starts every node again on its port, with its cluster configuration
    /// file (so the cluster forms as it was, empty), and waits until it
    /// serves.
    pub(crate) async fn restart_all(&mut self) {
        for node in &mut self.nodes {
            node.restart().await;
        }
        self.wait_until_ok().await;
    }

    /// Every node's URL.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The URLs of the nodes still running.
    fn live_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .map(RedisServer::url)
            .collect()
    }

    /// The port of the primary serving `key`'s slot, as `node_url` sees it.
    async fn primary_port_of(node_url: &str, key: &str) -> Option<u16> {
        let slot: u16 = admin(node_url, &["CLUSTER", "KEYSLOT", key]).await.ok()?;
        let redis::Value::Array(ranges) = admin(node_url, &["CLUSTER", "SLOTS"]).await.ok()? else {
            return None;
        };
        for range in ranges {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                (fields.first(), fields.get(1))
            else {
                continue;
            };
            if i64::from(slot) < *start || i64::from(slot) > *end {
                continue;
            }
            let Some(redis::Value::Array(primary)) = fields.get(2) else {
                return None;
            };
            return match primary.get(1) {
                Some(redis::Value::Int(port)) => u16::try_from(*port).ok(),
                _ => None,
            };
        }
        None
    }

    /// Kills (SIGKILL) the primary serving `key`'s slot; returns its port.
    pub(crate) async fn kill_primary_of(&mut self, key: &str) -> u16 {
        let url = self.live_urls()[0].clone();
        let port = Self::primary_port_of(&url, key)
            .await
            .expect("the slot has a primary");
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("the primary is one of ours");
        node.kill();
        port
    }

    /// Moves `key`'s slot to another primary, as resharding does
    /// (`CLUSTER SETSLOT … IMPORTING / MIGRATING / NODE`; the slot holds no
    /// keys), and waits until every node agrees; returns the new primary's
    /// port.
    pub(crate) async fn move_slot_of(&self, key: &str) -> u16 {
        let any = self.live_urls()[0].clone();
        let slot: u16 = admin(&any, &["CLUSTER", "KEYSLOT", key]).await.unwrap();
        let slot = slot.to_string();
        let source = Self::primary_port_of(&any, key).await.expect("a primary");
        let mut target = None;
        for node in &self.nodes {
            let info: String = admin(&node.url(), &["INFO", "replication"]).await.unwrap();
            if node.port() != source && info.contains("role:master") {
                target = Some(node.port());
                break;
            }
        }
        let target = target.expect("another primary");
        let url = |port: u16| format!("redis://127.0.0.1:{port}/");
        let source_id: String = admin(&url(source), &["CLUSTER", "MYID"]).await.unwrap();
        let target_id: String = admin(&url(target), &["CLUSTER", "MYID"]).await.unwrap();
        for (port, state, node) in [
            (target, "IMPORTING", &source_id),
            (source, "MIGRATING", &target_id),
            (target, "NODE", &target_id),
            (source, "NODE", &target_id),
        ] {
            let _: () = admin(&url(port), &["CLUSTER", "SETSLOT", &slot, state, node])
                .await
                .unwrap();
        }
        let deadline = tokio::time::Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let mut agreed = true;
            for url in self.live_urls() {
                agreed &= Self::primary_port_of(&url, key).await == Some(target);
            }
            if agreed {
                return target;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot move did not spread within {CLUSTER_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a replica serves `key`'s slot instead of the killed
    /// primary on `dead_port`, and every live node reports
    /// `cluster_state:ok`.
    pub(crate) async fn wait_for_failover(&self, key: &str, dead_port: u16) {
        let deadline = tokio::time::Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let mut done = true;
            for url in self.live_urls() {
                let port = Self::primary_port_of(&url, key).await;
                done &= port.is_some_and(|port| port != dead_port) && cluster_ok(&url).await;
            }
            if done {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no failover within {CLUSTER_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_until_ok(&self) {
        let deadline = tokio::time::Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let mut ok = true;
            for url in self.urls() {
                ok &= cluster_ok(&url).await && replica_in_sync(&url).await;
            }
            if ok {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster did not form within {CLUSTER_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `cluster_state:ok` in the node's `CLUSTER INFO`.
async fn cluster_ok(url: &str) -> bool {
    admin::<String>(url, &["CLUSTER", "INFO"])
        .await
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// True for a primary, or a replica whose link to its primary is up.
async fn replica_in_sync(url: &str) -> bool {
    let Ok(info) = admin::<String>(url, &["INFO", "replication"]).await else {
        return false;
    };
    info.contains("role:master") || info.contains("master_link_status:up")
}
