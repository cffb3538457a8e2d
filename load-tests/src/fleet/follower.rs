//! One follower: a raw connection joined to one room, counting every
//! message by `seq` and timing live ones, through the fleet's phases.
//!
//! The task owns its connection and runs one `select!` over the phase
//! channel and the socket; it tells the worker what happened through
//! [`Event`]s and never reports to the scenario itself.

use super::FollowerPlan;
use crate::payload;
use crate::raw::{Inbound, RawConnection};
use crate::stats::{LatencyRecorder, SeqTracker, unix_micros};
use anyhow::{Result, anyhow};
use consult_protocol::ConsultationId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// What the worker asks of all its followers.
#[derive(Debug, Clone)]
pub(super) enum Phase {
    /// Stay connected and keep counting.
    Hold,
    /// Drop the connection, reconnect and resume.
    Drop,
    /// Read up to each room's final `seq`, then report.
    Finish(Arc<HashMap<ConsultationId, u64>>),
    /// Close and stop.
    Close,
}

/// A follower's news for the worker.
#[derive(Debug)]
pub(super) enum Event {
    /// A connect (`resumed = false`) or resume attempt ended.
    Joined {
        resumed: bool,
        outcome: Result<Joined, String>,
    },
    /// Counts at the end of the run.
    Finished(Summary),
    /// The connection is closed and the task is ending.
    Closed,
}

/// A successful join.
#[derive(Debug)]
pub(super) struct Joined {
    /// When `joined` arrived (Unix µs).
    pub(super) at_unix_us: u64,
    /// Messages replayed before it.
    pub(super) replayed: u32,
}

/// A follower's counts.
#[derive(Debug)]
pub(super) struct Summary {
    pub(super) tracker: SeqTracker,
    pub(super) missed: u64,
    pub(super) connected: bool,
}

/// What a follower shares with its worker.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) ws_urls: Arc<Vec<String>>,
    pub(super) events_tx: mpsc::Sender<Event>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) latency: Arc<Mutex<LatencyRecorder>>,
    pub(super) finish_timeout: Duration,
}

#[derive(Debug)]
pub(super) struct Follower {
    plan: FollowerPlan,
    shared: Shared,
    phase_rx: watch::Receiver<Phase>,
    connection: Option<RawConnection>,
    /// `None` until the first successful join.
    tracker: Option<SeqTracker>,
}

impl Follower {
    pub(super) fn new(
        plan: FollowerPlan,
        shared: Shared,
        phase_rx: watch::Receiver<Phase>,
    ) -> Self {
        Self {
            plan,
            shared,
            phase_rx,
            connection: None,
            tracker: None,
        }
    }

    pub(super) async fn run(mut self) {
        self.join(false).await;
        loop {
            // Both branch futures are cancel-safe: `changed` and a socket read.
            let phase = tokio::select! {
                changed = self.phase_rx.changed() => match changed {
                    Ok(()) => self.phase_rx.borrow_and_update().clone(),
                    Err(_) => Phase::Close,
                },
                inbound = next_inbound(&mut self.connection) => {
                    self.on_inbound(inbound, true);
                    continue;
                }
            };
            match phase {
                Phase::Hold => {}
                Phase::Drop => {
                    // Dropping the stream closes the TCP connection at once,
                    // without a WebSocket close handshake.
                    self.connection = None;
                    self.join(true).await;
                }
                Phase::Finish(final_seqs) => self.finish(&final_seqs).await,
                Phase::Close => {
                    if let Some(connection) = self.connection.take() {
                        connection.close().await;
                    }
                    self.report(Event::Closed).await;
                    return;
                }
            }
        }
    }

    /// Connects and joins (resuming from the last `seq` once joined before).
    async fn join(&mut self, resumed: bool) {
        let outcome = match self.connect_and_join().await {
            Ok(replayed) => Ok(Joined {
                at_unix_us: unix_micros(),
                replayed,
            }),
            Err(error) => Err(format!("{error:#}")),
        };
        self.report(Event::Joined { resumed, outcome }).await;
    }

    async fn connect_and_join(&mut self) -> Result<u32> {
        // The worker never closes the semaphore.
        let permits = self.shared.permits.clone();
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| anyhow!("connect permits closed"))?;
        let ws_url = self
            .shared
            .ws_urls
            .get(self.plan.node)
            .ok_or_else(|| anyhow!("no node {}", self.plan.node))?
            .clone();
        let mut connection =
            RawConnection::connect(&ws_url, self.plan.source, &self.plan.token).await?;
        let since = self.tracker.map(|tracker| tracker.last);
        connection.send_join(&self.plan.room, since).await?;
        // Replayed messages are counted but not timed: their delay is the
        // outage, not delivery.
        let (last_seq, replayed) = connection
            .joined(|message| self.on_inbound(message, false))
            .await?;
        if self.tracker.is_none() {
            self.tracker = Some(SeqTracker::starting_at(last_seq));
        }
        self.connection = Some(connection);
        Ok(replayed)
    }

    fn on_inbound(&mut self, inbound: Inbound, live: bool) {
        match inbound {
            Inbound::Message { seq, body } => {
                if let Some(tracker) = &mut self.tracker {
                    tracker.observe(seq);
                }
                if let (true, Some(sent)) = (live, payload::sent_at(&body)) {
                    let micros = unix_micros().saturating_sub(sent);
                    if let Ok(mut latency) = self.shared.latency.lock() {
                        latency.record(micros);
                    }
                }
            }
            Inbound::Closed(why) => {
                tracing::debug!(%why, "follower connection ended");
                self.connection = None;
            }
            Inbound::Joined { .. } | Inbound::Answered | Inbound::Refused(_) | Inbound::Other => {}
        }
    }

    /// Reads until the room's final `seq` or the finish timeout, then
    /// reports the counts.
    async fn finish(&mut self, final_seqs: &HashMap<ConsultationId, u64>) {
        let deadline = Instant::now() + self.shared.finish_timeout;
        let target = final_seqs.get(&self.plan.room).copied().unwrap_or(0);
        while self.connection.is_some() && self.tracker.is_some_and(|t| t.last < target) {
            match tokio::time::timeout_at(deadline, next_inbound(&mut self.connection)).await {
                Ok(inbound) => self.on_inbound(inbound, true),
                Err(_) => break,
            }
        }
        // A follower that never joined has failed (counted by the connect
        // phase), not missed anything.
        let summary = Summary {
            tracker: self.tracker.unwrap_or_default(),
            missed: self.tracker.map_or(0, |tracker| tracker.missed(target)),
            connected: self.connection.is_some(),
        };
        self.report(Event::Finished(summary)).await;
    }

    async fn report(&self, event: Event) {
        // The worker outlives its followers; if it is gone, nobody listens.
        if self.shared.events_tx.send(event).await.is_err() {
            tracing::debug!("fleet worker gone");
        }
    }
}

/// The next frame, or never when there is no connection.
async fn next_inbound(connection: &mut Option<RawConnection>) -> Inbound {
    match connection {
        Some(connection) => connection.next().await,
        None => std::future::pending().await,
    }
}
