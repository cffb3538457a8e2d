//! A private Redis Cluster for the load harness: six `redis-server`
//! processes (three primaries, three replicas) on free ports of 127.0.0.1,
//! each in its own temporary folder with `--cluster-enabled yes`, joined by
//! `redis-cli --cluster create … --cluster-replicas 1`, and killed when
//! dropped. Also the one place the harness reads a Redis node's `INFO`
//! (through `redis-cli`, so the harness needs no Redis client of its own).

use crate::hub_process::{free_port, redis_command, wait_listening};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Nodes of the cluster: three primaries, each with one replica.
const NODES: usize = 6;
/// How long the cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct ClusterNode {
    port: u16,
    child: Child,
    _dir: TempDir,
}

/// The running cluster; every node is killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    cli: PathBuf,
}

/// `redis-cli` beside `server` when it is a path, else from `PATH`.
pub fn redis_cli_for(server: &Path) -> PathBuf {
    let beside = server.with_file_name("redis-cli");
    if server.components().count() > 1 && beside.exists() {
        beside
    } else {
        PathBuf::from("redis-cli")
    }
}

impl RedisCluster {
    /// Starts six nodes of `server`, creates the cluster and waits until
    /// every node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// When a node does not start, `redis-cli` fails, or the cluster does
    /// not form in time.
    pub async fn start(server: &Path) -> Result<Self> {
        let cli = redis_cli_for(server);
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            nodes.push(start_node(server)?);
        }
        let cluster = Self { nodes, cli };
        for node in &cluster.nodes {
            wait_listening(node.port, FORM_TIMEOUT).await?;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = tokio::process::Command::new(&cluster.cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", cluster.cli.display()))?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        cluster.wait_until_ok().await?;
        Ok(cluster)
    }

    /// Every node's URL, `redis://127.0.0.1:PORT/`.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect()
    }

    /// Every node's port.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The `redis-cli` this cluster was made with.
    pub fn cli(&self) -> &Path {
        &self.cli
    }

    async fn wait_until_ok(&self) -> Result<()> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let mut ok = true;
            for node in &self.nodes {
                let info = cli_text(&self.cli, node.port, &["CLUSTER", "INFO"]).await;
                ok &= info.is_ok_and(|info| info.contains("cluster_state:ok"));
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the Redis Cluster did not form within {FORM_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Err(error) = node.child.kill() {
                tracing::debug!(%error, "redis-server already gone");
            }
            // Reaping only; the exit status does not matter.
            let _status = node.child.wait();
        }
    }
}

fn start_node(server: &Path) -> Result<ClusterNode> {
    let dir = tempfile::Builder::new()
        .prefix("consult-load-redis-")
        .tempdir()
        .context("creating a Redis node's folder")?;
    let port = cluster_port()?;
    let child = redis_command(server, port)
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", "2000"])
        .args(["--repl-diskless-sync-delay", "0"])
        .current_dir(dir.path())
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    Ok(ClusterNode {
        port,
        child,
        _dir: dir,
    })
}

/// A free port for a cluster node whose bus port (10,000 higher, as
/// Redis derives it) is free too; Redis refuses ports above 55,535.
fn cluster_port() -> Result<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free {
            return Ok(port);
        }
    }
    bail!("no free port for a Redis Cluster node (with its bus port) after 100 tries")
}

/// One command on the Redis at `port`, as `redis-cli` prints it.
///
/// # Errors
///
/// When `redis-cli` cannot run or fails.
pub async fn cli_text(cli: &Path, port: u16, args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", cli.display()))?;
    if !output.status.success() {
        bail!(
            "redis-cli {args:?} on port {port} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The numeric fields of `INFO` on the Redis at `port`
/// (`total_commands_processed`, `used_cpu_user`, …).
///
/// # Errors
///
/// When `redis-cli` fails.
pub async fn info(cli: &Path, port: u16) -> Result<HashMap<String, f64>> {
    let text = cli_text(cli, port, &["INFO", "everything"]).await?;
    Ok(parse_info(&text))
}

/// The numeric `name:value` lines of an `INFO` answer.
pub fn parse_info(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_info;

    #[test]
    fn info_keeps_numeric_fields_only() {
        let info = parse_info(
            "# Stats\r\ntotal_commands_processed:1234\r\nused_cpu_user:1.5\r\nrole:master\r\n",
        );
        assert_eq!(info.get("total_commands_processed"), Some(&1234.0));
        assert_eq!(info.get("used_cpu_user"), Some(&1.5));
        assert!(!info.contains_key("role"));
    }
}
