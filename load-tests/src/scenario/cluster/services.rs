//! Everything a cluster run starts: PostgreSQL (a private, durable one
//! unless a URL is given), the broker (one `redis-server`, or a Redis
//! Cluster of three primaries and three replicas) and N hub nodes on ports
//! fixed for the run, so a node can be drained, killed and started again.
//! Owns those processes; the run decides what happens to them.

use crate::chaos::nodes::ChaosNode;
use crate::chaos::postgres::PrivatePostgres;
use crate::chaos::redis::RedisServer;
use crate::hub_process::{HubSpawn, LOAD_CLUSTER_KEY};
use crate::redis_cluster::{RedisCluster, redis_cli_for};
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The broker topology of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Broker {
    /// One `redis-server` (`broker.kind = "redis"`).
    Redis,
    /// A Redis Cluster, 3 primaries and 3 replicas, sharded pub/sub
    /// (`broker.kind = "redis-cluster"`).
    RedisCluster,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Redis => "one Redis",
            Self::RedisCluster => "a Redis Cluster (3 primaries, 3 replicas)",
        })
    }
}

/// The running broker.
#[derive(Debug)]
enum RunningBroker {
    Single(RedisServer),
    Cluster(RedisCluster),
}

/// The parts of a run.
#[derive(Debug)]
pub struct Services {
    /// The hub nodes (declared first: they stop before what they use).
    pub nodes: Vec<ChaosNode>,
    broker: RunningBroker,
    redis_cli: PathBuf,
    postgres: Option<PrivatePostgres>,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ServicesSpec {
    /// The `consult-hub` binary.
    pub hub: PathBuf,
    /// The `redis-server` binary.
    pub redis_server: PathBuf,
    /// The broker topology.
    pub broker: Broker,
    /// A PostgreSQL database for the hubs; `None` starts a private one.
    pub database_url: Option<String>,
    /// Hub nodes.
    pub nodes: usize,
    /// Extra `CONSULT_…` settings for every node, applied last.
    pub hub_env: Vec<(String, String)>,
}

impl Services {
    /// Starts PostgreSQL, the broker and every node (each ready).
    ///
    /// # Errors
    ///
    /// When a part does not start.
    pub async fn start(spec: &ServicesSpec) -> Result<Self> {
        let postgres = match &spec.database_url {
            Some(_) => None,
            None => Some(PrivatePostgres::start_with(true).await?),
        };
        let database_url = spec
            .database_url
            .clone()
            .or_else(|| postgres.as_ref().map(PrivatePostgres::url));
        let (broker, broker_urls) = match spec.broker {
            Broker::Redis => {
                let server = RedisServer::start(spec.redis_server.clone()).await?;
                let url = format!("redis://127.0.0.1:{}/", server.port());
                (RunningBroker::Single(server), vec![url])
            }
            Broker::RedisCluster => {
                let cluster = RedisCluster::start(&spec.redis_server).await?;
                let urls = cluster.urls();
                (RunningBroker::Cluster(cluster), urls)
            }
        };
        let mut extra_env = Vec::new();
        if spec.broker == Broker::RedisCluster {
            let list = broker_urls
                .iter()
                .map(|url| format!("\"{url}\""))
                .collect::<Vec<_>>()
                .join(",");
            extra_env.push((
                "CONSULT_BROKER__KIND".to_owned(),
                "redis-cluster".to_owned(),
            ));
            extra_env.push((
                "CONSULT_BROKER__CLUSTER_URLS".to_owned(),
                format!("[{list}]"),
            ));
            extra_env.push((
                "CONSULT_BROKER__CLUSTER_KEY".to_owned(),
                format!("\"{LOAD_CLUSTER_KEY}\""),
            ));
        }
        extra_env.extend(spec.hub_env.iter().cloned());
        let hub_spawn = HubSpawn {
            binary: spec.hub.clone(),
            database_url,
            // A cluster is named by `broker.cluster_urls` alone.
            redis_url: (spec.broker == Broker::Redis)
                .then(|| broker_urls.first().cloned())
                .flatten(),
            extra_env,
        };
        let mut nodes = Vec::with_capacity(spec.nodes);
        for index in 0..spec.nodes.max(1) {
            let mut node = ChaosNode::new(index, &hub_spawn)?;
            node.start().await?;
            nodes.push(node);
        }
        Ok(Self {
            nodes,
            broker,
            redis_cli: redis_cli_for(&spec.redis_server),
            postgres,
        })
    }

    /// Every Redis server's port (one, or the cluster's six).
    pub fn redis_ports(&self) -> Vec<u16> {
        match &self.broker {
            RunningBroker::Single(server) => vec![server.port()],
            RunningBroker::Cluster(cluster) => cluster.ports(),
        }
    }

    /// The `redis-cli` to read them with.
    pub fn redis_cli(&self) -> &Path {
        &self.redis_cli
    }

    /// The private PostgreSQL, when this run started one.
    pub fn postgres(&self) -> Option<&PrivatePostgres> {
        self.postgres.as_ref()
    }
}
