//! Which nodes are alive, as cluster presence needs it: one sorted set
//! `consult:nodes` whose members are the running nodes' *runs*
//! (`run:<node id>:<random>`, new at every start, so the entries of an
//! earlier run of the same node id are never mistaken for this one's), each
//! scored by when it expires (milliseconds since the epoch). A node's
//! heartbeat pushes its own expiry forward, drops expired members, and reads
//! the live ones back, in one round trip whatever the number of connected
//! users. A dead node is forgotten once its score passes; a node that
//! finds itself missing (Redis restarted and lost its data, or the node was
//! cut off longer than its TTL) knows it must write its users' entries
//! again.

use crate::broker::RedisConnection;
use crate::hub::topics;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The sorted set of live runs.
fn set_key() -> String {
    topics::join("consult", &["nodes"])
}

/// Milliseconds since the epoch, by this machine's clock.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This node's run and the live runs it last read.
#[derive(Debug, Clone)]
pub(super) struct LiveNodes {
    this_run: Arc<str>,
    live: Arc<RwLock<HashSet<String>>>,
}

/// What one heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Beat {
    /// This run was in the set already.
    Present,
    /// This run was missing and is back: its users' entries may be gone.
    Rejoined,
}

impl LiveNodes {
    /// A new run of `node_id`.
    pub(super) fn new(node_id: &str) -> Self {
        let run = format!("{:016x}", rand::random::<u64>());
        Self {
            this_run: topics::join("run", &[node_id, &run]).into(),
            live: Arc::default(),
        }
    }

    /// This run's name: the field it owns in every user's entry.
    pub(super) fn this_run(&self) -> &str {
        &self.this_run
    }

    /// True when `run` was alive at the last heartbeat (this run always is).
    pub(super) fn is_live(&self, run: &str) -> bool {
        run == &*self.this_run
            || self
                .live
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(run)
    }

    /// Pushes this run's expiry to `ttl` from now, forgets expired runs and
    /// reads the live ones.
    ///
    /// # Errors
    ///
    /// A failed Redis call; the last live set read is kept.
    pub(super) async fn beat(
        &self,
        connection: &RedisConnection,
        ttl: Duration,
    ) -> redis::RedisResult<Beat> {
        let now = now_ms();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let key = set_key();
        let (added, live): (u64, Vec<String>) = redis::pipe()
            .zadd(&key, &*self.this_run, expires)
            .zrembyscore(&key, "-inf", now)
            .ignore()
            .zrangebyscore(&key, now, "+inf")
            .query_async(&mut connection.clone())
            .await?;
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = live.into_iter().collect();
        Ok(if added == 1 {
            Beat::Rejoined
        } else {
            Beat::Present
        })
    }

    /// Which of `runs`, unknown at the last heartbeat, are alive now (a node
    /// that started since); they are added to the live set.
    ///
    /// # Errors
    ///
    /// A failed Redis call.
    pub(super) async fn still_live(
        &self,
        connection: &RedisConnection,
        runs: &[&str],
    ) -> redis::RedisResult<Vec<String>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(set_key())
            .arg(runs)
            .query_async(&mut connection.clone())
            .await?;
        let now = now_ms() as f64;
        let started: Vec<String> = runs
            .iter()
            .zip(scores)
            .filter(|(_, score)| score.is_some_and(|expires| expires > now))
            .map(|(run, _)| (*run).to_owned())
            .collect();
        if !started.is_empty() {
            let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
            live.extend(started.iter().cloned());
        }
        Ok(started)
    }

    /// Removes this run at shutdown, so that its users read offline at once.
    pub(super) async fn leave(&self, connection: &RedisConnection) {
        let result: redis::RedisResult<()> = redis::cmd("ZREM")
            .arg(set_key())
            .arg(&*self.this_run)
            .query_async(&mut connection.clone())
            .await;
        if let Err(error) = result {
            tracing::debug!(error = %error, "run not removed from the live nodes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_of_a_node_has_its_own_name_and_is_live_to_itself() {
        let first = LiveNodes::new("node:a");
        let second = LiveNodes::new("node:a");
        assert_ne!(first.this_run(), second.this_run());
        assert!(first.this_run().starts_with("run:node%3Aa:"));
        assert!(first.is_live(first.this_run()));
        assert!(!first.is_live(second.this_run()));
    }
}
