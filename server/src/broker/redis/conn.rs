//! The command connection every Redis user of the hub shares a type of
//! (the broker's publisher, cluster presence, the node id claim, the live
//! node set): one multiplexed connection to a single Redis, or a cluster
//! connection that routes each command to the primary owning its key's
//! slot. Both reconnect by themselves.
//!
//! On a cluster a pipeline must stay within one slot: [`by_slot`] splits a
//! list of writes into one group per slot (and keeps a single group on a
//! single Redis, where one pipeline is one round trip).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::collections::HashMap;
use std::time::Duration;

/// A command connection to a single Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum RedisConnection {
    /// One Redis server, through a reconnecting connection manager.
    Single(ConnectionManager),
    /// A Redis Cluster: each command goes to the primary owning its slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// A lazily connecting connection manager on `client`: 2 s to connect
    /// and to answer, `retries` reconnect attempts per command.
    ///
    /// # Errors
    ///
    /// When the connection manager cannot be made.
    pub fn single(client: redis::Client, retries: usize) -> redis::RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(retries);
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// True on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// `items` in groups that one pipeline each can carry: a single group on a
/// single Redis; one group per slot of `key(item)` on a cluster. Items keep
/// their order within a group.
pub fn by_slot<T>(cluster: bool, items: Vec<T>, key: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    if !cluster {
        return if items.is_empty() {
            Vec::new()
        } else {
            vec![items]
        };
    }
    let mut order: Vec<Slot> = Vec::new();
    let mut groups: HashMap<Slot, Vec<T>> = HashMap::new();
    for item in items {
        let slot = Slot::for_key(key(&item));
        groups
            .entry(slot)
            .or_insert_with(|| {
                order.push(slot);
                Vec::new()
            })
            .push(item);
    }
    order
        .into_iter()
        .filter_map(|slot| groups.remove(&slot))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_redis_takes_one_pipeline_a_cluster_one_per_slot() {
        let keys = vec!["a", "b", "{a}x", "a"];
        assert_eq!(by_slot(false, keys.clone(), |k| k.as_bytes()).len(), 1);
        let groups = by_slot(true, keys, |k| k.as_bytes());
        assert_eq!(groups, vec![vec!["a", "{a}x", "a"], vec!["b"]]);
        assert!(by_slot(false, Vec::<&str>::new(), |k| k.as_bytes()).is_empty());
    }
}
