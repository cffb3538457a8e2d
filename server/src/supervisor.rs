//! Supervision of the hub's background workers: the message writer, the
//! SQLite checkpoint thread, the receipt batcher, the outbox worker, the
//! dashboard refresher, the Redis broker's publisher and subscriber, the
//! presence heartbeat, the revocation listener, the JWKS refresher, the
//! message partition worker and the retention worker.
//!
//! A worker that panics (or, on a task, is aborted) is restarted after a
//! back-off that doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`] and
//! starts again from the bottom once a run has lasted [`STEADY_RUN`]. What a
//! worker must keep across a restart (its queue, its connection) lives
//! outside the run that failed: a thread's loop borrows it inside
//! [`Workers::run_thread`]; a task's factory takes it from a lock the failed
//! run released (see [`Workers::spawn`]). Work in hand when a run failed is
//! answered as a failure (a sender hears `unavailable` and may send again;
//! an outbox row's claim expires and the row is sent again, fenced by its
//! claim), never silently dropped.
//!
//! While a worker waits to be restarted it is *down*: `/readyz` answers 503
//! and names it, `consult_worker_up{worker}` is 0, and
//! `consult_worker_restarts_total{worker}` counts the restarts. A worker that
//! returns on its own has finished (the hub is shutting down) and is not
//! restarted.
//!
//! [`Workers::fail`] makes a worker fail at once and at every restart until
//! [`Workers::heal`]: the test hook the failure tests use.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The first wait before a restart.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A run this long resets the back-off.
pub const STEADY_RUN: Duration = Duration::from_secs(60);

/// A supervised background worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Worker {
    /// The group-commit message writer (a thread on SQLite, a task on
    /// PostgreSQL).
    Writer,
    /// The SQLite checkpoint thread.
    Checkpoint,
    /// Writes delivered and read receipts, many per transaction.
    Receipts,
    /// The notification outbox worker.
    Outbox,
    /// Publishes dashboard rows that the writer could not read itself.
    Dashboards,
    /// Sends this node's events to Redis.
    BrokerPublisher,
    /// Receives the other nodes' events from Redis.
    BrokerSubscriber,
    /// Refreshes this node's presence entries in Redis.
    Presence,
    /// Applies revocations arriving on the control topic.
    Revocations,
    /// Refreshes the identity provider's key set (with `auth.jwks_url`).
    Jwks,
    /// Creates the monthly message partitions ahead (PostgreSQL only).
    Partitions,
    /// Deletes (and exports) the messages of consultations past their
    /// clinic's retention.
    Retention,
}

impl Worker {
    /// Every worker, in the order `/readyz` lists them.
    pub const ALL: [Self; 12] = [
        Self::Writer,
        Self::Checkpoint,
        Self::Receipts,
        Self::Outbox,
        Self::Dashboards,
        Self::BrokerPublisher,
        Self::BrokerSubscriber,
        Self::Presence,
        Self::Revocations,
        Self::Jwks,
        Self::Partitions,
        Self::Retention,
    ];

    /// The name in `/readyz` and in metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Checkpoint => "checkpoint",
            Self::Receipts => "receipts",
            Self::Outbox => "outbox",
            Self::Dashboards => "dashboards",
            Self::BrokerPublisher => "broker_publisher",
            Self::BrokerSubscriber => "broker_subscriber",
            Self::Presence => "presence",
            Self::Revocations => "revocations",
            Self::Jwks => "jwks",
            Self::Partitions => "partitions",
            Self::Retention => "retention",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One worker's state.
#[derive(Debug, Default)]
struct Slot {
    /// This hub runs the worker.
    started: AtomicBool,
    /// Waiting to be restarted.
    down: AtomicBool,
    /// Fails at once and at every restart (the test hook).
    failing: AtomicBool,
    /// Wakes a running task whose failure was asked for.
    fail_now: Notify,
}

/// The hub's background workers and whether each is running.
#[derive(Debug, Default)]
pub struct Workers {
    slots: [Slot; Worker::ALL.len()],
}

/// A worker's state as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Running (or finished during shutdown).
    Running,
    /// Failed; waiting to be restarted.
    Restarting,
}

impl Workers {
    /// No worker started yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn slot(&self, worker: Worker) -> &Slot {
        &self.slots[worker.index()]
    }

    /// The workers this hub runs, each with its state.
    pub fn states(&self) -> Vec<(Worker, WorkerState)> {
        Worker::ALL
            .into_iter()
            .filter(|worker| self.slot(*worker).started.load(Ordering::Acquire))
            .map(|worker| {
                let state = if self.slot(worker).down.load(Ordering::Acquire) {
                    WorkerState::Restarting
                } else {
                    WorkerState::Running
                };
                (worker, state)
            })
            .collect()
    }

    /// True when no worker is waiting to be restarted.
    pub fn all_running(&self) -> bool {
        self.states()
            .iter()
            .all(|(_, state)| *state == WorkerState::Running)
    }

    /// Test hook: `worker` fails now (a task at its next await, a thread at
    /// its next [`Self::fail_if_asked`]) and at every restart, until
    /// [`Self::heal`].
    pub fn fail(&self, worker: Worker) {
        let slot = self.slot(worker);
        slot.failing.store(true, Ordering::Release);
        slot.fail_now.notify_waiters();
    }

    /// Test hook: ends [`Self::fail`]; the next restart runs the worker.
    pub fn heal(&self, worker: Worker) {
        self.slot(worker).failing.store(false, Ordering::Release);
    }

    /// Panics if [`Self::fail`] asked `worker` to fail: called by thread
    /// workers at the points where a real failure could happen.
    ///
    /// # Panics
    ///
    /// When asked to, by design.
    pub fn fail_if_asked(&self, worker: Worker) {
        if self.slot(worker).failing.load(Ordering::Acquire) {
            panic!("{} failed on request", worker.name());
        }
    }

    fn started(&self, worker: Worker) {
        self.slot(worker).started.store(true, Ordering::Release);
        metrics::gauge!("consult_worker_up", "worker" => worker.name()).set(1.0);
    }

    fn went_down(&self, worker: Worker, cause: &str, backoff: Duration) {
        self.slot(worker).down.store(true, Ordering::Release);
        metrics::gauge!("consult_worker_up", "worker" => worker.name()).set(0.0);
        tracing::error!(
            worker = worker.name(),
            cause,
            backoff_ms = backoff.as_millis(),
            "background worker failed; restarting"
        );
    }

    fn came_back(&self, worker: Worker) {
        self.slot(worker).down.store(false, Ordering::Release);
        metrics::gauge!("consult_worker_up", "worker" => worker.name()).set(1.0);
        metrics::counter!("consult_worker_restarts_total", "worker" => worker.name()).increment(1);
        tracing::info!(worker = worker.name(), "background worker restarted");
    }

    /// Runs `body` on the calling thread, again after a back-off each time
    /// it panics, until it returns. What `body` borrows survives a panic.
    pub fn run_thread(&self, worker: Worker, mut body: impl FnMut()) {
        self.started(worker);
        let mut backoff = Backoff::default();
        let mut restarting = false;
        loop {
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.fail_if_asked(worker);
                if restarting {
                    self.came_back(worker);
                }
                body();
            }));
            if outcome.is_ok() {
                return;
            }
            let wait = backoff.after_run_of(started.elapsed());
            // The kind only: a panic's message is not logged here (it may
            // carry data; the panic hook reports it where panics go).
            self.went_down(worker, "panic", wait);
            std::thread::sleep(wait);
            restarting = true;
        }
    }

    /// Spawns a task that runs `make()`'s future, and a fresh one after a
    /// back-off each time one panics or [`Self::fail`] aborts it, until one
    /// returns. State that must survive a failed run belongs in a
    /// [`tokio::sync::Mutex`] the run locks (a failed run's lock is
    /// released with it).
    pub fn spawn<F, Fut>(self: &Arc<Self>, worker: Worker, make: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.started(worker);
        let workers = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Backoff::default();
            let mut restarting = false;
            loop {
                let started = Instant::now();
                let cause = match workers.run_task(worker, make(), restarting).await {
                    Ok(()) => return,
                    Err(cause) => cause,
                };
                let wait = backoff.after_run_of(started.elapsed());
                workers.went_down(worker, cause, wait);
                tokio::time::sleep(wait).await;
                restarting = true;
            }
        })
    }

    /// One run of a task worker (after a failure when `restarting`): `Ok`
    /// when it returned, the cause when it panicked or was made to fail.
    async fn run_task(
        &self,
        worker: Worker,
        run: impl Future<Output = ()> + Send + 'static,
        restarting: bool,
    ) -> Result<(), &'static str> {
        let slot = self.slot(worker);
        let fail_now = slot.fail_now.notified();
        tokio::pin!(fail_now);
        // Registered before the check, so a `fail` between them is seen.
        fail_now.as_mut().enable();
        if slot.failing.load(Ordering::Acquire) {
            return Err("failure requested");
        }
        if restarting {
            self.came_back(worker);
        }
        let mut task = tokio::spawn(run);
        tokio::select! {
            joined = &mut task => match joined {
                Ok(()) => Ok(()),
                Err(error) if error.is_panic() => Err("panic"),
                Err(_) => Err("cancelled"),
            },
            () = fail_now => {
                task.abort();
                // Its locks are released once it is gone.
                let _aborted = task.await;
                Err("failure requested")
            }
        }
    }
}

/// Doubling waits between restarts.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The wait after a run that lasted `ran`.
    fn after_run_of(&mut self, ran: Duration) -> Duration {
        if ran >= STEADY_RUN {
            self.next = FIRST_BACKOFF;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Registers every worker's metrics at their resting values.
pub fn register_metrics() {
    for worker in Worker::ALL {
        metrics::counter!("consult_worker_restarts_total", "worker" => worker.name()).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_backoff_doubles_to_its_ceiling_and_resets_after_a_steady_run() {
        let mut backoff = Backoff::default();
        let short = Duration::from_millis(1);
        let waits: Vec<Duration> = (0..9).map(|_| backoff.after_run_of(short)).collect();
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(waits[8], MAX_BACKOFF);
        assert_eq!(backoff.after_run_of(STEADY_RUN), FIRST_BACKOFF);
    }

    #[test]
    fn a_thread_body_that_panics_runs_again_and_keeps_what_it_borrows() {
        let workers = Workers::new();
        let mut runs = Vec::new();
        workers.run_thread(Worker::Checkpoint, || {
            runs.push(runs.len());
            assert!(runs.len() >= 2, "first run fails");
        });
        assert_eq!(runs, vec![0, 1]);
        assert!(workers.all_running());
    }

    #[tokio::test]
    async fn a_task_that_panics_is_run_again_from_its_factory() {
        let workers = Workers::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let handle = workers.spawn(Worker::Dashboards, move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(run > 0, "the first run panics");
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(workers.all_running());
    }

    #[tokio::test]
    async fn a_failed_task_is_reported_down_until_it_is_healed_and_restarted() {
        let workers = Workers::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let handle = workers.spawn(Worker::Outbox, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let stopped = stopped.clone();
            async move { stopped.notified().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            workers.states(),
            vec![(Worker::Outbox, WorkerState::Running)]
        );
        workers.fail(Worker::Outbox);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!workers.all_running());
        workers.heal(Worker::Outbox);
        tokio::time::sleep(FIRST_BACKOFF * 4).await;
        assert!(workers.all_running());
        assert!(runs.load(Ordering::SeqCst) >= 2);
        stop.notify_waiters();
        handle.await.unwrap();
    }
}
