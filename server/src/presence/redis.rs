//! Cluster presence in Redis: each node keeps its own counts (as the local
//! registry does) and publishes them per user as a hash field
//! `presence:<clinic>:<user>` → `<node>` = `<connections>,<foreground>,<expires ms>`.
//! Every heartbeat refreshes the fields of every user connected here and the
//! keys' TTL; a dead node's fields expire within the TTL, so "is this patient
//! connected anywhere?" is answered correctly within seconds of a node's
//! death. A change is written at once as well.
//!
//! The other nodes' part of an answer is kept for `remote_cache` (the
//! `broker.presence_cache_ms` setting): every staff message to a patient
//! who is not in the foreground here asks presence, and a patient messaged
//! twenty times a second should not cost twenty Redis round trips on the
//! send path. This node's own connections are always read live; another
//! node's change is seen at most `remote_cache` late (the outbox worker's
//! check before it sends goes through the same cache).
//!
//! After a failed Redis call, presence answers from this node's view alone
//! for [`FAILURE_BACKOFF`] instead of asking Redis again: while Redis is
//! down (or unreachable, which costs a whole connect timeout) every staff
//! message asks presence, and must not wait on Redis each time. The
//! heartbeat keeps trying, and rewrites this node's entries once Redis is
//! back.

use super::{LocalPresence, PresenceStatus};
use crate::broker::{NodeClaim, NodeIdInUse};
use crate::domain::PersonKey;
use crate::hub::topics;
use crate::supervisor::{Worker, Workers};
use dashmap::DashMap;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long presence stops asking Redis after a failed call.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);

/// Cluster-wide presence over Redis.
#[derive(Clone)]
pub struct RedisPresence {
    local: LocalPresence,
    connection: ConnectionManager,
    node_id: Arc<str>,
    ttl: Duration,
    /// Until when Redis is left alone after a failure.
    backoff_until: Arc<Mutex<Option<Instant>>>,
    /// Other nodes' view of a user, as last read, and when.
    remote: Arc<DashMap<PersonKey, (PresenceStatus, Instant)>>,
    /// How long an entry of `remote` is used (zero: never).
    remote_cache: Duration,
    /// This node's hold on its id, renewed by the heartbeat once taken.
    node_claim: Arc<std::sync::OnceLock<NodeClaim>>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("node_id", &self.node_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// `presence:<clinic>:<user>`, each part escaped ([`topics::escape`]).
fn key(person: &PersonKey) -> String {
    topics::join("presence", &[person.clinic.as_str(), person.user.as_str()])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RedisPresence {
    /// Connects lazily through `client` (made by
    /// [`crate::broker::redis_client`], so it shares the broker's TLS and
    /// ACL settings) and starts the heartbeat, which refreshes
    /// this node's entries every `ttl / 3`. Other nodes' entries read for a
    /// user are used for `remote_cache` before Redis is asked again.
    ///
    /// # Errors
    ///
    /// When the connection manager cannot be made.
    pub fn start(
        client: redis::Client,
        node_id: &str,
        ttl: Duration,
        remote_cache: Duration,
        stop: CancellationToken,
        workers: &Arc<Workers>,
    ) -> redis::RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let presence = Self {
            local: LocalPresence::new(),
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            node_id: node_id.into(),
            ttl,
            backoff_until: Arc::new(Mutex::new(None)),
            remote: Arc::new(DashMap::new()),
            remote_cache,
            node_claim: Arc::default(),
        };
        let heartbeat = presence.clone();
        workers.spawn(Worker::Presence, move || {
            heartbeat.clone().heartbeat(stop.clone())
        });
        Ok(presence)
    }

    /// True while Redis failed recently.
    fn backing_off(&self) -> bool {
        let until = *self
            .backoff_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// Records the outcome of a Redis call.
    fn record<T>(&self, result: &redis::RedisResult<T>) {
        let mut until = self
            .backoff_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *until = result.is_err().then(|| Instant::now() + FAILURE_BACKOFF);
    }

    /// Takes this node's id in Redis (see [`NodeClaim`]); the heartbeat
    /// renews it from then on.
    ///
    /// # Errors
    ///
    /// [`NodeIdInUse`] when a live node holds the id.
    pub async fn claim_node_id(&self) -> Result<(), NodeIdInUse> {
        let claim = NodeClaim::acquire(&self.connection, &self.node_id, self.ttl).await?;
        // Set once, by the one caller at start.
        let _already = self.node_claim.set(claim);
        Ok(())
    }

    /// True while another running node was last seen using this node's id.
    pub fn node_id_in_use_elsewhere(&self) -> bool {
        self.node_claim.get().is_some_and(NodeClaim::is_lost)
    }

    /// Gives this node's id back (at shutdown).
    pub async fn release_node_id(&self) {
        if let Some(claim) = self.node_claim.get() {
            claim.release(&self.connection).await;
        }
    }

    async fn heartbeat(self, stop: CancellationToken) {
        let every = (self.ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            if let Some(claim) = self.node_claim.get() {
                if let Err(error) = claim.renew(&self.connection).await {
                    tracing::debug!(error = %error, "node id not renewed");
                }
            }
            self.remote
                .retain(|_, (_, read_at)| read_at.elapsed() < self.remote_cache);
            let users = self.local.users();
            if users.is_empty() {
                continue;
            }
            let mut pipeline = redis::pipe();
            for (user, status) in &users {
                self.add_refresh(&mut pipeline, user, *status);
            }
            let result = pipeline
                .query_async::<()>(&mut self.connection.clone())
                .await;
            self.record(&result);
            if let Err(error) = result {
                tracing::warn!(error = %error, "presence heartbeat failed");
            }
        }
    }

    fn add_refresh(
        &self,
        pipeline: &mut redis::Pipeline,
        user: &PersonKey,
        counts: (usize, usize),
    ) {
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let value = format!(
            "{},{},{}",
            counts.0,
            counts.1,
            now_ms().saturating_add(ttl_ms)
        );
        pipeline
            .hset(key(user), &*self.node_id, value)
            .ignore()
            .pexpire(key(user), i64::try_from(ttl_ms).unwrap_or(i64::MAX))
            .ignore();
    }

    /// Writes `user`'s entry for this node now; while backing off, the
    /// heartbeat writes it later (a removal then waits for the entry to
    /// expire).
    async fn publish(&self, user: &PersonKey) {
        if self.backing_off() {
            return;
        }
        let counts = self.local.counts(user);
        let mut pipeline = redis::pipe();
        if counts.0 == 0 {
            pipeline.hdel(key(user), &*self.node_id).ignore();
        } else {
            self.add_refresh(&mut pipeline, user, counts);
        }
        let result = pipeline
            .query_async::<()>(&mut self.connection.clone())
            .await;
        self.record(&result);
        if let Err(error) = result {
            tracing::warn!(error = %error, "presence update failed; the heartbeat will retry");
        }
    }

    pub(super) async fn connected(&self, user: &PersonKey, foreground: bool) {
        self.local.connected(user, foreground);
        self.publish(user).await;
    }

    pub(super) async fn disconnected(&self, user: &PersonKey, foreground: bool) {
        self.local.disconnected(user, foreground);
        self.publish(user).await;
    }

    pub(super) async fn set_foreground(&self, user: &PersonKey, foreground: bool) {
        self.local.set_foreground(user, foreground);
        self.publish(user).await;
    }

    /// This node's view first; then every other live node's entry in Redis
    /// (or as read within `remote_cache`). If Redis cannot be asked (or
    /// failed recently), only this node's view counts.
    pub(super) async fn status(&self, user: &PersonKey) -> PresenceStatus {
        let local = self.local.status(user);
        if (local.online && local.foreground) || self.backing_off() {
            return local;
        }
        if let Some(remote) = self.cached_remote(user) {
            return local.or(remote);
        }
        let result = self.connection.clone().hgetall(key(user)).await;
        self.record(&result);
        let entries: std::collections::HashMap<String, String> = match result {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(error = %error, "presence lookup failed; using this node's view");
                return local;
            }
        };
        let now = now_ms();
        let remote = entries
            .iter()
            .filter(|(node, _)| node.as_str() != &*self.node_id)
            .filter_map(|(_, value)| parse(value))
            .filter(|entry| entry.2 > now)
            .fold(
                PresenceStatus::default(),
                |status, (connections, foreground, _)| {
                    status.or(PresenceStatus {
                        online: connections > 0,
                        foreground: foreground > 0,
                    })
                },
            );
        if !self.remote_cache.is_zero() {
            self.remote.insert(user.clone(), (remote, Instant::now()));
        }
        local.or(remote)
    }

    /// Other nodes' view of `user`, if read recently enough.
    fn cached_remote(&self, user: &PersonKey) -> Option<PresenceStatus> {
        self.remote
            .get(user)
            .filter(|entry| entry.1.elapsed() < self.remote_cache)
            .map(|entry| entry.0)
    }
}

fn parse(value: &str) -> Option<(u64, u64, u64)> {
    let mut parts = value.split(',').map(|part| part.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn after_a_failed_call_presence_answers_locally_without_waiting_on_redis() {
        // Nothing listens on port 1: every Redis call fails, after the
        // connection manager's reconnect attempt.
        let stop = CancellationToken::new();
        let presence = RedisPresence::start(
            redis::Client::open("redis://127.0.0.1:1/").unwrap(),
            "node-a",
            Duration::from_secs(3),
            Duration::from_millis(500),
            stop.clone(),
            &Workers::new(),
        )
        .unwrap();
        let user = PersonKey::new(&"riverside".into(), &"pat".into());
        presence.connected(&user, false).await;
        let started = Instant::now();
        for _ in 0..20 {
            assert!(presence.status(&user).await.online, "this node's view");
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "lookups waited on Redis: {:?}",
            started.elapsed()
        );
        stop.cancel();
    }

    #[test]
    fn entries_parse_or_are_ignored() {
        assert_eq!(parse("2,1,99"), Some((2, 1, 99)));
        assert_eq!(parse("x,1,99"), None);
        assert_eq!(parse("2,1"), None);
    }
}
