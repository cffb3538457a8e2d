//! The hub (one node or several) a scenario runs against: either started
//! here ([`crate::hub_process`]) or already running at given URLs.
//!
//! A [`Target`] hands scenarios what they need and nothing more: each node's
//! HTTP and WebSocket address, the API key, and the process ids to sample.

use crate::hub_process::{HubSpawn, LOAD_API_KEY, SpawnedHub, SpawnedRedis};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Where the hub comes from; built from the command line.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// Start this `consult-hub` binary instead of using `urls`.
    pub spawn_hub: Option<PathBuf>,
    /// Nodes to start (with `spawn_hub`); more than one needs Redis.
    pub nodes: usize,
    /// `database.url` for started nodes; default: one SQLite file, shared.
    pub database_url: Option<String>,
    /// Redis for started nodes' broker.
    pub redis_url: Option<String>,
    /// Start this `redis-server` binary for the broker.
    pub spawn_redis: Option<PathBuf>,
    /// Extra `CONSULT_…` settings for started nodes.
    pub hub_env: Vec<(String, String)>,
    /// Running nodes' base URLs (`http://HOST:PORT`).
    pub urls: Vec<String>,
    /// API key of running nodes.
    pub api_key: Option<String>,
    /// Process ids of running nodes, to sample CPU and memory.
    pub hub_pids: Vec<u32>,
}

/// One hub node's addresses.
#[derive(Debug, Clone)]
pub struct Node {
    /// `http://HOST:PORT`.
    pub http_base: String,
    /// `ws://HOST:PORT/v1/ws`.
    pub ws_url: String,
}

impl Node {
    /// A node from its base URL (`http://HOST:PORT`, with or without a
    /// trailing slash).
    ///
    /// # Errors
    ///
    /// When the URL is not `http://…`.
    pub fn from_base(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/');
        let Some(rest) = base.strip_prefix("http://") else {
            bail!("hub URL must start with http:// (got {base})");
        };
        Ok(Self {
            http_base: base.to_owned(),
            ws_url: format!("ws://{rest}/v1/ws"),
        })
    }
}

/// The hub nodes of one run. Started processes stop when it is dropped.
#[derive(Debug)]
pub struct Target {
    /// The nodes, in the order given or started.
    pub nodes: Vec<Node>,
    /// Key for the REST API.
    pub api_key: String,
    /// Hub process ids to sample (empty when unknown).
    pub hub_pids: Vec<u32>,
    /// Whether the hubs were started by the harness.
    pub spawned: bool,
    /// Whether the nodes share a Redis broker.
    pub redis: bool,
    hubs: Vec<SpawnedHub>,
    // Declared after `hubs` so it outlives them on drop.
    redis_server: Option<SpawnedRedis>,
}

impl Target {
    /// Starts or connects to the hub as `spec` says.
    ///
    /// # Errors
    ///
    /// When neither a binary nor URLs are given, when several nodes are
    /// asked for without Redis, or when a process fails to start.
    pub async fn open(spec: &TargetSpec) -> Result<Self> {
        match &spec.spawn_hub {
            Some(binary) => Self::spawn(spec, binary.clone()).await,
            None => Self::existing(spec),
        }
    }

    fn existing(spec: &TargetSpec) -> Result<Self> {
        if spec.urls.is_empty() {
            bail!("give --spawn-hub PATH or --url URL (one per node)");
        }
        let nodes = spec
            .urls
            .iter()
            .map(|url| Node::from_base(url))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            redis: nodes.len() > 1,
            nodes,
            api_key: spec
                .api_key
                .clone()
                .context("--api-key is required with --url")?,
            hub_pids: spec.hub_pids.clone(),
            spawned: false,
            hubs: Vec::new(),
            redis_server: None,
        })
    }

    async fn spawn(spec: &TargetSpec, binary: PathBuf) -> Result<Self> {
        let node_count = spec.nodes.max(1);
        let redis = match (&spec.redis_url, &spec.spawn_redis) {
            (Some(_), _) | (None, None) => None,
            (None, Some(redis_binary)) => Some(SpawnedRedis::start(redis_binary).await?),
        };
        let redis_url = spec
            .redis_url
            .clone()
            .or_else(|| redis.as_ref().map(|server| server.url.clone()));
        if node_count > 1 && redis_url.is_none() {
            bail!("several nodes need a broker: give --redis-url or --spawn-redis");
        }
        let mut hub_spec = HubSpawn {
            binary,
            database_url: spec.database_url.clone(),
            redis_url: redis_url.clone(),
            extra_env: spec.hub_env.clone(),
        };
        let mut hubs = Vec::with_capacity(node_count);
        for _ in 0..node_count {
            let hub = SpawnedHub::start(&hub_spec).await?;
            // Later nodes share the first one's database (its SQLite file
            // when no URL was given).
            hub_spec.database_url = Some(hub.database_url.clone());
            hubs.push(hub);
        }
        let nodes = hubs
            .iter()
            .map(|hub| Node::from_base(&hub.http_base))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            nodes,
            api_key: LOAD_API_KEY.to_owned(),
            hub_pids: hubs.iter().map(SpawnedHub::pid).collect(),
            spawned: true,
            redis: redis_url.is_some(),
            hubs,
            redis_server: redis,
        })
    }

    /// The node that serves client `index` when clients are spread
    /// round-robin over the nodes.
    pub fn node_for(&self, index: usize) -> &Node {
        &self.nodes[index % self.nodes.len()]
    }

    /// Process ids of a Redis server started for the run (empty otherwise).
    pub fn broker_pids(&self) -> Vec<u32> {
        self.redis_server.iter().map(SpawnedRedis::pid).collect()
    }

    /// The folder of the SQLite file the first started hub created, if it
    /// did (a second node shares that file).
    pub fn sqlite_folder(&self) -> Option<&Path> {
        self.hubs.first().and_then(SpawnedHub::sqlite_folder)
    }

    /// Where the disk's own syncs are probed during a run: the folder of the
    /// SQLite file, or else the first started hub's folder (on this machine,
    /// the disk a PostgreSQL beside the hubs writes its log to as well);
    /// `None` when the harness started no hub.
    pub fn disk_probe_folder(&self) -> Option<&Path> {
        self.sqlite_folder()
            .or_else(|| self.hubs.first().map(SpawnedHub::folder))
    }

    /// Where started hubs write their logs.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.hubs.iter().map(|hub| hub.log_path.clone()).collect()
    }
}
