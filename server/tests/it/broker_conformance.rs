//! The broker conformance suite: the same scenarios against
//! `Broker::Local` and `Broker::Redis` (one real redis-server), then what
//! only a cluster transport must do — carry events to the other nodes that
//! subscribe, in order, never back to their publisher, and recover after
//! Redis comes back.
//!
//! Each node's sink records what the broker hands it. A "settle" step proves
//! that nothing more is on its way instead of sleeping: for Redis, a peer
//! node first receives everything this node published, then publishes a
//! marker; Redis delivers to each subscriber connection in the order it
//! processed the PUBLISHes, so when the marker reaches this node, any echo of
//! its own events would already have arrived.

use crate::harness::cluster::cluster_keys;
use crate::harness::redis::RedisServer;
use bytes::Bytes;
use consult_hub::broker::{
    Broker, BrokerHealth, Event, EventSink, LocalBroker, REDIS_CHANNEL_PREFIX, RedisBroker, Topic,
};
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

    /// A Redis node named `name`, once its subscriber is connected.
    async fn redis(server: &RedisServer, name: &str) -> Self {
        let (sink, events_rx) = sink();
        let stop = CancellationToken::new();
        let broker = RedisBroker::start(
            redis::Client::open(server.url()).unwrap(),
            name.to_owned(),
            cluster_keys(),
            sink.clone(),
            stop.clone(),
            &Workers::new(),
        )
        .expect("a connection manager");
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

/// A node under test and, for Redis, a peer node on the same server.
struct Fixture {
    node: Node,
    peer: Option<Node>,
    _server: Option<RedisServer>,
}

impl Fixture {
    fn local() -> Self {
        Self {
            node: Node::local(),
            peer: None,
            _server: None,
        }
    }

    async fn redis() -> Self {
        let server = RedisServer::start().await;
        Self {
            node: Node::redis(&server, "node-a").await,
            peer: Some(Node::redis(&server, "node-b").await),
            _server: Some(server),
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
    published_event_reaches_this_nodes_sink_once_unchanged(Fixture::redis().await).await;
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
    subscribe_and_unsubscribe_succeed_while_healthy(Fixture::redis().await).await;
}

// ------------------------------------------------------------- Redis only

/// Subscribers of `topic` in Redis, as `PUBSUB NUMSUB` counts them.
async fn redis_subscribers(server: &RedisServer, topic: &Topic) -> u64 {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("{REDIS_CHANNEL_PREFIX}{topic}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    counts.first().map_or(0, |(_, count)| *count)
}

#[tokio::test]
async fn redis_events_reach_another_node_only_while_it_is_subscribed() {
    let server = RedisServer::start().await;
    let node_a = Node::redis(&server, "node-a").await;
    let mut node_b = Node::redis(&server, "node-b").await;
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
        while redis_subscribers(&server, &room).await > 0 {
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
async fn redis_a_node_never_gets_its_own_events_back() {
    let server = RedisServer::start().await;
    let mut node_a = Node::redis(&server, "node-a").await;
    let mut node_b = Node::redis(&server, "node-b").await;
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
async fn redis_a_burst_of_1000_events_arrives_at_another_node_in_publish_order() {
    let server = RedisServer::start().await;
    let mut node_a = Node::redis(&server, "node-a").await;
    let mut node_b = Node::redis(&server, "node-b").await;
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

/// `subscribe` returning `Ok` is the promise the join's replay relies on:
/// from then on, no remote event for the topic is missed. Subscriptions that
/// arrive while an earlier SUBSCRIBE is in flight must not be confirmed by
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_subscribe_returns_only_once_redis_has_the_subscription() {
    let server = RedisServer::start().await;
    let node = Node::redis(&server, "node-a").await;
    let url = server.url();
    let mut tasks = Vec::new();
    for index in 0..100 {
        let broker = node.broker.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let topic = topic(&format!("room:c-{index}"));
            broker.subscribe(&topic).await.expect("subscribed");
            let client = redis::Client::open(url).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(format!("{REDIS_CHANNEL_PREFIX}{topic}"))
                .query_async(&mut connection)
                .await
                .unwrap();
            (topic, counts[0].1)
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

#[tokio::test]
async fn redis_health_degrades_while_redis_is_down_and_a_reconnect_resyncs_and_resubscribes() {
    let mut server = RedisServer::start().await;
    let node_a = Node::redis(&server, "node-a").await;
    let mut node_b = Node::redis(&server, "node-b").await;
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
        while redis_subscribers(&server, &room).await == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("B resubscribes after the reconnect");
    let after = event(&room, Some(3), "after the restart");
    node_a.publish(&after).await;
    assert_eq!(*node_b.next_event().await, after, "events flow again");
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
    let server = RedisServer::start().await;
    let mut node_a = Node::redis(&server, "node-a").await;
    let mut node_b = Node::redis(&server, "node-b").await;
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;

    redis_admin(&server, &["ACL", "SETUSER", "default", "-publish"]).await;
    let lost = event(&room, Some(1), "refused by redis");
    node_a.publish(&lost).await;
    assert_eq!(*node_a.next_event().await, lost, "delivered locally");
    timeout(EVENT_TIMEOUT, async {
        // The first attempt and its retry.
        while refused_commands(&server).await < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("redis refuses the PUBLISH");
    redis_admin(&server, &["ACL", "SETUSER", "default", "+publish"]).await;

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
