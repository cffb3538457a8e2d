//! Cross-node event transport: `publish(topic, event)` and interest in
//! topics. It moves opaque, pre-encoded frames and knows nothing of
//! consultations or sessions.
//!
//! Every node publishes every event through its broker; the broker hands each
//! event to the [`EventSink`] of every node that has subscribers for the
//! topic, this one included. The local broker hands it straight to this
//! node's sink; the Redis broker delivers locally too, then carries it
//! through Redis pub/sub to the other nodes (on a Redis Cluster, sharded
//! pub/sub).

pub mod envelope;
mod local;
mod redis;

pub use self::redis::{
    ClusterClients, NodeClaim, NodeIdInUse, REDIS_CHANNEL_PREFIX, RedisBroker, RedisConnection,
    by_slot, redis_client, redis_cluster_clients,
};
pub use local::LocalBroker;

use bytes::Bytes;
use std::sync::Arc;

/// A topic name: `room:<consultation>`, `feed:provider:<clinic>:<user>`,
/// `feed:clinic:<clinic>`. On Redis, its channel is the topic behind
/// [`REDIS_CHANNEL_PREFIX`].
pub type Topic = Arc<str>;

/// One event: a frame encoded once, for every subscriber of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Where it goes.
    pub topic: Topic,
    /// The consultation sequence number, for message events; subscribers
    /// use it to drop duplicates after a replay and to spot gaps.
    pub seq: Option<u64>,
    /// The encoded `ServerFrame` JSON text; empty for a resync marker.
    pub frame: Bytes,
}

impl Event {
    /// A marker telling a subscriber of `topic` to catch up from the
    /// database: events may have been lost.
    pub fn resync(topic: Topic) -> Self {
        Self {
            topic,
            seq: None,
            frame: Bytes::new(),
        }
    }

    /// True for a resync marker.
    pub fn is_resync(&self) -> bool {
        self.frame.is_empty()
    }
}

/// Receives events the broker delivers to this node.
pub trait EventSink: Send + Sync + 'static {
    /// Hands one event to local subscribers. Must not block.
    fn deliver(&self, event: Arc<Event>);

    /// Tells every local subscriber that events may have been lost.
    fn resync(&self);
}

/// Why the broker could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The transport is down; local delivery still happened where possible.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The Redis settings cannot be used (a bad URL, certificate or key).
    #[error("broker settings: {0}")]
    Setup(String),
}

/// Health as reported by `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerHealth {
    /// Working.
    Healthy,
    /// Serving local rooms only; cross-node events are not flowing.
    Degraded,
}

/// The broker this node uses.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In-process, one node.
    Local(LocalBroker),
    /// Redis pub/sub (or a Redis Cluster's sharded pub/sub), many nodes.
    Redis(RedisBroker),
}

impl Broker {
    /// Publishes `event` to every subscriber of its topic, cluster-wide.
    /// Local subscribers always get it; when Redis cannot take it, the other
    /// nodes catch up from the database (see the Redis broker). Never
    /// blocks on the network.
    pub fn publish(&self, event: Event) {
        match self {
            Self::Local(broker) => broker.publish(event),
            Self::Redis(broker) => broker.publish(event),
        }
    }

    /// Declares that this node has subscribers for `topic`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the transport is down.
    pub async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Redis(broker) => broker.subscribe(topic).await,
        }
    }

    /// Waits until the transport carries `topic` to this node, for a local
    /// subscriber that was not the first (the first one's `subscribe` asked
    /// for it).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the transport is down or does not
    /// confirm in time.
    pub async fn await_subscribed(&self, topic: &Topic) -> Result<(), BrokerError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Redis(broker) => broker.await_subscribed(topic).await,
        }
    }

    /// Declares that this node has no more subscribers for `topic`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the transport is down.
    pub async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Redis(broker) => {
                broker.unsubscribe(topic);
                Ok(())
            }
        }
    }

    /// Current health.
    pub fn health(&self) -> BrokerHealth {
        match self {
            Self::Local(_) => BrokerHealth::Healthy,
            Self::Redis(broker) => broker.health(),
        }
    }
}
