//! Everything the campaign runs the hub on: a private PostgreSQL, a private
//! Redis, the fake push/SMS provider, and three hub nodes, each reaching
//! Redis and PostgreSQL through fault proxies of its own. Starts them, and
//! at the end heals every fault and brings every part back.

use super::nodes::ChaosNode;
use super::postgres::PrivatePostgres;
use super::provider::{FakeProvider, ProviderMode};
use super::proxy::{FaultProxy, LinkFault};
use super::redis::RedisServer;
use crate::hub_process::HubSpawn;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The hub's webhook request timeout in the campaign, seconds.
pub const WEBHOOK_TIMEOUT_SECS: u64 = 2;
/// The nodes' `shutdown.drain_timeout_secs`.
pub const DRAIN_TIMEOUT_SECS: u64 = 5;
/// The nodes' `notify.max_attempts`.
pub const MAX_ATTEMPTS: u32 = 5;
/// The nodes' `notify.lease_secs`.
pub const LEASE_SECS: u64 = 10;
/// The nodes' `broker.presence_ttl_ms`.
pub const PRESENCE_TTL_MS: u64 = 6000;
/// The nodes' `broker.presence_cache_ms`.
pub const PRESENCE_CACHE_MS: u64 = 500;

/// Which service a link leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Redis.
    Redis,
    /// PostgreSQL.
    Postgres,
}

/// The running parts.
#[derive(Debug)]
pub struct Cluster {
    /// The hub nodes (a mutex each: faults and the end phase take turns).
    pub nodes: Vec<Mutex<ChaosNode>>,
    /// Each node's HTTP base URL.
    pub http_bases: Vec<String>,
    /// Each node's WebSocket URL.
    pub ws_urls: Vec<String>,
    /// Node i's proxy to Redis.
    pub redis_links: Vec<FaultProxy>,
    /// Node i's proxy to PostgreSQL.
    pub pg_links: Vec<FaultProxy>,
    /// The provider.
    pub provider: FakeProvider,
    /// Redis.
    pub redis: Mutex<RedisServer>,
    /// PostgreSQL.
    pub postgres: PrivatePostgres,
}

/// Secret the nodes sign webhook requests with.
const WEBHOOK_SECRET: &str = "chaos-webhook-secret-not-for-production-0123";

impl Cluster {
    /// Starts PostgreSQL, Redis, the provider, the proxies and `nodes`
    /// hub nodes (one after another, so that the first runs the
    /// migrations alone).
    ///
    /// # Errors
    ///
    /// When any part does not start.
    pub async fn start(
        hub: PathBuf,
        redis_server: PathBuf,
        nodes: usize,
        started: Instant,
        seed: u64,
    ) -> Result<Self> {
        let postgres = PrivatePostgres::start()
            .await
            .context("starting PostgreSQL")?;
        let redis = RedisServer::start(redis_server)
            .await
            .context("starting redis-server")?;
        let provider = FakeProvider::start(
            started,
            Duration::from_secs(WEBHOOK_TIMEOUT_SECS),
            seed ^ 0x5EED_0001,
        )
        .await?;
        let mut redis_links = Vec::new();
        let mut pg_links = Vec::new();
        let mut chaos_nodes = Vec::new();
        for index in 0..nodes {
            let redis_link =
                FaultProxy::start(redis.port(), seed ^ (0x5EED_0100 + index as u64)).await?;
            let pg_link =
                FaultProxy::start(postgres.port(), seed ^ (0x5EED_0200 + index as u64)).await?;
            let spec = HubSpawn {
                binary: hub.clone(),
                database_url: Some(format!(
                    "postgres://postgres@127.0.0.1:{}/postgres",
                    pg_link.port()
                )),
                redis_url: Some(format!("redis://127.0.0.1:{}", redis_link.port())),
                extra_env: node_settings(&provider.url_for(index)),
            };
            let mut node = ChaosNode::new(index, &spec)?;
            node.start()
                .await
                .with_context(|| format!("starting node {index}"))?;
            redis_links.push(redis_link);
            pg_links.push(pg_link);
            chaos_nodes.push(node);
        }
        Ok(Self {
            http_bases: chaos_nodes
                .iter()
                .map(|node| node.http_base.clone())
                .collect(),
            ws_urls: chaos_nodes.iter().map(|node| node.ws_url.clone()).collect(),
            nodes: chaos_nodes.into_iter().map(Mutex::new).collect(),
            redis_links,
            pg_links,
            provider,
            redis: Mutex::new(redis),
            postgres,
        })
    }

    /// Node `node`'s link to `service`.
    pub fn link(&self, node: usize, service: Service) -> &FaultProxy {
        match service {
            Service::Redis => &self.redis_links[node],
            Service::Postgres => &self.pg_links[node],
        }
    }

    /// Heals every link, puts the provider back to normal, and starts
    /// every node that is down.
    ///
    /// # Errors
    ///
    /// When a node does not start.
    pub async fn heal_all(&self) -> Result<()> {
        for link in self.redis_links.iter().chain(&self.pg_links) {
            link.set(LinkFault::None);
        }
        self.provider.set(ProviderMode::Normal);
        for node in &self.nodes {
            let mut node = node.lock().await;
            let index = node.index;
            node.start()
                .await
                .with_context(|| format!("starting node {index} after the faults"))?;
        }
        Ok(())
    }
}

/// The settings every node gets besides the load-test ones: the webhook
/// provider for push and SMS with a short timeout, short escalation
/// delays, a short lease and drain, alert limits out of the way.
fn node_settings(webhook_url: &str) -> Vec<(String, String)> {
    [
        ("CONSULT_NOTIFY__PUSH", "webhook".to_owned()),
        ("CONSULT_NOTIFY__SMS", "webhook".to_owned()),
        ("CONSULT_NOTIFY__WEBHOOK__URL", webhook_url.to_owned()),
        (
            "CONSULT_NOTIFY__WEBHOOK__SECRET",
            format!("\"{WEBHOOK_SECRET}\""),
        ),
        (
            "CONSULT_NOTIFY__WEBHOOK__REQUEST_TIMEOUT_SECS",
            WEBHOOK_TIMEOUT_SECS.to_string(),
        ),
        (
            "CONSULT_NOTIFY__WEBHOOK__CONNECT_TIMEOUT_SECS",
            "1".to_owned(),
        ),
        ("CONSULT_NOTIFY__PUSH_AFTER_MS", "3000".to_owned()),
        ("CONSULT_NOTIFY__OFFLINE_GRACE_MS", "1500".to_owned()),
        ("CONSULT_NOTIFY__RETRY_BASE_MS", "300".to_owned()),
        ("CONSULT_NOTIFY__MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
        ("CONSULT_NOTIFY__LEASE_SECS", LEASE_SECS.to_string()),
        ("CONSULT_NOTIFY__REACH_CACHE_MS", "1000".to_owned()),
        (
            "CONSULT_NOTIFY__ALERT_PUSH_LIMIT__MAX",
            "1000000".to_owned(),
        ),
        ("CONSULT_NOTIFY__ALERT_SMS_LIMIT__MAX", "1000000".to_owned()),
        (
            "CONSULT_NOTIFY__ALERT_PUSH_LIMIT__WINDOW_SECS",
            "600".to_owned(),
        ),
        (
            "CONSULT_NOTIFY__ALERT_SMS_LIMIT__WINDOW_SECS",
            "1800".to_owned(),
        ),
        (
            "CONSULT_SHUTDOWN__DRAIN_TIMEOUT_SECS",
            DRAIN_TIMEOUT_SECS.to_string(),
        ),
        (
            "CONSULT_BROKER__PRESENCE_TTL_MS",
            PRESENCE_TTL_MS.to_string(),
        ),
        (
            "CONSULT_BROKER__PRESENCE_CACHE_MS",
            PRESENCE_CACHE_MS.to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}
