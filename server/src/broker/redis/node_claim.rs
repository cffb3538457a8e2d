//! The claim on this node's `broker.node_id` in Redis.
//!
//! Every node skips the events it published itself, recognised by its node
//! id, so two nodes started with one id would silently drop each other's
//! events. A node therefore holds the key `consult:node:<id>` (the id
//! escaped as topics are), set to a random instance id with an expiry of
//! the presence TTL and refreshed by the presence heartbeat.
//!
//! At start, [`NodeClaim::acquire`] takes the key if it is free. If it is
//! held, the holder may be this node's previous run, killed before it could
//! let go: the claim is tried again until the holder's expiry would have run
//! out (one TTL and a half); a key still held then belongs to a live node,
//! and the hub refuses to start. With Redis unreachable at start, the id
//! cannot be checked: the node starts (as it does without Redis) and the
//! first heartbeat that reaches Redis takes the key. A heartbeat that finds
//! another instance's value marks the claim lost: `/readyz` answers 503
//! (`"node_id": "duplicate"`) and the error is logged, until the key is this
//! node's again. On shutdown the key is given back.

use super::RedisConnection;
use crate::hub::topics;
use redis::AsyncCommands;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long one attempt to reach Redis at start may take.
const START_TIMEOUT: Duration = Duration::from_secs(2);

/// True unless Redis answered the command itself with an error (a missing
/// ACL right, say): Redis down, a failed TLS handshake or a wrong password
/// leave the node starting degraded, as it would without the claim.
fn unreachable(error: &redis::RedisError) -> bool {
    !matches!(error.kind(), redis::ErrorKind::Server(_))
}

/// This node's hold on its id.
#[derive(Debug)]
pub struct NodeClaim {
    key: String,
    node_id: String,
    instance: String,
    ttl: Duration,
    /// Another instance holds the key.
    lost: AtomicBool,
}

/// Why the node may not start with its id.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdInUse {
    /// Another running node holds the id.
    #[error(
        "broker.node_id {node_id:?} is held by another running node (redis key {key}); \
         give every node its own broker.node_id"
    )]
    Held {
        /// The id.
        node_id: String,
        /// Its key in Redis.
        key: String,
    },
    /// Redis answered, but refused the claim (an ACL without the node
    /// keys, a Redis older than 6.2).
    #[error("redis refused the claim on broker.node_id (see the ACL in operations.md): {0}")]
    Refused(String),
}

impl NodeClaim {
    /// Takes the key for `node_id` through `connection`, waiting out a
    /// previous run's claim (see the module documentation).
    ///
    /// # Errors
    ///
    /// [`NodeIdInUse`] when a live node holds the id.
    pub async fn acquire(
        connection: &RedisConnection,
        node_id: &str,
        ttl: Duration,
    ) -> Result<Self, NodeIdInUse> {
        let claim = Self {
            key: topics::join("consult", &["node", node_id]),
            node_id: node_id.to_owned(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            ttl,
            lost: AtomicBool::new(false),
        };
        let give_up = tokio::time::Instant::now() + ttl + ttl / 2;
        loop {
            match tokio::time::timeout(START_TIMEOUT, claim.take_if_free(connection)).await {
                Ok(Ok(true)) => return Ok(claim),
                Ok(Ok(false)) if tokio::time::Instant::now() < give_up => {
                    tracing::info!(
                        node = %claim.node_id,
                        "node id held; waiting for a previous run's claim to expire"
                    );
                    tokio::time::sleep(ttl / 4).await;
                }
                Ok(Ok(false)) => {
                    return Err(NodeIdInUse::Held {
                        node_id: claim.node_id,
                        key: claim.key,
                    });
                }
                Ok(Err(error)) if unreachable(&error) => {
                    tracing::warn!(error = %error, "redis not reachable; node id not checked yet");
                    return Ok(claim);
                }
                Ok(Err(error)) => return Err(NodeIdInUse::Refused(error.to_string())),
                Err(_) => {
                    tracing::warn!("redis not reachable; node id not checked yet");
                    return Ok(claim);
                }
            }
        }
    }

    /// `SET key instance NX PX ttl`: true when it was free.
    async fn take_if_free(&self, connection: &RedisConnection) -> redis::RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut connection.clone())
            .await?;
        Ok(set.is_some())
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Renews the claim (the presence heartbeat calls this): sets the key
    /// to this instance with a fresh expiry, and notes whether another
    /// instance had written it meanwhile.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn renew(&self, connection: &RedisConnection) -> redis::RedisResult<()> {
        let previous: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.instance)
            .arg("PX")
            .arg(self.ttl_ms())
            .arg("GET")
            .query_async(&mut connection.clone())
            .await?;
        let taken = previous.is_some_and(|holder| holder != self.instance);
        if taken {
            metrics::counter!("consult_node_id_conflicts_total").increment(1);
            tracing::error!(
                node = %self.node_id,
                "another running node uses this broker.node_id: events between the two are lost; give every node its own id"
            );
        }
        if self.lost.swap(taken, Ordering::AcqRel) && !taken {
            tracing::info!(node = %self.node_id, "node id held alone again");
        }
        Ok(())
    }

    /// True while another instance was last seen holding the id.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Gives the key back if this instance still holds it.
    pub async fn release(&self, connection: &RedisConnection) {
        let mut connection = connection.clone();
        let holder: redis::RedisResult<Option<String>> = connection.get(&self.key).await;
        if matches!(holder, Ok(Some(ref holder)) if *holder == self.instance) {
            let deleted: redis::RedisResult<u64> = connection.del(&self.key).await;
            if let Err(error) = deleted {
                tracing::debug!(error = %error, "node id not given back; it expires");
            }
        }
    }
}
