//! A cluster for tests: one database (a shared SQLite file in WAL mode, or
//! one PostgreSQL database), one redis-server, and hubs with
//! `broker.kind = "redis"` on both — in-process [`TestHub`]s, or the real
//! binary ([`HubProcess`]) for tests that kill a node. [`ShardedCluster`]
//! is the same with a real Redis Cluster and `broker.kind =
//! "redis-cluster"`.

use super::db::TestDb;
use super::redis::RedisServer;
use super::redis_cluster::RedisCluster;
use super::{API_KEY, TestHub, init_logs};
use consult_client::Client;
use consult_hub::Config;
use consult_hub::broker::BrokerHealth;
use consult_hub::broker::envelope::ClusterKeys;
use consult_hub::config::BrokerKind;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The JWT secret of [`super::test_config`], which the real process must share so
/// that a token minted by any hub is good on every node.
pub(crate) const JWT_SECRET: &str = crate::harness::JWT_SECRET;
/// The cluster key every node of a test cluster signs its Redis envelopes
/// with.
pub(crate) const CLUSTER_KEY: &str = "test-cluster-key-0123456789abcdef0123456789";
/// Presence entries' lifetime in cluster tests: small, so that a dead node's
/// users read as offline quickly.
pub(crate) const PRESENCE_TTL_MS: u64 = 600;
/// How long a node gets to start and connect to Redis.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared backends of a cluster.
pub(crate) struct Cluster {
    /// The redis-server every node uses; tests may kill and restart it.
    pub(crate) redis: RedisServer,
    database_url: String,
    /// Holds the SQLite file and the processes' key files.
    dir: tempfile::TempDir,
}

/// Makes `config` a cluster node named `node`.
pub(crate) fn join_cluster(config: &mut Config, redis_url: &str, node: &str) {
    config.broker.kind = BrokerKind::Redis;
    config.broker.redis_url = Some(redis_url.to_owned());
    config.broker.node_id = Some(node.to_owned());
    config.broker.presence_ttl_ms = PRESENCE_TTL_MS;
    config.broker.cluster_key = Some(SecretString::from(CLUSTER_KEY.to_owned()));
}

/// Makes `config` a node named `node` of a Redis Cluster reached through
/// `urls`.
pub(crate) fn join_redis_cluster(config: &mut Config, urls: Vec<String>, node: &str) {
    join_cluster(config, "", node);
    config.broker.kind = BrokerKind::RedisCluster;
    config.broker.redis_url = None;
    config.broker.cluster_urls = urls;
}

/// One database, a real Redis Cluster (three primaries, three replicas)
/// and in-process hubs with `broker.kind = "redis-cluster"`.
pub(crate) struct ShardedCluster {
    /// The Redis Cluster; tests may kill its primaries.
    pub(crate) redis: RedisCluster,
    database_url: String,
    _dir: tempfile::TempDir,
}

impl ShardedCluster {
    /// Starts the backends and `N` hubs named `node-0`, `node-1`, ...,
    /// each with its broker connected.
    pub(crate) async fn start<const N: usize>() -> (Self, [TestHub; N]) {
        init_logs();
        let redis = RedisCluster::start().await;
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::create(dir.path()).await;
        let cluster = Self {
            redis,
            database_url: db.url,
            _dir: dir,
        };
        let mut hubs = Vec::with_capacity(N);
        for index in 0..N {
            let urls = cluster.redis.urls();
            let node = format!("node-{index}");
            let hub = TestHub::start_on_database(&cluster.database_url, |config| {
                join_redis_cluster(config, urls, &node);
            })
            .await;
            wait_until(STARTUP_TIMEOUT, "the hub's broker connects", || async {
                hub.state.broker.health() == BrokerHealth::Healthy
            })
            .await;
            hubs.push(hub);
        }
        let Ok(hubs) = <[TestHub; N]>::try_from(hubs) else {
            unreachable!("exactly N hubs were started");
        };
        (cluster, hubs)
    }
}

/// [`CLUSTER_KEY`] as the broker takes it.
pub(crate) fn cluster_keys() -> ClusterKeys {
    ClusterKeys::new(CLUSTER_KEY.as_bytes(), None).unwrap()
}

impl Cluster {
    /// Starts the backends and `N` in-process hubs named `node-0`,
    /// `node-1`, ..., each connected to Redis.
    pub(crate) async fn start<const N: usize>() -> (Self, [TestHub; N]) {
        let cluster = Self::on(RedisServer::start().await).await;
        let mut hubs = Vec::with_capacity(N);
        for index in 0..N {
            hubs.push(cluster.start_hub(&format!("node-{index}")).await);
        }
        let Ok(hubs) = <[TestHub; N]>::try_from(hubs) else {
            unreachable!("exactly N hubs were started");
        };
        (cluster, hubs)
    }

    /// The backends around `redis` (one the test set up, e.g. with TLS or
    /// ACL users), with no hub yet.
    pub(crate) async fn on(redis: RedisServer) -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::create(dir.path()).await;
        Self {
            redis,
            database_url: db.url,
            dir,
        }
    }

    /// Starts one more in-process hub named `node`, and waits until its
    /// broker is connected.
    pub(crate) async fn start_hub(&self, node: &str) -> TestHub {
        let hub = self.start_hub_with(node, |_| {}).await;
        wait_until(STARTUP_TIMEOUT, "the hub's broker connects", || async {
            hub.state.broker.health() == BrokerHealth::Healthy
        })
        .await;
        hub
    }

    /// Starts an in-process hub named `node`, its configuration adjusted by
    /// `adjust` after it joined the cluster; does not wait for its broker.
    pub(crate) async fn start_hub_with(
        &self,
        node: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestHub {
        let redis_url = self.redis.url();
        TestHub::start_on_database(&self.database_url, |config| {
            join_cluster(config, &redis_url, node);
            adjust(config);
        })
        .await
    }

    /// Builds (without running) a hub named `node` on the cluster: the
    /// build's outcome, for start-up refusals.
    pub(crate) async fn try_build(
        &self,
        node: &str,
    ) -> Result<consult_hub::App, consult_hub::app::BuildError> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::harness::test_config(self.database_url.clone(), dir.path());
        join_cluster(&mut config, &self.redis.url(), node);
        consult_hub::App::build(config).await
    }

    /// Runs the real `consult-hub` binary as node `node`, configured only
    /// through `CONSULT_…` variables, and waits until it is ready with a
    /// healthy broker.
    pub(crate) async fn spawn_process(&self, node: &str) -> HubProcess {
        for _ in 0..5 {
            if let Some(process) = HubProcess::spawn(self, node).await {
                return process;
            }
        }
        panic!("the consult-hub binary did not start as {node}");
    }
}

impl TestHub {
    /// Starts a hub on an existing database (shared with other hubs)
    /// instead of a fresh one; it gets its own folder for the key file.
    pub(crate) async fn start_on_database(
        database_url: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        init_logs();
        let db = TestDb {
            url: database_url.to_owned(),
        };
        Self::start_on(tempfile::tempdir().unwrap(), db, adjust).await
    }

    /// `/readyz`'s `broker` field: `healthy` or `degraded`.
    pub(crate) async fn readyz_broker(&self) -> String {
        readyz_broker(&self.http, &self.url("/readyz")).await
    }
}

/// The real binary, running as one cluster node. Killed on `Drop`.
pub(crate) struct HubProcess {
    pub(crate) addr: SocketAddr,
    process: Option<Child>,
    http: reqwest::Client,
}

impl HubProcess {
    /// One attempt: `None` if the process exited (its port was taken) or
    /// never became ready.
    async fn spawn(cluster: &Cluster, node: &str) -> Option<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap();
        let node_dir = cluster.dir.path().join(node);
        std::fs::create_dir_all(&node_dir).unwrap();
        let logs = std::env::var_os("TEST_LOG").is_some();
        let output = || {
            if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_consult-hub"));
        // Only the configuration below: nothing inherited from the test
        // run (such as CONSULT_TEST_DATABASE).
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSULT_") {
                command.env_remove(name);
            }
        }
        let process = command
            .current_dir(&node_dir)
            .env("CONSULT_LISTEN", addr.to_string())
            .env("CONSULT_DATABASE__URL", &cluster.database_url)
            .env("CONSULT_DATABASE__MAX_CONNECTIONS", "5")
            .env("CONSULT_BROKER__KIND", "redis")
            .env("CONSULT_BROKER__REDIS_URL", cluster.redis.url())
            .env("CONSULT_BROKER__NODE_ID", node)
            .env("CONSULT_BROKER__CLUSTER_KEY", CLUSTER_KEY)
            .env(
                "CONSULT_BROKER__PRESENCE_TTL_MS",
                PRESENCE_TTL_MS.to_string(),
            )
            .env("CONSULT_AUTH__JWT_SECRET", JWT_SECRET)
            .env("CONSULT_AUTH__API_KEYS", format!(r#"["{API_KEY}"]"#))
            .env("CONSULT_AUTH__KEY_FILE", node_dir.join("hub.key"))
            .env("CONSULT_SHUTDOWN__DRAIN_TIMEOUT_SECS", "5")
            .env(
                "CONSULT_LOG__FILTER",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("the consult-hub binary runs");
        let mut hub = Self {
            addr,
            process: Some(process),
            http: reqwest::Client::new(),
        };
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Some(process) = hub.process.as_mut() {
                if process.try_wait().unwrap().is_some() {
                    hub.process = None;
                    return None;
                }
            }
            if hub.readyz_broker().await == "healthy" {
                return Some(hub);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// `/readyz`'s `broker` field, or `unreachable`.
    pub(crate) async fn readyz_broker(&self) -> String {
        readyz_broker(&self.http, &format!("http://{}/readyz", self.addr)).await
    }

    /// `kill -9`: no shutdown, no goodbye, no presence cleanup.
    pub(crate) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readyz_broker(http: &reqwest::Client, url: &str) -> String {
    let Ok(response) = http.get(url).timeout(Duration::from_secs(2)).send().await else {
        return "unreachable".to_owned();
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["broker"].as_str().unwrap_or("unknown").to_owned()
}

/// Connects to any node's WebSocket URL with a token minted by any hub.
pub(crate) async fn connect_to(ws_url: &str, token: &str) -> Client {
    Client::connect(ws_url, token).await.expect("connects").0
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after
/// `limit`.
pub(crate) async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `client`'s events until message `last` of `consultation` arrives,
/// for at most `timeout`, returning every message seq seen on the way,
/// duplicates included, in arrival order.
pub(crate) async fn message_seqs_within(
    client: &Client,
    consultation: &consult_protocol::ConsultationId,
    last: u64,
    timeout: Duration,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while seqs.last() != Some(&last) {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .unwrap_or_else(|_| panic!("message {last} within {timeout:?}; got {seqs:?}"))
            .unwrap_or_else(|| panic!("connection open until message {last}; got {seqs:?}"));
        if let consult_protocol::ServerFrame::Message { message } = event {
            if &message.consultation_id == consultation {
                seqs.push(message.seq.get());
            }
        }
    }
    seqs
}
