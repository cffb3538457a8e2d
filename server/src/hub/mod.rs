//! This node's registry: which local connections subscribe to which topic
//! (consultation rooms and dashboard feeds), and local fan-out.
//!
//! A subscriber may be admitted later than it subscribes: a connection
//! joining a room subscribes before it reads the room (so nothing committed
//! after that read can pass it by) and is admitted once the read says it is
//! a member. Until then it receives the topic's events (its session drops
//! them if the join fails) but does not count as a member: it is not listed
//! in [`Hub::members`] nor counted by [`Hub::connections_of`].
//!
//! The hub never talks to other nodes (that is the broker's job) and never
//! awaits: delivery is a `try_send` of the same encoded bytes into each
//! subscriber's bounded queue. A full queue marks a slow consumer, which is
//! kicked (its session closes with `4003`) rather than allowed to stall the
//! room.

pub mod topics;

use crate::broker::{Event, EventSink, Topic};
use consult_protocol::{Member, Role, UserId};
use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One local connection's subscription to a topic.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The connection's id, unique on this node.
    pub conn_id: u64,
    /// Its user.
    pub user: UserId,
    /// Its role.
    pub role: Role,
    /// Its bounded outbound queue.
    pub outbound_tx: mpsc::Sender<Arc<Event>>,
    /// Cancelled to close the connection as a slow consumer.
    pub slow_consumer: CancellationToken,
    /// Counts as a member of the topic (see [`Hub::admit`]).
    pub admitted: bool,
}

/// Counts from one delivery, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Queues the event went into.
    pub queued: usize,
    /// Subscribers newly kicked because their queue was full.
    pub kicked: usize,
}

/// The local registry of topics and subscribers.
#[derive(Debug, Default)]
pub struct Hub {
    topics: DashMap<Topic, Vec<Subscriber>>,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `subscriber` to `topic`. Returns true when it is the topic's
    /// first subscriber on this node (the caller then subscribes the broker).
    pub fn subscribe(&self, topic: Topic, subscriber: Subscriber) -> bool {
        let mut entry = self.topics.entry(topic).or_default();
        let first = entry.is_empty();
        entry.retain(|existing| existing.conn_id != subscriber.conn_id);
        entry.push(subscriber);
        first
    }

    /// Makes connection `conn_id`'s subscription to `topic` count as a
    /// member's.
    pub fn admit(&self, topic: &str, conn_id: u64) {
        if let Some(mut subscribers) = self.topics.get_mut(topic) {
            for subscriber in subscribers.iter_mut() {
                if subscriber.conn_id == conn_id {
                    subscriber.admitted = true;
                }
            }
        }
    }

    /// Removes connection `conn_id` from `topic`. Returns true when the topic
    /// has no subscribers left on this node.
    pub fn unsubscribe(&self, topic: &str, conn_id: u64) -> bool {
        if let Some(mut subscribers) = self.topics.get_mut(topic) {
            subscribers.retain(|existing| existing.conn_id != conn_id);
        }
        // Removing only if still empty keeps a subscriber that raced in.
        self.topics
            .remove_if(topic, |_, subscribers| subscribers.is_empty())
            .is_some()
    }

    /// The distinct admitted users subscribed to `topic` on this node.
    pub fn members(&self, topic: &str) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .topics
            .get(topic)
            .map(|subscribers| {
                subscribers
                    .iter()
                    .filter(|s| s.admitted)
                    .map(|s| Member {
                        user: s.user.clone(),
                        role: s.role,
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort_by(|a, b| a.user.cmp(&b.user));
        members.dedup();
        members
    }

    /// Number of admitted connections `user` has subscribed to `topic` on
    /// this node.
    pub fn connections_of(&self, topic: &str, user: &UserId) -> usize {
        self.topics
            .get(topic)
            .map(|subscribers| {
                subscribers
                    .iter()
                    .filter(|s| s.admitted && &s.user == user)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Number of topics with local subscribers.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Pushes `event` into the queue of every local subscriber of its topic.
    pub fn fan_out(&self, event: &Arc<Event>) -> Delivery {
        let mut delivery = Delivery::default();
        let mut slow = Vec::new();
        if let Some(subscribers) = self.topics.get(&event.topic) {
            for subscriber in subscribers.iter() {
                match subscriber.outbound_tx.try_send(Arc::clone(event)) {
                    Ok(()) => delivery.queued += 1,
                    // Until a kicked session exits, its queue stays full;
                    // it is kicked (and counted) once.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if !subscriber.slow_consumer.is_cancelled() {
                            slow.push(subscriber.slow_consumer.clone());
                        }
                    }
                    // The session is exiting and will unsubscribe itself.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        delivery.kicked = slow.len();
        for token in slow {
            token.cancel();
        }
        if delivery.kicked > 0 {
            metrics::counter!("consult_slow_consumer_kicks_total")
                .increment(delivery.kicked as u64);
        }
        metrics::counter!("consult_frames_fanned_out_total").increment(delivery.queued as u64);
        delivery
    }
}

impl EventSink for Hub {
    fn deliver(&self, event: Arc<Event>) {
        self.fan_out(&event);
    }

    fn resync(&self) {
        let topics: Vec<Topic> = self
            .topics
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        metrics::counter!("consult_resyncs_total").increment(1);
        for topic in topics {
            self.fan_out(&Arc::new(Event::resync(topic)));
        }
    }
}

#[cfg(test)]
mod tests;
