//! The subscriber on a Redis Cluster: sharded subscriptions (SSUBSCRIBE)
//! for the topics this node wants, each on the primary owning its
//! channel's slot, through one cluster connection whose node connections
//! deliver their RESP3 pushes to one channel.
//!
//! The subscriptions are this module's to keep, not the redis crate's: its
//! own resubscription after a topology change sends every sharded channel
//! in one SSUBSCRIBE, which a cluster refuses when they span slots. Here:
//!
//! - subscriptions and unsubscriptions are sent in one command per slot;
//! - a lost node connection (a primary killed or cut off; the crate
//!   pushes a disconnection) forgets every subscription: the node is
//!   degraded until every wanted topic is subscribed again (retried every
//!   [`RETRY`]; the cluster connection re-reads the slot map and follows
//!   MOVED and ASK redirections, so once a replica has taken over its
//!   primary's slots the SSUBSCRIBE reaches it), then the hub resyncs
//!   every room from the database, as after a single Redis reconnects;
//! - a sharded unsubscription this node did not ask for (Redis drops a
//!   channel's subscribers when its slot moves to another primary) is
//!   subscribed again at once and that topic alone resynced.

use super::{
    BrokerError, MAX_BACKOFF, Shared, Topic, Worker, Workers, channel, confirm_subscribed,
    deliver_payload, wanted_topics,
};
use crate::broker::Event;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often subscriptions that failed are tried again.
const RETRY: Duration = Duration::from_millis(250);

/// The push channel, kept across the subscriber's restarts.
type Pushes = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<PushInfo>>>;

/// Starts the supervised subscriber task.
pub(super) fn spawn_subscriber(
    client: ClusterClient,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    workers: &Arc<Workers>,
) {
    let pushes: Pushes = Arc::new(tokio::sync::Mutex::new(pushes));
    let runs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    workers.spawn(Worker::BrokerSubscriber, move || {
        let restarted = runs.fetch_add(1, Ordering::Relaxed) > 0;
        run(
            client.clone(),
            Arc::clone(&pushes),
            Arc::clone(&shared),
            stop.clone(),
            restarted,
        )
    });
}

/// What the subscriber knows of its subscriptions.
#[derive(Default)]
struct State {
    /// Topics Redis confirmed on the current node connections.
    subscribed: HashSet<Topic>,
    /// Every room must catch up once all wanted topics are subscribed
    /// (events were missed while a node connection was down).
    resync_all: bool,
    /// Topics whose subscription Redis dropped: each gets a resync marker
    /// once subscribed again.
    resync_topics: HashSet<Topic>,
}

/// Receives the other nodes' events from the cluster; `restarted` after a
/// failed run.
async fn run(
    client: ClusterClient,
    pushes: Pushes,
    shared: Arc<Shared>,
    stop: CancellationToken,
    restarted: bool,
) {
    shared.healthy.store(false, Ordering::Release);
    let mut pushes = pushes.lock().await;
    let mut backoff = Duration::from_millis(50);
    let mut connection = loop {
        let connected = tokio::select! {
            result = client.get_async_connection() => result,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok(connection) => break connection,
            Err(error) => {
                tracing::debug!(error = %error, "redis cluster not reachable");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    // Pushes of a connection an earlier run held mean nothing now.
    while pushes.try_recv().is_ok() {}
    let mut state = State {
        resync_all: restarted,
        ..State::default()
    };
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Subscriptions are compared with the wanted topics only when either
    // may have changed, never per message.
    let mut dirty = true;
    let mut synced = false;
    loop {
        if dirty {
            dirty = false;
            synced = sync(&shared, &mut connection, &mut state).await;
            let was_healthy = shared.healthy.swap(synced, Ordering::AcqRel);
            if synced && !was_healthy {
                tracing::info!(
                    topics = state.subscribed.len(),
                    "redis cluster subscriber connected"
                );
            }
            if synced && state.resync_all {
                state.resync_all = false;
                shared.sink.resync();
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = shared.changed.notified() => dirty = true,
            _ = retry.tick(), if !synced => dirty = true,
            push = pushes.recv() => match push {
                Some(push) => dirty |= on_push(&shared, &mut state, push),
                None => return,
            },
        }
        // Take whatever else arrived before syncing again.
        while let Ok(push) = pushes.try_recv() {
            dirty |= on_push(&shared, &mut state, push);
        }
    }
}

/// Handles one push from a node connection; true when the subscriptions
/// must be brought in line again.
fn on_push(shared: &Shared, state: &mut State, push: PushInfo) -> bool {
    match push.kind {
        PushKind::SMessage => {
            if let [channel, payload] = &push.data[..] {
                if let (Some(channel), Some(payload)) = (bytes_of(channel), bytes_of(payload)) {
                    deliver_payload(shared, channel, payload);
                }
            }
            false
        }
        PushKind::Disconnection => {
            // Which node went is not said: subscribe everything again (on
            // a live node a repeated SSUBSCRIBE changes nothing).
            if shared.healthy.swap(false, Ordering::AcqRel) {
                metrics::counter!("consult_broker_disconnects_total").increment(1);
                tracing::warn!(
                    "a redis cluster node connection was lost; resubscribing, serving local rooms only meanwhile"
                );
            }
            shared.forget_confirmations();
            state.subscribed.clear();
            state.resync_all = true;
            true
        }
        PushKind::SUnsubscribe => {
            // Our own SUNSUBSCRIBEs removed their topic first; a topic
            // still listed was dropped by Redis (its slot moved).
            let Some(topic) = push
                .data
                .first()
                .and_then(bytes_of)
                .and_then(|channel| std::str::from_utf8(channel).ok())
                .and_then(|channel| channel.strip_prefix(super::REDIS_CHANNEL_PREFIX))
            else {
                return false;
            };
            let topic: Topic = topic.into();
            if !state.subscribed.remove(&topic) {
                return false;
            }
            metrics::counter!("consult_broker_disconnects_total").increment(1);
            tracing::info!("redis moved a subscribed channel's slot; resubscribing");
            state.resync_topics.insert(topic);
            true
        }
        _ => false,
    }
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// Brings the subscriptions in line with the wanted topics (one command
/// per slot), confirms the waiting callers, and resyncs topics whose
/// subscription Redis had dropped. True when every wanted topic is
/// subscribed.
async fn sync(shared: &Shared, connection: &mut ClusterConnection, state: &mut State) -> bool {
    let wanted = wanted_topics(shared);
    let to_add: Vec<Topic> = wanted.difference(&state.subscribed).cloned().collect();
    let to_remove: Vec<Topic> = state.subscribed.difference(&wanted).cloned().collect();
    for topic in &to_remove {
        state.subscribed.remove(topic);
    }
    state.resync_topics.retain(|topic| wanted.contains(topic));
    let (removed, _) = per_slot(connection, "SUNSUBSCRIBE", to_remove).await;
    let (added, failed) = per_slot(connection, "SSUBSCRIBE", to_add).await;
    state.subscribed.extend(added.iter().cloned());
    if removed.len() + added.len() > 0 {
        tracing::debug!(
            added = added.len(),
            removed = removed.len(),
            "sharded subscriptions changed"
        );
    }
    confirm_subscribed(shared, &state.subscribed);
    let resubscribed: Vec<Topic> = state
        .resync_topics
        .iter()
        .filter(|topic| state.subscribed.contains(*topic))
        .cloned()
        .collect();
    for topic in resubscribed {
        state.resync_topics.remove(&topic);
        shared.sink.deliver(Arc::new(Event::resync(topic)));
    }
    failed == 0
}

/// Sends `command` for `topics`, one command per slot, concurrently; the
/// topics whose command succeeded, and how many failed.
async fn per_slot(
    connection: &ClusterConnection,
    command: &'static str,
    topics: Vec<Topic>,
) -> (Vec<Topic>, usize) {
    let keyed: Vec<(String, Topic)> = topics
        .into_iter()
        .map(|topic| (channel(&topic), topic))
        .collect();
    let groups = super::by_slot(true, keyed, |(channel, _)| channel.as_bytes());
    let sends = groups.into_iter().map(|group| {
        let mut connection = connection.clone();
        async move {
            let mut cmd = redis::cmd(command);
            for (channel, _) in &group {
                cmd.arg(channel);
            }
            let result: Result<(), BrokerError> = cmd
                .exec_async(&mut connection)
                .await
                .map_err(|error| BrokerError::Unavailable(error.to_string()));
            (group, result)
        }
    });
    let mut done = Vec::new();
    let mut failed = 0;
    for (group, result) in futures_util::future::join_all(sends).await {
        match result {
            Ok(()) => done.extend(group.into_iter().map(|(_, topic)| topic)),
            Err(error) => {
                tracing::debug!(error = %error, command, "sharded subscription failed; retrying");
                failed += group.len();
            }
        }
    }
    (done, failed)
}
