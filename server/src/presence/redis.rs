//! Cluster presence in Redis, written on change only: each node keeps its
//! own counts (as the local registry does) and writes a user's entry when
//! they change (a connection opens or closes, an app moves to the
//! foreground or back): a hash `presence:<clinic>:<user>` whose field per
//! node run (see [`LiveNodes`]) holds `<connections>,<foreground>`. A
//! heartbeat keeps this run in the set of live nodes, one command whatever
//! the number of users, so Redis work follows churn, not population. A
//! reader counts only the fields of live runs; a dead node's fields are
//! ignored once its run expires from the set (within the TTL and one
//! heartbeat), and pruned by the next reader that meets them. A run that
//! finds itself missing from the live set (Redis lost its data, or this
//! node was cut off past its TTL) writes every entry of its users again.
//! A user's hash expires after [`ENTRY_TTL`] without a write, so entries
//! nobody reads again do not pile up.
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
//! message asks presence, and must not wait on Redis each time. A user
//! whose change was not written meanwhile (skipped while backing off, or
//! failed) is kept in a set of pending users, and the heartbeat writes
//! their entries as they are now once Redis answers: the field of a user
//! who left meanwhile is deleted, not left reading online. So is a user
//! whose connections changed while their entry was being written (two
//! writes of one user may reach Redis in either order).

use super::live_nodes::{Beat, LiveNodes};
use super::{LocalPresence, PresenceStatus};
use crate::broker::{NodeClaim, NodeIdInUse, RedisConnection, by_slot};
use crate::domain::PersonKey;
use crate::hub::topics;
use crate::supervisor::{Worker, Workers};
use dashmap::DashMap;
use redis::AsyncCommands;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long presence stops asking Redis after a failed call.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// How long a user's entry lives in Redis after its last write: a day, so
/// that the fields of users who never come back expire.
const ENTRY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Cluster-wide presence over Redis.
#[derive(Clone)]
pub struct RedisPresence {
    local: LocalPresence,
    connection: RedisConnection,
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
    /// This run and the live ones.
    live: LiveNodes,
    /// This run was missing from the live set: the heartbeat writes every
    /// entry.
    rewrite_all: Arc<AtomicBool>,
    /// Users whose entry may not match this node's counts (a write skipped
    /// or failed, or raced by a later change): the heartbeat writes them.
    pending: Arc<Mutex<HashSet<PersonKey>>>,
}

/// Counts written for a user: `(connections, foreground)`.
type Entry = (PersonKey, (usize, usize));

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("node_id", &self.node_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// `presence:{<clinic>:<user>}`, each part escaped
/// ([`topics::hash_tagged`]): the braces make the person the key's hash tag,
/// so that on a Redis Cluster everything kept about one person lives in
/// one slot, and no id can end the tag early.
fn key(person: &PersonKey) -> String {
    topics::hash_tagged("presence", &[person.clinic.as_str(), person.user.as_str()])
}

impl RedisPresence {
    /// Works through `connection` (made from the same settings as the
    /// broker's, so it shares its TLS and ACL settings; a single Redis or a
    /// cluster) and starts the heartbeat, which keeps this run live
    /// (expiring `ttl` after its last beat) every `ttl / 6`. Other nodes'
    /// entries read for a user are used for `remote_cache` before Redis is
    /// asked again.
    pub fn start(
        connection: RedisConnection,
        node_id: &str,
        ttl: Duration,
        remote_cache: Duration,
        stop: CancellationToken,
        workers: &Arc<Workers>,
    ) -> Self {
        let presence = Self {
            local: LocalPresence::new(),
            connection,
            node_id: node_id.into(),
            ttl,
            backoff_until: Arc::new(Mutex::new(None)),
            remote: Arc::new(DashMap::new()),
            remote_cache,
            node_claim: Arc::default(),
            live: LiveNodes::new(node_id),
            rewrite_all: Arc::new(AtomicBool::new(false)),
            pending: Arc::default(),
        };
        let heartbeat = presence.clone();
        workers.spawn(Worker::Presence, move || {
            heartbeat.clone().heartbeat(stop.clone())
        });
        presence
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

    /// Gives this node's id back and leaves the live set (at shutdown): the
    /// users still counted here read offline on the other nodes at once.
    pub async fn release_node_id(&self) {
        self.live.leave(&self.connection).await;
        if let Some(claim) = self.node_claim.get() {
            claim.release(&self.connection).await;
        }
    }

    async fn heartbeat(self, stop: CancellationToken) {
        let every = (self.ttl / 6).max(Duration::from_millis(50));
        for beat in 0_u64.. {
            // The id claim lives as long as presence entries used to:
            // renewed every third of the TTL, every other beat.
            if beat % 2 == 0 {
                if let Some(claim) = self.node_claim.get() {
                    if let Err(error) = claim.renew(&self.connection).await {
                        tracing::debug!(error = %error, "node id not renewed");
                    }
                }
            }
            self.beat().await;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            self.remote
                .retain(|_, (_, read_at)| read_at.elapsed() < self.remote_cache);
        }
    }

    /// Keeps this run live; writes every entry again when it was missing,
    /// and the entries of pending users.
    async fn beat(&self) {
        let result = self.live.beat(&self.connection, self.ttl).await;
        self.record(&result);
        match result {
            Ok(Beat::Rejoined) => self.rewrite_all.store(true, Ordering::Relaxed),
            Ok(Beat::Present) => {}
            Err(error) => {
                // A run that expired meanwhile finds itself missing at the
                // next beat that succeeds, and writes everything then.
                tracing::warn!(error = %error, "presence heartbeat failed");
                return;
            }
        }
        self.write_pending().await;
    }

    /// Writes the entries the last writes left behind: every user's after
    /// this run rejoined, else the pending users' (as they are now).
    async fn write_pending(&self) {
        let all = self.rewrite_all.swap(false, Ordering::Relaxed);
        let pending = std::mem::take(&mut *self.pending_users());
        let mut entries = if all { self.local.users() } else { Vec::new() };
        let listed: HashSet<PersonKey> = entries.iter().map(|(user, _)| user.clone()).collect();
        entries.extend(
            pending
                .into_iter()
                .filter(|user| !listed.contains(user))
                .map(|user| {
                    let counts = self.local.counts(&user);
                    (user, counts)
                }),
        );
        if entries.is_empty() {
            return;
        }
        match self.write(&entries).await {
            Ok(()) => tracing::info!(users = entries.len(), "presence entries written again"),
            Err(error) => {
                tracing::warn!(error = %error, "presence entries not written; retrying at the next beat");
                if all {
                    self.rewrite_all.store(true, Ordering::Relaxed);
                }
                self.mark_pending(entries.into_iter().map(|(user, _)| user));
            }
        }
    }

    /// Writes `entries` in one round trip; afterwards marks pending every
    /// user whose counts changed meanwhile (their own write may have
    /// reached Redis first and been overwritten by this one).
    async fn write(&self, entries: &[Entry]) -> redis::RedisResult<()> {
        // One pipeline on a single Redis; on a cluster one per slot (a
        // pipeline may not cross slots), sent concurrently.
        let keyed: Vec<(String, &Entry)> =
            entries.iter().map(|entry| (key(&entry.0), entry)).collect();
        let groups = by_slot(self.connection.is_cluster(), keyed, |(key, _)| {
            key.as_bytes()
        });
        let writes = groups.into_iter().map(|group| {
            let mut pipeline = redis::pipe();
            for (key, (_, counts)) in &group {
                self.add_write(&mut pipeline, key, *counts);
            }
            let mut connection = self.connection.clone();
            async move { pipeline.query_async::<()>(&mut connection).await }
        });
        let result = futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect::<redis::RedisResult<Vec<()>>>()
            .map(|_| ());
        self.record(&result);
        if result.is_ok() {
            self.mark_pending(
                entries
                    .iter()
                    .filter(|(user, counts)| self.local.counts(user) != *counts)
                    .map(|(user, _)| user.clone()),
            );
        }
        result
    }

    fn pending_users(&self) -> std::sync::MutexGuard<'_, HashSet<PersonKey>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_pending(&self, users: impl IntoIterator<Item = PersonKey>) {
        let mut users = users.into_iter().peekable();
        if users.peek().is_some() {
            self.pending_users().extend(users);
        }
    }

    /// Adds the write of this run's field of the entry at `key` (a user's).
    fn add_write(&self, pipeline: &mut redis::Pipeline, key: &str, counts: (usize, usize)) {
        if counts.0 == 0 {
            pipeline.hdel(key, self.live.this_run()).ignore();
            return;
        }
        let value = format!("{},{}", counts.0, counts.1);
        let ttl_ms = i64::try_from(ENTRY_TTL.as_millis()).unwrap_or(i64::MAX);
        pipeline
            .hset(key, self.live.this_run(), value)
            .ignore()
            .pexpire(key, ttl_ms)
            .ignore();
    }

    /// Writes `user`'s entry for this run now; while backing off, or when
    /// the write fails, leaves `user` pending for the heartbeat.
    async fn publish(&self, user: &PersonKey) {
        if self.backing_off() {
            self.mark_pending([user.clone()]);
            return;
        }
        let entry = (user.clone(), self.local.counts(user));
        if let Err(error) = self.write(std::slice::from_ref(&entry)).await {
            self.mark_pending([entry.0]);
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
        let others: Vec<(&String, &String)> = entries
            .iter()
            .filter(|(run, _)| run.as_str() != self.live.this_run())
            .collect();
        let unknown: Vec<&str> = others
            .iter()
            .map(|(run, _)| run.as_str())
            .filter(|run| !self.live.is_live(run))
            .collect();
        // A run the last beat did not see may have started since: ask.
        let started = match self.live.still_live(&self.connection, &unknown).await {
            Ok(started) => started,
            Err(error) => {
                self.record::<()>(&Err(error));
                Vec::new()
            }
        };
        let (live, dead): (Vec<_>, Vec<_>) = others
            .into_iter()
            .partition(|(run, _)| self.live.is_live(run) || started.contains(run));
        let remote = live.iter().filter_map(|(_, value)| parse(value)).fold(
            PresenceStatus::default(),
            |status, (connections, foreground)| {
                status.or(PresenceStatus {
                    online: connections > 0,
                    foreground: foreground > 0,
                })
            },
        );
        if !dead.is_empty() {
            self.prune(user, dead.into_iter().map(|(run, _)| run.clone()).collect());
        }
        if !self.remote_cache.is_zero() {
            self.remote.insert(user.clone(), (remote, Instant::now()));
        }
        local.or(remote)
    }

    /// Removes the fields of dead runs from `user`'s entry, in the
    /// background (a reader does not wait for it).
    fn prune(&self, user: &PersonKey, dead: Vec<String>) {
        let mut connection = self.connection.clone();
        let key = key(user);
        tokio::spawn(async move {
            let result: redis::RedisResult<()> = connection.hdel(key, dead).await;
            if let Err(error) = result {
                tracing::debug!(error = %error, "dead presence fields not pruned");
            }
        });
    }

    /// Other nodes' view of `user`, if read recently enough.
    fn cached_remote(&self, user: &PersonKey) -> Option<PresenceStatus> {
        self.remote
            .get(user)
            .filter(|entry| entry.1.elapsed() < self.remote_cache)
            .map(|entry| entry.0)
    }
}

/// `<connections>,<foreground>`.
fn parse(value: &str) -> Option<(u64, u64)> {
    let mut parts = value.split(',').map(|part| part.parse::<u64>().ok());
    let parsed = (parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
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
            RedisConnection::single(redis::Client::open("redis://127.0.0.1:1/").unwrap(), 1)
                .unwrap(),
            "node-a",
            Duration::from_secs(3),
            Duration::from_millis(500),
            stop.clone(),
            &Workers::new(),
        );
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
        assert_eq!(parse("2,1"), Some((2, 1)));
        assert_eq!(parse("x,1"), None);
        assert_eq!(parse("2"), None);
        assert_eq!(parse("2,1,99"), None);
    }
}
