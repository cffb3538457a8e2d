//! The broker conformance suite: the same scenarios against
//! `Broker::Local`, `Broker::Redis` on one real redis-server, and
//! `Broker::Redis` on a real Redis Cluster (three primaries, three
//! replicas; sharded pub/sub), then what only a cluster transport must do —
//! carry events to the other nodes that subscribe, in order, never back to
//! their publisher, and recover after Redis comes back (a single Redis
//! restarted, or a cluster primary killed and replaced by its replica, or
//! a slot moved to another primary); on a cluster, the documented ACL user
//! is all a node needs.
//!
//! Each node's sink records what the broker hands it. A "settle" step proves
//! that nothing more is on its way instead of sleeping: for Redis, a peer
//! node first receives everything this node published, then publishes a
//! marker; Redis delivers to each subscriber connection in the order it
//! processed the PUBLISHes, so when the marker reaches this node, any echo of
//! its own events would already have arrived.

use crate::harness::cluster::cluster_keys;
use crate::harness::redis::RedisServer;
use crate::harness::redis_cluster::{RedisCluster, admin};
use bytes::Bytes;
use consult_hub::broker::{
    Broker, BrokerHealth, Event, EventSink, LocalBroker, REDIS_CHANNEL_PREFIX, RedisBroker,
    RedisConnection, Topic, redis_cluster_clients,
};
use consult_hub::config::{BrokerConfig, BrokerKind};
use consult_hub::domain::PersonKey;
use consult_hub::presence::{Presence, RedisPresence};
use consult_hub::supervisor::Workers;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Longest wait for one expected event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Records every event and resync the broker hands this node.
struct RecordingSink {
    events_tx: mpsc::UnboundedSender<Arc<Event>>,
    resyncs: AtomicUsize,
}

impl EventSink for RecordingSink {
    fn deliver(&self, event: Arc<Event>) {
        self.events_tx.send(event).unwrap();
    }

    fn resync(&self) {
        self.resyncs.fetch_add(1, Ordering::SeqCst);
    }
}

/// One node: a broker and what its sink received.
struct Node {
    broker: Broker,
    sink: Arc<RecordingSink>,
    events_rx: mpsc::UnboundedReceiver<Arc<Event>>,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn sink() -> (Arc<RecordingSink>, mpsc::UnboundedReceiver<Arc<Event>>) {
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let sink = Arc::new(RecordingSink {
        events_tx,
        resyncs: AtomicUsize::new(0),
    });
    (sink, events_rx)
}

impl Node {
    fn local() -> Self {
        let (sink, events_rx) = sink();
        Self {
            broker: Broker::Local(LocalBroker::new(sink.clone())),
            sink,
            events_rx,
            stop: CancellationToken::new(),
        }
    }

    /// A Redis node named `name` on `backend`, once its subscriber is
    /// connected.
    async fn redis(backend: &Backend, name: &str) -> Self {
        let (sink, events_rx) = sink();
        let stop = CancellationToken::new();
        let broker = backend.broker(name, sink.clone(), stop.clone());
        let node = Self {
            broker: Broker::Redis(broker),
            sink,
            events_rx,
            stop,
        };
        node.wait_for_health(BrokerHealth::Healthy).await;
        node
    }

    async fn wait_for_health(&self, wanted: BrokerHealth) {
        timeout(EVENT_TIMEOUT, async {
            while self.broker.health() != wanted {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("broker health became {wanted:?} within {EVENT_TIMEOUT:?}"));
    }

    async fn subscribe(&self, topic: &Topic) {
        self.broker.subscribe(topic).await.expect("subscribed");
    }

    async fn publish(&self, event: &Event) {
        self.broker.publish(event.clone());
    }

    async fn next_event(&mut self) -> Arc<Event> {
        timeout(EVENT_TIMEOUT, self.events_rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("the sink lives")
    }

    fn nothing_more(&mut self) {
        if let Ok(event) = self.events_rx.try_recv() {
            panic!("unexpected event {event:?}");
        }
    }
}

/// The Redis a test runs against: one server, or a cluster.
enum Backend {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Backend {
    async fn single() -> Self {
        Self::Single(RedisServer::start().await)
    }

    async fn cluster() -> Self {
        Self::Cluster(RedisCluster::start().await)
    }

    /// A broker on this backend, its events handed to `sink`.
    fn broker(&self, name: &str, sink: Arc<RecordingSink>, stop: CancellationToken) -> RedisBroker {
        match self {
            Self::Single(server) => RedisBroker::start(
                redis::Client::open(server.url()).unwrap(),
                name.to_owned(),
                cluster_keys(),
                sink,
                stop,
                &Workers::new(),
            )
            .expect("a connection manager"),
            Self::Cluster(cluster) => cluster_broker(&cluster.urls(), name, sink, stop),
        }
    }

    /// Subscribers of `topic`'s channel: `PUBSUB NUMSUB` on a single Redis,
    /// `PUBSUB SHARDNUMSUB` summed over the live nodes of a cluster.
    async fn subscribers(&self, topic: &Topic) -> u64 {
        let channel = format!("{REDIS_CHANNEL_PREFIX}{topic}");
        let (urls, command) = match self {
            Self::Single(server) => (vec![server.url()], "NUMSUB"),
            Self::Cluster(cluster) => (cluster.urls(), "SHARDNUMSUB"),
        };
        let mut total = 0;
        for url in urls {
            if let Ok(counts) =
                admin::<Vec<(String, u64)>>(&url, &["PUBSUB", command, &channel]).await
            {
                total += counts.first().map_or(0, |(_, count)| *count);
            }
        }
        total
    }
}

/// A broker on the Redis Cluster reached through `urls`.
fn cluster_broker(
    urls: &[String],
    name: &str,
    sink: Arc<RecordingSink>,
    stop: CancellationToken,
) -> RedisBroker {
    cluster_broker_with(&cluster_config(urls), name, sink, stop)
}

/// The broker settings of a node of the Redis Cluster reached through
/// `urls`.
fn cluster_config(urls: &[String]) -> BrokerConfig {
    BrokerConfig {
        kind: BrokerKind::RedisCluster,
        cluster_urls: urls.to_vec(),
        ..BrokerConfig::default()
    }
}

/// A broker on the Redis Cluster `config` names.
fn cluster_broker_with(
    config: &BrokerConfig,
    name: &str,
    sink: Arc<RecordingSink>,
    stop: CancellationToken,
) -> RedisBroker {
    RedisBroker::start_cluster(
        redis_cluster_clients(config).unwrap(),
        name.to_owned(),
        cluster_keys(),
        sink,
        stop,
        &Workers::new(),
    )
}

fn topic(name: &str) -> Topic {
    Topic::from(name)
}

/// An event whose frame exercises the envelope: newlines and non-ASCII.
fn event(topic: &Topic, seq: Option<u64>, body: &str) -> Event {
    let frame = serde_json::json!({ "type": "message", "body": body, "seq": seq }).to_string();
    Event {
        topic: topic.clone(),
        seq,
        frame: Bytes::from(format!("{frame}\n\u{00e9}\u{1F600}\n")),
    }
}

/// A node under test and, for Redis, a peer node on the same backend.
struct Fixture {
    node: Node,
    peer: Option<Node>,
    _backend: Option<Backend>,
}

impl Fixture {
    fn local() -> Self {
        Self {
            node: Node::local(),
            peer: None,
            _backend: None,
        }
    }

    async fn redis(backend: Backend) -> Self {
        Self {
            node: Node::redis(&backend, "node-a").await,
            peer: Some(Node::redis(&backend, "node-b").await),
            _backend: Some(backend),
        }
    }

    /// Subscribes the node (and the peer) to `topic`.
    async fn subscribe(&self, topic: &Topic) {
        self.node.subscribe(topic).await;
        if let Some(peer) = &self.peer {
            peer.subscribe(topic).await;
        }
    }

    /// Proves the node's sink will get nothing more from what it published
    /// on `topic` (`published`, in order); see the module docs.
    async fn settle(&mut self, topic: &Topic, published: &[Event]) {
        if let Some(peer) = self.peer.as_mut() {
            for expected in published {
                assert_eq!(*peer.next_event().await, *expected, "the peer gets it");
            }
            let marker = event(topic, None, "settle marker");
            peer.publish(&marker).await;
            assert_eq!(*peer.next_event().await, marker);
            assert_eq!(
                *self.node.next_event().await,
                marker,
                "nothing but the marker reaches the publishing node"
            );
        }
        self.node.nothing_more();
    }
}

// ------------------------------------------------------------ both brokers

async fn published_event_reaches_this_nodes_sink_once_unchanged(mut fixture: Fixture) {
    let room = topic("room:c-1");
    fixture.subscribe(&room).await;
    let with_seq = event(&room, Some(7), "with a seq");
    let without_seq = event(&room, None, "typing, no seq");
    fixture.node.publish(&with_seq).await;
    fixture.node.publish(&without_seq).await;
    assert_eq!(*fixture.node.next_event().await, with_seq);
    assert_eq!(*fixture.node.next_event().await, without_seq);
    fixture.settle(&room, &[with_seq, without_seq]).await;
}

#[tokio::test]
async fn local_published_event_reaches_this_nodes_sink_once_with_identical_bytes_and_seq() {
    published_event_reaches_this_nodes_sink_once_unchanged(Fixture::local()).await;
}

#[tokio::test]
async fn redis_published_event_reaches_this_nodes_sink_once_with_identical_bytes_and_seq() {
    published_event_reaches_this_nodes_sink_once_unchanged(
        Fixture::redis(Backend::single().await).await,
    )
    .await;
}

#[tokio::test]
async fn redis_cluster_published_event_reaches_this_nodes_sink_once_with_identical_bytes_and_seq() {
    published_event_reaches_this_nodes_sink_once_unchanged(
        Fixture::redis(Backend::cluster().await).await,
    )
    .await;
}

async fn subscribe_and_unsubscribe_succeed_while_healthy(fixture: Fixture) {
    let broker = &fixture.node.broker;
    assert_eq!(broker.health(), BrokerHealth::Healthy);
    let room = topic("room:c-1");
    let feed = topic("feed:clinic:clinic-1");
    broker.subscribe(&room).await.expect("subscribe");
    broker.subscribe(&feed).await.expect("subscribe another");
    assert_eq!(broker.health(), BrokerHealth::Healthy);
    broker.unsubscribe(&room).await.expect("unsubscribe");
    broker
        .unsubscribe(&feed)
        .await
        .expect("unsubscribe another");
    broker.subscribe(&room).await.expect("subscribe again");
    assert_eq!(broker.health(), BrokerHealth::Healthy);
}

#[tokio::test]
async fn local_subscribe_and_unsubscribe_succeed_and_health_is_healthy() {
    subscribe_and_unsubscribe_succeed_while_healthy(Fixture::local()).await;
}

#[tokio::test]
async fn redis_subscribe_and_unsubscribe_succeed_and_health_is_healthy() {
    subscribe_and_unsubscribe_succeed_while_healthy(Fixture::redis(Backend::single().await).await)
        .await;
}

#[tokio::test]
async fn redis_cluster_subscribe_and_unsubscribe_succeed_and_health_is_healthy() {
    subscribe_and_unsubscribe_succeed_while_healthy(Fixture::redis(Backend::cluster().await).await)
        .await;
}

// ------------------------------------------------------------- Redis only

async fn events_reach_another_node_only_while_it_is_subscribed(backend: Backend) {
    let node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let room = topic("room:c-1");
    // A control topic B always hears: A's events reach B's subscriber
    // connection in publish order, so a control event bounds the wait.
    let control = topic("room:control");
    node_b.subscribe(&control).await;

    let before = event(&room, Some(1), "before B subscribed");
    let marker = event(&control, None, "marker 1");
    node_a.publish(&before).await;
    node_a.publish(&marker).await;
    assert_eq!(*node_b.next_event().await, marker, "nothing before it");

    node_b.subscribe(&room).await;
    let during = event(&room, Some(2), "while B is subscribed");
    node_a.publish(&during).await;
    assert_eq!(*node_b.next_event().await, during);

    node_b.broker.unsubscribe(&room).await.unwrap();
    timeout(EVENT_TIMEOUT, async {
        while backend.subscribers(&room).await > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("Redis drops B's subscription");
    let after = event(&room, Some(3), "after B unsubscribed");
    let marker = event(&control, None, "marker 2");
    node_a.publish(&after).await;
    node_a.publish(&marker).await;
    assert_eq!(*node_b.next_event().await, marker, "nothing before it");
    node_b.nothing_more();
}

#[tokio::test]
async fn redis_events_reach_another_node_only_while_it_is_subscribed() {
    events_reach_another_node_only_while_it_is_subscribed(Backend::single().await).await;
}

#[tokio::test]
async fn redis_cluster_events_reach_another_node_only_while_it_is_subscribed() {
    events_reach_another_node_only_while_it_is_subscribed(Backend::cluster().await).await;
}

async fn a_node_never_gets_its_own_events_back(backend: Backend) {
    let mut node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let room = topic("room:c-1");
    node_a.subscribe(&room).await;
    node_b.subscribe(&room).await;
    let events: Vec<Event> = (1..=5)
        .map(|seq| event(&room, Some(seq), "from A"))
        .collect();
    for event in &events {
        node_a.publish(event).await;
    }
    for expected in &events {
        assert_eq!(*node_a.next_event().await, *expected, "delivered locally");
    }
    for expected in &events {
        assert_eq!(*node_b.next_event().await, *expected, "carried to B");
    }
    let reply = event(&room, None, "from B");
    node_b.publish(&reply).await;
    assert_eq!(*node_b.next_event().await, reply);
    assert_eq!(
        *node_a.next_event().await,
        reply,
        "A's own events, published before, were skipped"
    );
    node_a.nothing_more();
    node_b.nothing_more();
}

#[tokio::test]
async fn redis_a_node_never_gets_its_own_events_back() {
    a_node_never_gets_its_own_events_back(Backend::single().await).await;
}

#[tokio::test]
async fn redis_cluster_a_node_never_gets_its_own_events_back() {
    a_node_never_gets_its_own_events_back(Backend::cluster().await).await;
}

async fn a_burst_of_1000_events_arrives_at_another_node_in_publish_order(backend: Backend) {
    let mut node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;
    let events: Vec<Event> = (1..=1000)
        .map(|seq| event(&room, Some(seq), &format!("burst {seq}")))
        .collect();
    for event in &events {
        node_a.publish(event).await;
    }
    for expected in &events {
        assert_eq!(*node_a.next_event().await, *expected, "local, in order");
    }
    for expected in &events {
        assert_eq!(*node_b.next_event().await, *expected, "remote, in order");
    }
    node_a.nothing_more();
}

#[tokio::test]
async fn redis_a_burst_of_1000_events_arrives_at_another_node_in_publish_order() {
    a_burst_of_1000_events_arrives_at_another_node_in_publish_order(Backend::single().await).await;
}

#[tokio::test]
async fn redis_cluster_a_burst_of_1000_events_arrives_at_another_node_in_publish_order() {
    a_burst_of_1000_events_arrives_at_another_node_in_publish_order(Backend::cluster().await).await;
}

/// `subscribe` returning `Ok` is the promise the join's replay relies on:
/// from then on, no remote event for the topic is missed. Subscriptions that
/// arrive while an earlier SUBSCRIBE is in flight must not be confirmed by
/// it.
async fn subscribe_returns_only_once_redis_has_the_subscription(backend: Backend) {
    let backend = Arc::new(backend);
    let node = Node::redis(&backend, "node-a").await;
    let mut tasks = Vec::new();
    for index in 0..100 {
        let broker = node.broker.clone();
        let backend = Arc::clone(&backend);
        tasks.push(tokio::spawn(async move {
            let topic = topic(&format!("room:c-{index}"));
            broker.subscribe(&topic).await.expect("subscribed");
            let subscribers = backend.subscribers(&topic).await;
            (topic, subscribers)
        }));
        // Stagger the calls so that some land mid-SUBSCRIBE.
        if index % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut unconfirmed = Vec::new();
    for task in tasks {
        let (topic, subscribers) = task.await.unwrap();
        if subscribers == 0 {
            unconfirmed.push(topic);
        }
    }
    assert!(
        unconfirmed.is_empty(),
        "subscribe returned before Redis had {unconfirmed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_subscribe_returns_only_once_redis_has_the_subscription() {
    subscribe_returns_only_once_redis_has_the_subscription(Backend::single().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_subscribe_returns_only_once_redis_has_the_subscription() {
    subscribe_returns_only_once_redis_has_the_subscription(Backend::cluster().await).await;
}

#[tokio::test]
async fn redis_health_degrades_while_redis_is_down_and_a_reconnect_resyncs_and_resubscribes() {
    let mut backend = Backend::single().await;
    let node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let Backend::Single(server) = &mut backend else {
        unreachable!("a single server")
    };
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;
    let before = event(&room, Some(1), "before the outage");
    node_a.publish(&before).await;
    assert_eq!(*node_b.next_event().await, before);
    let resyncs_before = node_b.sink.resyncs.load(Ordering::SeqCst);

    server.kill();
    node_a.wait_for_health(BrokerHealth::Degraded).await;
    node_b.wait_for_health(BrokerHealth::Degraded).await;
    let local_only = event(&room, Some(2), "while Redis is down");
    node_b.publish(&local_only).await;
    assert_eq!(
        *node_b.next_event().await,
        local_only,
        "local delivery does not need Redis"
    );

    server.restart().await;
    node_a.wait_for_health(BrokerHealth::Healthy).await;
    node_b.wait_for_health(BrokerHealth::Healthy).await;
    timeout(EVENT_TIMEOUT, async {
        while node_b.sink.resyncs.load(Ordering::SeqCst) == resyncs_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sink is told to catch up from the database");
    timeout(EVENT_TIMEOUT, async {
        while redis_subscribers(server, &room).await == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("B resubscribes after the reconnect");
    let after = event(&room, Some(3), "after the restart");
    node_a.publish(&after).await;
    assert_eq!(*node_b.next_event().await, after, "events flow again");
}

/// Subscribers of `topic` on a single Redis, as `PUBSUB NUMSUB` counts
/// them.
async fn redis_subscribers(server: &RedisServer, topic: &Topic) -> u64 {
    let channel = format!("{REDIS_CHANNEL_PREFIX}{topic}");
    let counts: Vec<(String, u64)> = admin(&server.url(), &["PUBSUB", "NUMSUB", &channel])
        .await
        .unwrap();
    counts.first().map_or(0, |(_, count)| *count)
}

/// Runs one command on `server` as an administrator would.
async fn redis_admin(server: &RedisServer, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(&mut connection).await.unwrap()
}

/// How many commands Redis has refused for lack of permission.
async fn refused_commands(server: &RedisServer) -> u64 {
    let redis::Value::BulkString(info) = redis_admin(server, &["INFO", "errorstats"]).await else {
        return 0;
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|line| line.strip_prefix("errorstat_NOPERM:count="))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// Redis refuses this node's PUBLISH (here: an ACL) while the other nodes'
/// subscriptions stay up, so their reconnect resync never happens; the
/// publisher itself must tell them to catch up once Redis takes its
/// commands again.
#[tokio::test]
async fn redis_events_that_could_not_be_published_are_followed_by_a_resync_marker() {
    let backend = Backend::single().await;
    let Backend::Single(server) = &backend else {
        unreachable!("a single server")
    };
    let mut node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;

    redis_admin(server, &["ACL", "SETUSER", "default", "-publish"]).await;
    let lost = event(&room, Some(1), "refused by redis");
    node_a.publish(&lost).await;
    assert_eq!(*node_a.next_event().await, lost, "delivered locally");
    timeout(EVENT_TIMEOUT, async {
        // The first attempt and its retry.
        while refused_commands(server).await < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("redis refuses the PUBLISH");
    redis_admin(server, &["ACL", "SETUSER", "default", "+publish"]).await;

    let marker = node_b.next_event().await;
    assert!(marker.is_resync(), "a resync marker, not {marker:?}");
    assert_eq!(marker.topic, room);
    let after = event(&room, Some(2), "after redis accepts again");
    node_a.publish(&after).await;
    assert_eq!(*node_b.next_event().await, after);
    node_b.nothing_more();
}

/// A node that starts while Redis is down serves rooms joined meanwhile
/// locally; once Redis is up it must subscribe them and resync them, or
/// whatever other nodes published before then is lost to them.
#[tokio::test]
async fn redis_a_node_started_while_redis_is_down_subscribes_and_resyncs_once_it_is_up() {
    let mut server = RedisServer::start().await;
    server.kill();
    let (sink, mut events_rx) = sink();
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let broker = Broker::Redis(
        RedisBroker::start(
            redis::Client::open(server.url()).unwrap(),
            "node-b".to_owned(),
            cluster_keys(),
            sink.clone(),
            stop,
            &Workers::new(),
        )
        .unwrap(),
    );
    let room = topic("room:c-1");
    let started = tokio::time::Instant::now();
    assert!(broker.subscribe(&room).await.is_err(), "Redis is down");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a join is not held up waiting for an unreachable Redis"
    );
    assert_eq!(broker.health(), BrokerHealth::Degraded);

    server.restart().await;
    let marker = timeout(EVENT_TIMEOUT, events_rx.recv())
        .await
        .expect("the room is resynced once Redis is up")
        .unwrap();
    assert_eq!(*marker, Event::resync(room.clone()));
    assert!(
        redis_subscribers(&server, &room).await > 0,
        "subscribed before the resync"
    );
    assert_eq!(broker.health(), BrokerHealth::Healthy);
}

mod cluster;
