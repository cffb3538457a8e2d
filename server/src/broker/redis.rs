//! The Redis broker: PUBLISH on one multiplexed connection (pipelined by a
//! publisher task), SUBSCRIBE on one dedicated connection drained by its own
//! task, only to topics with subscribers on this node.
//!
//! Every event is delivered locally first and then published, so while Redis
//! is down this node keeps serving its own rooms; the subscriber skips events
//! this node published. After the subscriber reconnects it resubscribes and
//! asks the hub to resync every room from the database, which fills whatever
//! was published while it was away. A topic whose `subscribe` caller gave up
//! waiting (Redis was down, or slow) gets a resync marker of its own once its
//! SUBSCRIBE is confirmed, since that caller's replay ran unsubscribed.
//!
//! A failed PUBLISH is retried once (a connection that died while idle fails
//! the first command after Redis returns, and only then reconnects). Topics
//! whose events were still lost, or dropped on a full queue, are owed a
//! resync marker (an envelope with an empty frame): the publisher sends one
//! per topic as soon as Redis takes commands again, and the other nodes'
//! subscribers then catch those topics up from the database.
//!
//! Every envelope is signed with the cluster key, and one that arrives
//! malformed, unsigned, with a tag no accepted key produces, or stale is
//! dropped and counted (`consult_broker_rejected_total{reason}`), never
//! delivered. A topic's channel on Redis is the topic behind
//! [`REDIS_CHANNEL_PREFIX`], so that an ACL can confine the hub's user to
//! its own channels.
//!
//! On a Redis Cluster (`broker.kind = "redis-cluster"`) the same broker
//! publishes with SPUBLISH, in one pipeline per slot, and its subscriber
//! ([`cluster`]) holds SSUBSCRIBEs on the primaries owning each channel's
//! slot, so that a channel's traffic stays within its shard.

use super::envelope::{self, ClusterKeys};
use super::{BrokerError, BrokerHealth, Event, EventSink, Topic};
use crate::supervisor::{Worker, Workers};
use dashmap::DashMap;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod cluster;
mod conn;
mod connect;
mod node_claim;

pub use conn::{RedisConnection, by_slot};
pub use connect::{ClusterClients, redis_client, redis_cluster_clients};
pub use node_claim::{NodeClaim, NodeIdInUse};

/// What every channel the hub publishes or subscribes to on Redis starts
/// with.
pub const REDIS_CHANNEL_PREFIX: &str = "consult:";
/// Rejected envelopes are logged at most this often (they are all counted).
const REJECTION_LOG_EVERY_MS: u64 = 1_000;

/// Events waiting to be published before new ones are dropped (and left to
/// the remote nodes' gap filling).
const PUBLISH_QUEUE: usize = 16_384;
/// PUBLISH commands sent in one pipeline at most.
const PIPELINE_MAX: usize = 256;
/// How long `subscribe` waits for Redis to confirm.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the publisher retries owed resync markers while Redis refuses
/// them.
const RESYNC_RETRY: Duration = Duration::from_millis(250);

/// An event waiting for the publisher: its topic, `seq` and frame.
type Queued = (Topic, Option<u64>, bytes::Bytes);

/// Interest in one topic.
#[derive(Default)]
struct Wanted {
    /// Outstanding `subscribe` calls minus `unsubscribe` calls. The hub
    /// makes them in pairs (first local subscriber, last one gone), but two
    /// sessions' calls can interleave: a count, unlike a set, cannot lose a
    /// subscription that raced with the previous one's removal.
    count: i64,
    /// Callers waiting for the SUBSCRIBE to be confirmed.
    waiters: Vec<oneshot::Sender<()>>,
    /// Redis confirmed the SUBSCRIBE on the current connection.
    confirmed: bool,
}

struct Shared {
    node_id: String,
    keys: ClusterKeys,
    /// When a rejected envelope was last logged (ms since the epoch).
    rejection_logged_at: AtomicU64,
    sink: Arc<dyn EventSink>,
    healthy: AtomicBool,
    /// Topics this node wants.
    wanted: DashMap<Topic, Wanted>,
    changed: Notify,
    /// Topics whose events may not have reached Redis; each is owed a
    /// resync marker.
    owed: Mutex<HashSet<Topic>>,
}

impl Shared {
    fn owe_resync(&self, topics: impl IntoIterator<Item = Topic>) {
        self.owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(topics);
    }

    fn take_owed(&self) -> HashSet<Topic> {
        std::mem::take(&mut *self.owed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A receiver answered once `topic`'s SUBSCRIBE is confirmed, or `None`
    /// when it already is (or nobody wants the topic any more).
    fn pending_confirmation(&self, topic: &Topic) -> Option<oneshot::Receiver<()>> {
        let mut wanted = self.wanted.get_mut(topic)?;
        if wanted.confirmed {
            return None;
        }
        let (confirmed_tx, confirmed_rx) = oneshot::channel();
        wanted.waiters.push(confirmed_tx);
        Some(confirmed_rx)
    }

    /// The subscriber connection is gone: nothing is confirmed any more.
    fn forget_confirmations(&self) {
        for mut entry in self.wanted.iter_mut() {
            entry.confirmed = false;
        }
    }

    fn owes_resync(&self) -> bool {
        !self
            .owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// A broker over Redis pub/sub.
#[derive(Clone)]
pub struct RedisBroker {
    shared: Arc<Shared>,
    publish_tx: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node_id", &self.shared.node_id)
            .field("healthy", &self.shared.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Starts the publisher and subscriber tasks on `client` (see
    /// [`redis_client`]), signing and checking envelopes with `keys`. Redis
    /// need not be up yet: the broker reports itself degraded until it is.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the connection manager cannot be
    /// made.
    pub fn start(
        client: redis::Client,
        node_id: String,
        keys: ClusterKeys,
        sink: Arc<dyn EventSink>,
        stop: CancellationToken,
        workers: &Arc<Workers>,
    ) -> Result<Self, BrokerError> {
        let publisher = RedisConnection::single(client.clone(), 2)
            .map_err(|error| BrokerError::Unavailable(error.to_string()))?;
        let (broker, shared) =
            Self::start_publisher(publisher, node_id, keys, sink, &stop, workers);
        // Every run after the first has missed events: it resyncs.
        let runs = Arc::new(AtomicU64::new(0));
        workers.spawn(Worker::BrokerSubscriber, move || {
            let restarted = runs.fetch_add(1, Ordering::Relaxed) > 0;
            run_subscriber(client.clone(), Arc::clone(&shared), stop.clone(), restarted)
        });
        Ok(broker)
    }

    /// Starts the broker on a Redis Cluster: SPUBLISH through
    /// `clients.commands`, SSUBSCRIBE through `clients.subscriber` (see
    /// [`redis_cluster_clients`]). Redis need not be up yet.
    pub fn start_cluster(
        clients: ClusterClients,
        node_id: String,
        keys: ClusterKeys,
        sink: Arc<dyn EventSink>,
        stop: CancellationToken,
        workers: &Arc<Workers>,
    ) -> Self {
        let connection = RedisConnection::Cluster(
            clients
                .commands
                .get_pending_async_connection_with_config(Default::default()),
        );
        let (broker, shared) =
            Self::start_publisher(connection, node_id, keys, sink, &stop, workers);
        cluster::spawn_subscriber(clients.subscriber, clients.pushes, shared, stop, workers);
        broker
    }

    /// The shared state and the supervised publisher task, on `publisher`.
    fn start_publisher(
        publisher: RedisConnection,
        node_id: String,
        keys: ClusterKeys,
        sink: Arc<dyn EventSink>,
        stop: &CancellationToken,
        workers: &Arc<Workers>,
    ) -> (Self, Arc<Shared>) {
        let shared = Arc::new(Shared {
            node_id,
            keys,
            rejection_logged_at: AtomicU64::new(0),
            sink,
            healthy: AtomicBool::new(false),
            wanted: DashMap::new(),
            changed: Notify::new(),
            owed: Mutex::new(HashSet::new()),
        });
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        // A failed run's lock is released with it: the next run takes over
        // the queue.
        let publishing = Arc::new(tokio::sync::Mutex::new((publisher, publish_rx)));
        let (for_publisher, stop_publisher) = (shared.clone(), stop.clone());
        workers.spawn(Worker::BrokerPublisher, move || {
            run_publisher(
                Arc::clone(&publishing),
                Arc::clone(&for_publisher),
                stop_publisher.clone(),
            )
        });
        (
            Self {
                shared: shared.clone(),
                publish_tx,
            },
            shared,
        )
    }

    /// Delivers locally, then queues the event for Redis (the publisher
    /// signs it when it sends it, so its time is the time it left).
    pub(super) fn publish(&self, event: Event) {
        let queued = (event.topic.clone(), event.seq, event.frame.clone());
        self.shared.sink.deliver(Arc::new(event));
        if let Err(error) = self.publish_tx.try_send(queued) {
            metrics::counter!("consult_broker_dropped_total").increment(1);
            let (mpsc::error::TrySendError::Full((topic, ..))
            | mpsc::error::TrySendError::Closed((topic, ..))) = error;
            self.shared.owe_resync([topic]);
        }
    }

    /// Wants `topic`, waiting until Redis confirms the subscription. While
    /// Redis is unreachable it fails at once; the topic stays wanted, and
    /// the reconnect subscribes it and resyncs it from the database.
    pub(super) async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        let (confirmed_tx, confirmed_rx) = oneshot::channel();
        {
            let mut wanted = self.shared.wanted.entry(topic.clone()).or_default();
            wanted.count += 1;
            wanted.waiters.push(confirmed_tx);
        }
        self.shared.changed.notify_one();
        self.await_confirmation(topic, confirmed_rx).await
    }

    /// Waits (at most [`SUBSCRIBE_TIMEOUT`]) for `confirmed_rx`; fails at
    /// once while Redis is unreachable.
    async fn await_confirmation(
        &self,
        topic: &Topic,
        confirmed_rx: oneshot::Receiver<()>,
    ) -> Result<(), BrokerError> {
        let unavailable = || {
            BrokerError::Unavailable(format!(
                "SUBSCRIBE {topic} not confirmed; serving locally until redis is back"
            ))
        };
        if !self.shared.healthy.load(Ordering::Acquire) {
            return Err(unavailable());
        }
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, confirmed_rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(unavailable()),
        }
    }

    /// Waits until Redis confirms the subscription another local caller
    /// asked for (the hub subscribes the broker for a topic's first local
    /// subscriber only; later joiners wait here, or they would read their
    /// replay before other nodes' events can reach them).
    pub(super) async fn await_subscribed(&self, topic: &Topic) -> Result<(), BrokerError> {
        match self.shared.pending_confirmation(topic) {
            Some(confirmed_rx) => self.await_confirmation(topic, confirmed_rx).await,
            None => Ok(()),
        }
    }

    /// No longer wants `topic` (once as many calls as `subscribe` made).
    pub(super) fn unsubscribe(&self, topic: &Topic) {
        if let Some(mut wanted) = self.shared.wanted.get_mut(topic) {
            wanted.count -= 1;
        }
        self.shared
            .wanted
            .remove_if(topic, |_, wanted| wanted.count <= 0);
        self.shared.changed.notify_one();
    }

    pub(super) fn health(&self) -> BrokerHealth {
        if self.shared.healthy.load(Ordering::Acquire) {
            BrokerHealth::Healthy
        } else {
            BrokerHealth::Degraded
        }
    }
}

/// What the publisher keeps across a restart.
type Publishing = Arc<tokio::sync::Mutex<(RedisConnection, mpsc::Receiver<Queued>)>>;

async fn run_publisher(publishing: Publishing, shared: Arc<Shared>, stop: CancellationToken) {
    let mut held = publishing.lock().await;
    let (connection, publish_rx) = &mut *held;
    let mut retry = tokio::time::interval(RESYNC_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let owes_resync = shared.owes_resync();
        let first = tokio::select! {
            item = publish_rx.recv() => item,
            _ = retry.tick(), if owes_resync => {
                publish_owed_resyncs(&shared, connection).await;
                continue;
            }
            () = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < PIPELINE_MAX {
            match publish_rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let now = envelope::now_ms();
        let payloads: Vec<(Topic, bytes::Bytes)> = batch
            .into_iter()
            .map(|(topic, seq, frame)| {
                let payload =
                    envelope::encode(&shared.keys, &topic, &shared.node_id, seq, &frame, now);
                (topic, payload)
            })
            .collect();
        let count = payloads.len();
        let failed = publish_all(connection, payloads, true).await;
        if failed.is_empty() {
            if owes_resync {
                publish_owed_resyncs(&shared, connection).await;
            }
        } else {
            metrics::counter!("consult_broker_publish_failures_total")
                .increment(failed.len() as u64);
            tracing::warn!(
                count = failed.len(),
                of = count,
                "PUBLISH failed; the other nodes will be told to resync"
            );
            shared.owe_resync(failed);
        }
    }
}

/// Publishes each `(topic, payload)` on its channel, in order: PUBLISH in
/// one pipeline on a single Redis; on a cluster SPUBLISH, in one pipeline
/// per slot (a topic's events stay in order within its slot's pipeline),
/// the pipelines sent concurrently. With `retry`, a failed pipeline is sent
/// once more. Returns the topics of the pipelines that still failed.
async fn publish_all(
    connection: &RedisConnection,
    payloads: Vec<(Topic, bytes::Bytes)>,
    retry: bool,
) -> Vec<Topic> {
    let cluster = connection.is_cluster();
    let command = if cluster { "SPUBLISH" } else { "PUBLISH" };
    let keyed: Vec<(String, Topic, bytes::Bytes)> = payloads
        .into_iter()
        .map(|(topic, payload)| (channel(&topic), topic, payload))
        .collect();
    let groups = by_slot(cluster, keyed, |(channel, ..)| channel.as_bytes());
    let sends = groups.into_iter().map(|group| {
        let mut pipeline = redis::pipe();
        for (channel, _, payload) in &group {
            pipeline
                .cmd(command)
                .arg(channel)
                .arg(&payload[..])
                .ignore();
        }
        let mut connection = connection.clone();
        async move {
            let result = if retry {
                query_with_one_retry(&pipeline, &mut connection).await
            } else {
                pipeline.query_async::<()>(&mut connection).await
            };
            match result {
                Ok(()) => Vec::new(),
                Err(error) => {
                    tracing::debug!(error = %error, "a publish pipeline failed");
                    group.into_iter().map(|(_, topic, _)| topic).collect()
                }
            }
        }
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Runs `pipeline`, and once more if it fails: the first command on a
/// connection that died while idle fails and starts the reconnect, which
/// the second attempt waits for. A pipeline half-applied before the failure
/// is published twice; subscribers drop duplicate messages by sequence.
async fn query_with_one_retry(
    pipeline: &redis::Pipeline,
    connection: &mut RedisConnection,
) -> redis::RedisResult<()> {
    match pipeline.query_async::<()>(connection).await {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::debug!(error = %error, "PUBLISH failed; retrying once");
            pipeline.query_async::<()>(connection).await
        }
    }
}

/// Publishes a resync marker to every owed topic; they stay owed if Redis
/// still refuses.
async fn publish_owed_resyncs(shared: &Shared, connection: &RedisConnection) {
    let owed = shared.take_owed();
    if owed.is_empty() {
        return;
    }
    let now = envelope::now_ms();
    let markers: Vec<(Topic, bytes::Bytes)> = owed
        .into_iter()
        .map(|topic| {
            let marker = envelope::encode(&shared.keys, &topic, &shared.node_id, None, &[], now);
            (topic, marker)
        })
        .collect();
    let count = markers.len();
    let failed = publish_all(connection, markers, false).await;
    let sent = count - failed.len();
    if sent > 0 {
        metrics::counter!("consult_broker_resync_markers_total").increment(sent as u64);
        tracing::info!(
            topics = sent,
            "told the other nodes to resync topics whose events were lost"
        );
    }
    if !failed.is_empty() {
        tracing::debug!(topics = failed.len(), "resync markers not published yet");
        shared.owe_resync(failed);
    }
}

/// Receives the other nodes' events; `restarted` after a failed run (which
/// may have missed some: the first connection resyncs every room).
async fn run_subscriber(
    client: redis::Client,
    shared: Arc<Shared>,
    stop: CancellationToken,
    restarted: bool,
) {
    shared.healthy.store(false, Ordering::Release);
    let mut backoff = Duration::from_millis(50);
    let mut connected_before = restarted;
    loop {
        let pubsub = tokio::select! {
            result = client.get_async_pubsub() => result,
            () = stop.cancelled() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(50);
                let (mut sink, mut stream) = pubsub.split();
                let mut subscribed = HashSet::new();
                if sync_subscriptions(&shared, &mut sink, &mut subscribed)
                    .await
                    .is_ok()
                {
                    shared.healthy.store(true, Ordering::Release);
                    tracing::info!(topics = subscribed.len(), "redis subscriber connected");
                    if connected_before {
                        // Events published while we were away are in the
                        // database: let every room catch up from there.
                        shared.sink.resync();
                    }
                    connected_before = true;
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = shared.changed.notified() => {
                                if sync_subscriptions(&shared, &mut sink, &mut subscribed).await.is_err() {
                                    break;
                                }
                            }
                            message = stream.next() => match message {
                                Some(message) => deliver(&shared, &message),
                                None => break,
                            },
                        }
                    }
                }
                shared.healthy.store(false, Ordering::Release);
                shared.forget_confirmations();
                metrics::counter!("consult_broker_disconnects_total").increment(1);
                tracing::warn!("redis subscriber disconnected; serving local rooms only");
            }
            Err(error) => {
                shared.healthy.store(false, Ordering::Release);
                tracing::debug!(error = %error, "redis not reachable");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The topics this node wants subscribed (at least one subscriber each).
fn wanted_topics(shared: &Shared) -> HashSet<Topic> {
    shared
        .wanted
        .iter()
        .filter(|entry| entry.count > 0)
        .map(|entry| entry.key().clone())
        .collect()
}

/// Brings the connection's subscriptions in line with the wanted topics,
/// then confirms the waiting callers.
async fn sync_subscriptions(
    shared: &Shared,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<Topic>,
) -> redis::RedisResult<()> {
    let wanted = wanted_topics(shared);
    let to_add: Vec<String> = wanted.difference(subscribed).map(channel).collect();
    let to_remove: Vec<String> = subscribed.difference(&wanted).map(channel).collect();
    if !to_add.is_empty() {
        sink.subscribe(&to_add).await?;
    }
    if !to_remove.is_empty() {
        sink.unsubscribe(&to_remove).await?;
    }
    *subscribed = wanted;
    confirm_subscribed(shared, subscribed);
    Ok(())
}

/// Answers the callers waiting for topics now subscribed. A topic wanted
/// after the snapshot was taken is not subscribed yet: its callers wait for
/// the next round (the `changed` notification is still pending). A caller
/// that gave up (Redis was down or slow) joined without the subscription,
/// so its topic is resynced now that the subscription holds.
fn confirm_subscribed(shared: &Shared, subscribed: &HashSet<Topic>) {
    let mut abandoned = Vec::new();
    for mut entry in shared.wanted.iter_mut() {
        if !subscribed.contains(entry.key()) {
            continue;
        }
        entry.value_mut().confirmed = true;
        let mut gave_up = false;
        for waiter in entry.value_mut().waiters.drain(..) {
            gave_up |= waiter.send(()).is_err();
        }
        if gave_up {
            abandoned.push(entry.key().clone());
        }
    }
    for topic in abandoned {
        shared.sink.deliver(Arc::new(Event::resync(topic)));
    }
}

/// The Redis channel of `topic`.
fn channel(topic: &Topic) -> String {
    format!("{REDIS_CHANNEL_PREFIX}{topic}")
}

/// Authenticates one message from Redis and hands it to the hub; drops and
/// counts it if it is not an authentic envelope.
fn deliver(shared: &Shared, message: &redis::Msg) {
    deliver_payload(
        shared,
        message.get_channel_name().as_bytes(),
        message.get_payload_bytes(),
    );
}

/// [`deliver`] for a message on `channel` carrying `payload`.
fn deliver_payload(shared: &Shared, channel: &[u8], payload: &[u8]) {
    let payload = bytes::Bytes::copy_from_slice(payload);
    let opened = std::str::from_utf8(channel)
        .ok()
        .and_then(|channel| channel.strip_prefix(REDIS_CHANNEL_PREFIX))
        .ok_or(envelope::Rejection::Malformed)
        .and_then(|topic| {
            envelope::open(&shared.keys, topic, payload, envelope::now_ms())
                .map(|envelope| (topic, envelope))
        });
    let (topic, envelope) = match opened {
        Ok(opened) => opened,
        Err(rejection) => {
            reject(shared, rejection);
            return;
        }
    };
    if envelope.node == shared.node_id {
        return;
    }
    shared.sink.deliver(Arc::new(Event {
        topic: topic.into(),
        seq: envelope.seq,
        frame: envelope.frame,
    }));
}

/// Counts a dropped envelope, and logs its reason (only; never its
/// content or channel) at most once per [`REJECTION_LOG_EVERY_MS`].
fn reject(shared: &Shared, rejection: envelope::Rejection) {
    metrics::counter!("consult_broker_rejected_total", "reason" => rejection.as_str()).increment(1);
    let now = envelope::now_ms();
    let last = shared.rejection_logged_at.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= REJECTION_LOG_EVERY_MS
        && shared
            .rejection_logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            reason = rejection.as_str(),
            "dropped a broker event that is not an authentic envelope"
        );
    }
}

#[cfg(test)]
mod tests;
