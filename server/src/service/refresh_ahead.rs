//! A cache whose entries are read again in the background before they
//! expire, so that a caller who finds an entry never waits for its refresh.
//!
//! An entry is used for `ttl` after it was read; past that, the caller reads
//! it inline, as with a plain cache. From a point between half and three
//! quarters of `ttl`, drawn per entry so that entries filled together (many
//! patients arriving at once, a node restarting) are not read again
//! together, the first caller to find the entry starts one read in the
//! background and every caller goes on with the cached value. A key asked
//! for at least once every quarter `ttl` is read on a caller's path only
//! the first time; no value is used more than `ttl` after it was read.
//!
//! Callers who miss the same key together wait for one read: the first
//! reads, the others find its value when it lands (a clinic's policy is
//! asked by every room of the clinic at once when the node starts).
//!
//! Entries past their life are swept now and then (see
//! [`SWEEP_AFTER`]), so the map holds about the keys asked for lately, not
//! every key ever asked for.
//!
//! Forgetting a key (its owner changed it on this node) drops its entry; a
//! background read in flight for it is dropped when it lands, so a change
//! is never overwritten by what was read before it.

use dashmap::DashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// One cached value and when it was read.
#[derive(Debug)]
struct Entry<V> {
    value: V,
    read_at: Instant,
    /// When the first caller to find it reads it again in the background.
    refresh_at: Instant,
    refreshing: bool,
    /// Tells a landing background read whether its entry is still there.
    generation: u64,
}

#[derive(Debug)]
struct Inner<K: Eq + Hash, V> {
    entries: DashMap<K, Entry<V>>,
    /// One gate per key being read inline: its callers take turns, and
    /// the ones after the first find the value cached.
    reading: DashMap<K, Arc<Mutex<()>>>,
    generations: AtomicU64,
    /// Entries added since expired ones were last dropped.
    added: AtomicUsize,
}

/// A map of values read through a caller's function, refreshed ahead of
/// their expiry.
#[derive(Debug)]
pub struct RefreshAhead<K: Eq + Hash, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K: Eq + Hash, V> Default for RefreshAhead<K, V> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: DashMap::new(),
                reading: DashMap::new(),
                generations: AtomicU64::new(0),
                added: AtomicUsize::new(0),
            }),
        }
    }
}

impl<K, V> RefreshAhead<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The value of `key`: the cached one if read less than `ttl` ago
    /// (starting a background `read` if it is due for one), else what
    /// `read` gives now, cached.
    ///
    /// # Errors
    ///
    /// What `read` fails with, when it is read inline.
    pub async fn get<E, Read>(
        &self,
        key: &K,
        ttl: Duration,
        read: impl FnOnce() -> Read,
    ) -> Result<V, E>
    where
        E: Display + Send + 'static,
        Read: Future<Output = Result<V, E>> + Send + 'static,
    {
        let mut due = None;
        if let Some(value) = self.cached(key, ttl, &mut due) {
            if let Some(generation) = due {
                self.refresh(key.clone(), generation, ttl, read());
            }
            return Ok(value);
        }
        let gate = Arc::clone(&self.inner.reading.entry(key.clone()).or_default());
        let turn = gate.lock().await;
        // A caller ahead in line may have read it meanwhile.
        let result = match self.cached(key, ttl, &mut None) {
            Some(value) => Ok(value),
            None => read().await.inspect(|value| {
                self.inner
                    .entries
                    .insert(key.clone(), self.inner.entry(value.clone(), ttl));
                self.inner.prune_now_and_then(ttl);
            }),
        };
        drop(turn);
        // The last caller through the gate removes it.
        self.inner.reading.remove_if(key, |_, held| {
            Arc::ptr_eq(held, &gate) && Arc::strong_count(held) <= 2
        });
        result
    }

    /// `key`'s value if read less than `ttl` ago; sets `due` to its
    /// generation when this caller is to start its background read.
    fn cached(&self, key: &K, ttl: Duration, due: &mut Option<u64>) -> Option<V> {
        let now = Instant::now();
        self.inner.entries.get_mut(key).and_then(|mut entry| {
            if now.duration_since(entry.read_at) >= ttl {
                return None;
            }
            if now >= entry.refresh_at && !entry.refreshing {
                entry.refreshing = true;
                *due = Some(entry.generation);
            }
            Some(entry.value.clone())
        })
    }

    /// True when `key` was read less than `ttl` ago.
    pub fn is_fresh(&self, key: &K, ttl: Duration) -> bool {
        self.inner
            .entries
            .get(key)
            .is_some_and(|entry| entry.read_at.elapsed() < ttl)
    }

    /// Drops `key`'s entry, and any background read of it in flight.
    pub fn forget(&self, key: &K) {
        self.inner.entries.remove(key);
    }

    /// Drops every entry, and every background read in flight.
    pub fn forget_all(&self) {
        self.inner.entries.clear();
    }

    /// Reads `key` in the background and stores the value, unless its entry
    /// was forgotten or replaced meanwhile. After a failure the entry stays
    /// in use until its `ttl`, and the next caller tries again.
    fn refresh<E, Read>(&self, key: K, generation: u64, ttl: Duration, read: Read)
    where
        E: Display + Send + 'static,
        Read: Future<Output = Result<V, E>> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let result = read.await;
            let Some(mut entry) = inner.entries.get_mut(&key) else {
                return;
            };
            if entry.generation != generation {
                return;
            }
            match result {
                Ok(value) => *entry = inner.entry(value, ttl),
                Err(error) => {
                    entry.refreshing = false;
                    tracing::debug!(error = %error, "background refresh failed");
                }
            }
        });
    }
}

/// Entries added between two sweeps of expired ones, at least; otherwise
/// as many as the map holds, so a sweep costs a constant share of each
/// read inline however large the map.
const SWEEP_AFTER: usize = 1024;

impl<K: Eq + Hash, V> Inner<K, V> {
    /// Drops the entries older than `ttl` once as many entries were added
    /// as the map holds (and at least [`SWEEP_AFTER`]): a key nobody asks
    /// for again (a patient whose consultations ended) does not stay in
    /// memory, and the map stays within about twice its live entries.
    fn prune_now_and_then(&self, ttl: Duration) {
        let added = self.added.fetch_add(1, Ordering::Relaxed) + 1;
        if added < SWEEP_AFTER.max(self.entries.len()) {
            return;
        }
        self.added.store(0, Ordering::Relaxed);
        let now = Instant::now();
        self.entries
            .retain(|_, entry| now.duration_since(entry.read_at) < ttl);
    }

    /// A fresh entry for `value`, read now, due for a refresh at a point
    /// drawn between half and three quarters of `ttl`.
    fn entry(&self, value: V, ttl: Duration) -> Entry<V> {
        let read_at = Instant::now();
        let share = 0.5 + 0.25 * rand::random::<f64>();
        Entry {
            value,
            read_at,
            refresh_at: read_at + ttl.mul_f64(share),
            refreshing: false,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const TTL: Duration = Duration::from_secs(4);

    /// A cache and a counter of its reads; each read returns the count so
    /// far, after `delay`.
    struct Fixture {
        cache: RefreshAhead<&'static str, usize>,
        reads: Arc<AtomicUsize>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                cache: RefreshAhead::default(),
                reads: Arc::new(AtomicUsize::new(0)),
            }
        }

        async fn get(&self, delay: Duration) -> usize {
            let reads = Arc::clone(&self.reads);
            self.cache
                .get(&"pat-a", TTL, move || {
                    // The read takes `delay` from when it starts.
                    let done = Instant::now() + delay;
                    async move {
                        tokio::time::sleep_until(done).await;
                        Ok::<_, String>(reads.fetch_add(1, Ordering::SeqCst) + 1)
                    }
                })
                .await
                .unwrap()
        }
    }

    /// Lets spawned reads run to their end.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_past_the_refresh_point_gets_the_cached_value_and_one_read_starts() {
        let f = Fixture::new();
        assert_eq!(f.get(Duration::ZERO).await, 1);
        tokio::time::advance(TTL.mul_f64(0.8)).await;
        // The background read takes a second; meanwhile every caller is
        // answered from the cache and no second read starts.
        assert_eq!(f.get(Duration::from_secs(1)).await, 1);
        assert_eq!(f.get(Duration::from_secs(1)).await, 1);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(f.get(Duration::from_secs(1)).await, 1);
        tokio::time::advance(Duration::from_millis(600)).await;
        settle().await;
        // Landed: the caller waits for no read (one would take a second).
        let started = Instant::now();
        assert_eq!(
            f.get(Duration::from_secs(1)).await,
            2,
            "the refreshed value"
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(f.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_is_not_refreshed_before_half_its_ttl_nor_used_past_it() {
        let f = Fixture::new();
        assert_eq!(f.get(Duration::ZERO).await, 1);
        tokio::time::advance(TTL.mul_f64(0.49)).await;
        assert_eq!(f.get(Duration::ZERO).await, 1);
        settle().await;
        assert_eq!(f.reads.load(Ordering::SeqCst), 1, "nothing read yet");
        // Nobody asked during the refresh window: past the ttl the caller
        // reads inline and waits for it.
        tokio::time::advance(TTL).await;
        let started = Instant::now();
        assert_eq!(f.get(Duration::from_secs(1)).await, 2);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_forgotten_while_its_refresh_is_in_flight_is_read_again_inline() {
        let f = Fixture::new();
        assert_eq!(f.get(Duration::ZERO).await, 1);
        tokio::time::advance(TTL.mul_f64(0.8)).await;
        assert_eq!(f.get(Duration::from_secs(1)).await, 1);
        // The owner changes it on this node while the read is in flight.
        f.cache.forget(&"pat-a");
        assert_eq!(f.get(Duration::ZERO).await, 2, "read inline after forget");
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        // The read that started before the change landed and was dropped.
        assert_eq!(f.reads.load(Ordering::SeqCst), 3);
        assert_eq!(f.get(Duration::ZERO).await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_value_until_its_ttl_and_the_next_caller_tries_again() {
        let f = Fixture::new();
        assert_eq!(f.get(Duration::ZERO).await, 1);
        tokio::time::advance(TTL.mul_f64(0.8)).await;
        let failing = f
            .cache
            .get(&"pat-a", TTL, || async {
                Err::<usize, _>("down".to_owned())
            })
            .await;
        assert_eq!(failing, Ok(1), "answered from the cache");
        settle().await;
        assert_eq!(
            f.get(Duration::ZERO).await,
            1,
            "still cached; a read starts"
        );
        settle().await;
        assert_eq!(f.get(Duration::ZERO).await, 2, "the second try's value");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_missing_the_same_key_together_wait_for_one_read() {
        let f = Fixture::new();
        let values =
            futures_util::future::join_all((0..20).map(|_| f.get(Duration::from_millis(100))))
                .await;
        assert_eq!(values, vec![1; 20]);
        assert_eq!(f.reads.load(Ordering::SeqCst), 1);
        assert!(f.cache.inner.reading.is_empty(), "the gate is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn entries_past_their_life_are_swept_as_new_ones_come() {
        let cache: RefreshAhead<usize, usize> = RefreshAhead::default();
        let fill = |keys: std::ops::Range<usize>| {
            let cache = &cache;
            async move {
                for key in keys {
                    let value = cache
                        .get(&key, TTL, || async move { Ok::<_, String>(key) })
                        .await;
                    assert_eq!(value, Ok(key));
                }
            }
        };
        fill(0..SWEEP_AFTER - 2).await;
        tokio::time::advance(TTL).await;
        // Nothing is swept before SWEEP_AFTER entries were added.
        fill(SWEEP_AFTER..SWEEP_AFTER + 1).await;
        assert_eq!(cache.inner.entries.len(), SWEEP_AFTER - 1);
        // The SWEEP_AFTER-th drops every entry past its life.
        fill(SWEEP_AFTER + 1..SWEEP_AFTER + 2).await;
        assert_eq!(cache.inner.entries.len(), 2, "only the live entries left");
        assert!(cache.is_fresh(&(SWEEP_AFTER + 1), TTL));
    }

    #[tokio::test(start_paused = true)]
    async fn forgetting_everything_drops_every_entry() {
        let f = Fixture::new();
        assert_eq!(f.get(Duration::ZERO).await, 1);
        f.cache.forget_all();
        assert_eq!(f.get(Duration::ZERO).await, 2);
    }
}
