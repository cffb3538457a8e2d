//! One follower: a raw connection joined to its rooms (one for a patient,
//! those it chats in for a provider, none for a watching admin), counting
//! every message by `seq` per room and timing live ones, through the
//! fleet's phases.
//!
//! The task owns its connection and runs one `select!` over the phase
//! channel, the socket and, when it chats, its send timer; it tells the
//! worker what happened through [`Event`]s and never reports to the
//! scenario itself. With `auto_resume`, a connection that ends between
//! phases is replaced at once (after a little jitter) by one to another
//! node, which joins every room again from its last `seq`.

use super::{ChatReport, FollowerPlan};
use crate::payload;
use crate::raw::{Inbound, RawConnection};
use crate::stats::{LatencyRecorder, SeqTracker, unix_micros};
use anyhow::{Result, anyhow};
use consult_protocol::ConsultationId;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// How long a follower keeps trying to resume before it gives up.
const RESUME_LIMIT: Duration = Duration::from_secs(120);
/// The most a follower waits before its first reconnect, ms.
const RESUME_JITTER_MS: u64 = 200;
/// The pause after every node refused, doubling up to [`RESUME_PAUSE_MAX`].
const RESUME_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between rounds of reconnects.
const RESUME_PAUSE_MAX: Duration = Duration::from_secs(2);
/// How long `Quiesce` waits for the answers to sends in flight.
const QUIESCE_LIMIT: Duration = Duration::from_secs(15);

/// What the worker asks of all its followers.
#[derive(Debug, Clone)]
pub(super) enum Phase {
    /// Stay connected and keep counting (and chatting).
    Hold,
    /// Drop the connection, reconnect and resume.
    Drop,
    /// Stop chatting; report once every send is answered.
    Quiesce,
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
    /// The connection ended between phases.
    Lost,
    /// A reconnect after [`Event::Lost`] ended: the outage on success.
    AutoResumed(Result<Outage, String>),
    /// What it sent, once quiesced.
    Quiesced(ChatReport),
    /// Counts at the end of the run.
    Finished(Summary),
    /// The connection is closed and the task is ending.
    Closed,
}

/// A successful join.
#[derive(Debug)]
pub(super) struct Joined {
    /// When the last `joined` arrived (Unix µs).
    pub(super) at_unix_us: u64,
    /// Messages replayed before it.
    pub(super) replayed: u32,
}

/// A completed resume.
#[derive(Debug)]
pub(super) struct Outage {
    /// When every room was joined again (Unix µs).
    pub(super) at_unix_us: u64,
    /// From the connection's end to then, µs.
    pub(super) micros: u64,
}

/// A follower's counts over all its rooms.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) in_order: u64,
    pub(super) gaps: u64,
    pub(super) stale: u64,
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
    pub(super) dashboard_deltas: Arc<AtomicU64>,
    pub(super) finish_timeout: Duration,
    pub(super) chat_every: Option<Duration>,
    pub(super) body_bytes: usize,
    pub(super) auto_resume: bool,
}

/// One room's state.
#[derive(Debug)]
struct Room {
    id: ConsultationId,
    /// `None` until the first successful join.
    tracker: Option<SeqTracker>,
    /// The highest `seq` a send of ours got back.
    acknowledged: u64,
}

#[derive(Debug)]
pub(super) struct Follower {
    plan: FollowerPlan,
    shared: Shared,
    phase_rx: watch::Receiver<Phase>,
    connection: Option<RawConnection>,
    /// The node it is (or was last) connected to.
    node: usize,
    rooms: Vec<Room>,
    /// Sends awaiting their answer: command id → room index.
    in_flight: HashMap<String, usize>,
    /// What it sent; each room's highest acknowledged `seq` is filled in
    /// at `Quiesce`.
    chat: ChatReport,
    /// Sends made so far (the next message's number).
    next_message: u64,
    /// False once `Quiesce` came.
    chatting: bool,
}

impl Follower {
    pub(super) fn new(
        plan: FollowerPlan,
        shared: Shared,
        phase_rx: watch::Receiver<Phase>,
    ) -> Self {
        let rooms = plan
            .rooms
            .iter()
            .map(|id| Room {
                id: id.clone(),
                tracker: None,
                acknowledged: 0,
            })
            .collect();
        Self {
            node: plan.node,
            chatting: plan.chat && shared.chat_every.is_some() && !plan.rooms.is_empty(),
            plan,
            shared,
            phase_rx,
            connection: None,
            rooms,
            in_flight: HashMap::new(),
            chat: ChatReport::default(),
            next_message: 0,
        }
    }

    pub(super) async fn run(mut self) {
        self.join(false).await;
        let mut chat_timer = self.chat_timer();
        loop {
            // Every branch future is cancel-safe: `changed`, a socket read
            // and an interval tick.
            let phase = tokio::select! {
                changed = self.phase_rx.changed() => match changed {
                    Ok(()) => self.phase_rx.borrow_and_update().clone(),
                    Err(_) => Phase::Close,
                },
                inbound = next_inbound(&mut self.connection) => {
                    let lost = self.on_inbound(inbound, true);
                    if lost {
                        self.after_loss().await;
                    }
                    continue;
                }
                () = tick(&mut chat_timer) => {
                    self.send_chat().await;
                    continue;
                }
            };
            match phase {
                Phase::Hold => {}
                Phase::Drop => {
                    // Dropping the stream closes the TCP connection at once,
                    // without a WebSocket close handshake.
                    self.forget_connection();
                    self.join(true).await;
                }
                Phase::Quiesce => {
                    chat_timer = None;
                    self.quiesce().await;
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

    /// A timer for the next chat message: one room per tick, each room
    /// every `chat_every`, starting at a random point of the period so
    /// that senders do not beat together.
    fn chat_timer(&self) -> Option<Interval> {
        if !self.chatting {
            return None;
        }
        let every = self.shared.chat_every?;
        let rooms = u32::try_from(self.rooms.len()).unwrap_or(u32::MAX).max(1);
        let period = (every / rooms).max(Duration::from_millis(1));
        let offset_us = rand::rng().random_range(0..period.as_micros().max(1) as u64);
        let mut timer =
            tokio::time::interval_at(Instant::now() + Duration::from_micros(offset_us), period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(timer)
    }

    /// Connects and joins (resuming from the last `seq` once joined before).
    async fn join(&mut self, resumed: bool) {
        let outcome = match self.connect_and_join(self.node).await {
            Ok(replayed) => Ok(Joined {
                at_unix_us: unix_micros(),
                replayed,
            }),
            Err(error) => Err(format!("{error:#}")),
        };
        self.report(Event::Joined { resumed, outcome }).await;
    }

    async fn connect_and_join(&mut self, node: usize) -> Result<u32> {
        // The worker never closes the semaphore.
        let permits = self.shared.permits.clone();
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| anyhow!("connect permits closed"))?;
        let ws_url = self
            .shared
            .ws_urls
            .get(node)
            .ok_or_else(|| anyhow!("no node {node}"))?
            .clone();
        let mut connection =
            RawConnection::connect(&ws_url, self.plan.source, &self.plan.token).await?;
        if self.plan.watch_dashboard {
            connection.watch_dashboard().await?;
        }
        let mut replayed_total = 0;
        for index in 0..self.rooms.len() {
            let since = self.rooms[index].tracker.map(|tracker| tracker.last);
            connection.send_join(&self.rooms[index].id, since).await?;
            // Replayed messages are counted but not timed: their delay is
            // the outage, not delivery.
            let (last_seq, replayed) = connection
                .joined(|message| {
                    self.on_inbound(message, false);
                })
                .await?;
            let room = &mut self.rooms[index];
            if room.tracker.is_none() {
                room.tracker = Some(SeqTracker::starting_at(last_seq));
            }
            replayed_total += replayed;
        }
        self.connection = Some(connection);
        self.node = node;
        Ok(replayed_total)
    }

    /// Accounts for one frame; true when it ended the connection.
    fn on_inbound(&mut self, inbound: Inbound, live: bool) -> bool {
        match inbound {
            Inbound::Message {
                room,
                seq,
                body,
                mine,
            } => {
                if let Some(tracker) = self
                    .rooms
                    .iter_mut()
                    .find(|r| r.id == room)
                    .and_then(|r| r.tracker.as_mut())
                {
                    tracker.observe(seq);
                }
                if let (true, false, Some(sent)) = (live, mine, payload::sent_at(&body)) {
                    let micros = unix_micros().saturating_sub(sent);
                    if let Ok(mut latency) = self.shared.latency.lock() {
                        latency.record(micros);
                    }
                }
            }
            Inbound::Sent { id, seq } => {
                if let Some(index) = self.in_flight.remove(&id) {
                    self.chat.acknowledged += 1;
                    let room = &mut self.rooms[index];
                    room.acknowledged = room.acknowledged.max(seq);
                }
            }
            Inbound::Refused { id, why } => {
                if id.is_some_and(|id| self.in_flight.remove(&id).is_some()) {
                    self.chat.refused += 1;
                    self.chat.first_refusal.get_or_insert(why);
                }
            }
            Inbound::Dashboard => {
                self.shared.dashboard_deltas.fetch_add(1, Ordering::Relaxed);
            }
            Inbound::Closed(why) => {
                tracing::debug!(%why, "follower connection ended");
                self.forget_connection();
                return true;
            }
            Inbound::Joined { .. } | Inbound::Answered | Inbound::Watching | Inbound::Other => {}
        }
        false
    }

    /// Drops the connection; its sends still in flight stay unanswered.
    fn forget_connection(&mut self) {
        self.connection = None;
        self.chat.unanswered += self.in_flight.len() as u64;
        self.in_flight.clear();
    }

    /// After a connection ended between phases: tell the worker and, with
    /// `auto_resume`, reconnect elsewhere.
    async fn after_loss(&mut self) {
        let lost_at = Instant::now();
        self.report(Event::Lost).await;
        if !self.shared.auto_resume {
            return;
        }
        let outcome = self.resume_elsewhere(lost_at).await;
        self.report(Event::AutoResumed(outcome)).await;
    }

    /// Tries every other node in turn (from a random one), then the lost
    /// one too, pausing longer after each round, until one takes it or
    /// [`RESUME_LIMIT`] passes or the run closes.
    async fn resume_elsewhere(&mut self, lost_at: Instant) -> Result<Outage, String> {
        let nodes = self.shared.ws_urls.len().max(1);
        let lost = self.node;
        // The first node is drawn evenly from the others, so the lost
        // node's clients spread evenly; then the rest in turn, the lost one
        // last.
        let (jitter_ms, skip) = {
            let mut rng = rand::rng();
            (
                rng.random_range(0..=RESUME_JITTER_MS),
                rng.random_range(0..nodes.saturating_sub(1).max(1)),
            )
        };
        tokio::time::sleep(Duration::from_millis(jitter_ms)).await;
        let order = resume_order(lost, nodes, skip);
        let mut pause = RESUME_PAUSE;
        let mut last_error = String::new();
        loop {
            for &node in &order {
                if matches!(*self.phase_rx.borrow(), Phase::Close) {
                    return Err("the run closed first".to_owned());
                }
                match self.connect_and_join(node).await {
                    Ok(_) => {
                        return Ok(Outage {
                            at_unix_us: unix_micros(),
                            micros: u64::try_from(lost_at.elapsed().as_micros())
                                .unwrap_or(u64::MAX),
                        });
                    }
                    Err(error) => last_error = format!("{error:#}"),
                }
            }
            if lost_at.elapsed() > RESUME_LIMIT {
                return Err(last_error);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RESUME_PAUSE_MAX);
        }
    }

    /// Sends the next chat message, into the next room in turn; nothing
    /// while disconnected.
    async fn send_chat(&mut self) {
        if !self.chatting || self.rooms.is_empty() {
            return;
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        let number = self.next_message;
        self.next_message += 1;
        let index = (number % self.rooms.len() as u64) as usize;
        let body = payload::body(unix_micros(), number, self.shared.body_bytes);
        let sent = connection
            .send_message(&self.rooms[index].id, format!("m{number}"), body)
            .await;
        self.chat.sent += 1;
        match sent {
            Ok(id) => {
                self.in_flight.insert(id, index);
            }
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "send failed");
                self.chat.unanswered += 1;
                self.forget_connection();
                self.after_loss().await;
            }
        }
    }

    /// Stops chatting, waits for the answers to sends in flight (reading
    /// and counting meanwhile), then reports.
    async fn quiesce(&mut self) {
        self.chatting = false;
        let deadline = Instant::now() + QUIESCE_LIMIT;
        while !self.in_flight.is_empty() && self.connection.is_some() {
            match tokio::time::timeout_at(deadline, next_inbound(&mut self.connection)).await {
                Ok(inbound) => {
                    if self.on_inbound(inbound, true) {
                        self.after_loss().await;
                    }
                }
                Err(_) => break,
            }
        }
        let mut tally = std::mem::take(&mut self.chat);
        tally.unanswered += self.in_flight.len() as u64;
        self.in_flight.clear();
        tally.acknowledged_seqs = self
            .rooms
            .iter()
            .filter(|room| room.acknowledged > 0)
            .map(|room| (room.id.clone(), room.acknowledged))
            .collect();
        self.report(Event::Quiesced(tally)).await;
    }

    /// Reads until every room's final `seq` or the finish timeout, then
    /// reports the counts.
    async fn finish(&mut self, final_seqs: &HashMap<ConsultationId, u64>) {
        let deadline = Instant::now() + self.shared.finish_timeout;
        let behind = |rooms: &[Room]| {
            rooms.iter().any(|room| {
                let target = final_seqs.get(&room.id).copied().unwrap_or(0);
                room.tracker.is_some_and(|t| t.last < target)
            })
        };
        while self.connection.is_some() && behind(&self.rooms) {
            match tokio::time::timeout_at(deadline, next_inbound(&mut self.connection)).await {
                Ok(inbound) => {
                    self.on_inbound(inbound, true);
                }
                Err(_) => break,
            }
        }
        // A room never joined has failed (counted by the connect phase),
        // not missed anything.
        let mut summary = Summary {
            connected: self.connection.is_some(),
            ..Summary::default()
        };
        for room in &self.rooms {
            let Some(tracker) = room.tracker else {
                continue;
            };
            let target = final_seqs.get(&room.id).copied().unwrap_or(0);
            summary.in_order += tracker.in_order;
            summary.gaps += tracker.gaps;
            summary.stale += tracker.stale;
            summary.missed += tracker.missed(target);
        }
        self.report(Event::Finished(summary)).await;
    }

    async fn report(&self, event: Event) {
        // The worker outlives its followers; if it is gone, nobody listens.
        if self.shared.events_tx.send(event).await.is_err() {
            tracing::debug!("fleet worker gone");
        }
    }
}

/// The nodes to try after losing `lost`, of `nodes`: the others from the
/// `skip`-th one after it, round the ring, then `lost` itself.
fn resume_order(lost: usize, nodes: usize, skip: usize) -> Vec<usize> {
    let others = nodes.saturating_sub(1);
    let mut order: Vec<usize> = (0..others)
        .map(|k| (lost + 1 + (skip + k) % others) % nodes)
        .collect();
    order.push(lost);
    order
}

/// The next frame, or never when there is no connection.
async fn next_inbound(connection: &mut Option<RawConnection>) -> Inbound {
    match connection {
        Some(connection) => connection.next().await,
        None => std::future::pending().await,
    }
}

/// The next tick, or never without a timer.
async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::resume_order;

    #[test]
    fn a_resume_tries_every_other_node_once_then_the_lost_one() {
        assert_eq!(resume_order(1, 4, 0), vec![2, 3, 0, 1]);
        assert_eq!(resume_order(1, 4, 2), vec![0, 2, 3, 1]);
        assert_eq!(resume_order(3, 4, 1), vec![1, 2, 0, 3]);
        assert_eq!(resume_order(0, 1, 0), vec![0]);
    }

    #[test]
    fn the_first_node_tried_is_each_other_node_for_one_skip() {
        let firsts: Vec<usize> = (0..7).map(|skip| resume_order(1, 8, skip)[0]).collect();
        assert_eq!(firsts, vec![2, 3, 4, 5, 6, 7, 0]);
    }
}
