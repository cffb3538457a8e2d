//! What only a Redis Cluster must do beyond the shared scenarios: follow a
//! killed primary to its replica, a slot moved to another primary, and a
//! cluster that was down when the node started, resubscribing and
//! resyncing each time; subscribe topics sharing a slot together; and run
//! with nothing but the documented ACL user.

use super::*;

/// Reads `node`'s events until `wanted` arrives; on the way, only the
/// events in `allowed` (published while the transport was failing over,
/// each delivered at most once) and resync markers of its topic may come.
async fn until_event(node: &mut Node, wanted: &Event, allowed: &[Event]) {
    let mut seen = Vec::new();
    loop {
        let event = timeout(Duration::from_secs(15), node.events_rx.recv())
            .await
            .expect("the event within 15 s")
            .expect("the sink lives");
        if *event == *wanted {
            return;
        }
        if event.is_resync() {
            assert_eq!(event.topic, wanted.topic, "a resync marker of the topic");
            continue;
        }
        assert!(allowed.contains(&event), "unexpected event {event:?}");
        assert!(!seen.contains(&event), "delivered twice: {event:?}");
        seen.push(event);
    }
}

/// A primary killed mid-traffic: its replica takes over the slot; the
/// subscriber sees its node connection go, reports itself degraded,
/// subscribes again on the new primary and resyncs every room (what was
/// published meanwhile is read back from the database); events flow again.
#[tokio::test]
async fn redis_cluster_a_killed_primary_is_replaced_and_the_subscriber_resubscribes_and_resyncs() {
    let mut backend = Backend::cluster().await;
    let node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;
    let before = event(&room, Some(1), "before the failover");
    node_a.publish(&before).await;
    assert_eq!(*node_b.next_event().await, before);
    let resyncs_before = node_b.sink.resyncs.load(Ordering::SeqCst);

    let channel = format!("{REDIS_CHANNEL_PREFIX}{room}");
    let Backend::Cluster(cluster) = &mut backend else {
        unreachable!("a cluster")
    };
    let dead = cluster.kill_primary_of(&channel).await;
    let during: Vec<Event> = (2..=5)
        .map(|seq| event(&room, Some(seq), "during the failover"))
        .collect();
    for event in &during {
        node_a.publish(event).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_for_failover(&channel, dead).await;

    timeout(Duration::from_secs(15), async {
        while node_b.sink.resyncs.load(Ordering::SeqCst) == resyncs_before
            || node_b.broker.health() != BrokerHealth::Healthy
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("B resubscribes on the new primary and resyncs");
    assert!(
        backend.subscribers(&room).await > 0,
        "subscribed on the new primary"
    );
    let after = event(&room, Some(6), "after the failover");
    node_a.publish(&after).await;
    until_event(&mut node_b, &after, &during).await;
}

/// Resharding: a channel's slot moves to another primary, which drops the
/// channel's subscribers on the old one; the subscriber subscribes again on
/// the new owner (following MOVED) and resyncs that topic, and events flow
/// again.
#[tokio::test]
async fn redis_cluster_a_moved_slot_is_subscribed_again_on_its_new_primary_and_resynced() {
    let backend = Backend::cluster().await;
    let node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;
    let before = event(&room, Some(1), "before the move");
    node_a.publish(&before).await;
    assert_eq!(*node_b.next_event().await, before);

    let Backend::Cluster(cluster) = &backend else {
        unreachable!("a cluster")
    };
    cluster
        .move_slot_of(&format!("{REDIS_CHANNEL_PREFIX}{room}"))
        .await;
    let marker = node_b.next_event().await;
    assert_eq!(
        *marker,
        Event::resync(room.clone()),
        "the moved topic resyncs"
    );
    let after = event(&room, Some(2), "after the move");
    node_a.publish(&after).await;
    assert_eq!(*node_b.next_event().await, after, "events flow again");
    node_b.nothing_more();
}

/// A node that starts while the whole cluster is down serves rooms joined
/// meanwhile locally; once the cluster is back it subscribes them and
/// resyncs them, and its publisher reaches the cluster too.
#[tokio::test]
async fn redis_cluster_a_node_started_while_the_cluster_is_down_subscribes_and_resyncs_once_it_is_up()
 {
    let mut backend = Backend::cluster().await;
    let Backend::Cluster(cluster) = &mut backend else {
        unreachable!("a cluster")
    };
    cluster.kill_all();
    let (sink, mut events_rx) = sink();
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let broker = Broker::Redis(cluster_broker(&cluster.urls(), "node-b", sink, stop));
    let room = topic("room:c-1");
    let started = tokio::time::Instant::now();
    assert!(
        broker.subscribe(&room).await.is_err(),
        "the cluster is down"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a join is not held up waiting for an unreachable cluster"
    );
    assert_eq!(broker.health(), BrokerHealth::Degraded);

    cluster.restart_all().await;
    let marker = timeout(Duration::from_secs(15), events_rx.recv())
        .await
        .expect("the room is resynced once the cluster is up")
        .unwrap();
    assert_eq!(*marker, Event::resync(room.clone()));
    assert!(
        backend.subscribers(&room).await > 0,
        "subscribed before the resync"
    );
    assert_eq!(broker.health(), BrokerHealth::Healthy);

    let mut node_a = Node::redis(&backend, "node-a").await;
    node_a.subscribe(&room).await;
    let from_b = event(&room, Some(1), "from the node started while down");
    broker.publish(from_b.clone());
    assert_eq!(
        *events_rx.recv().await.unwrap(),
        from_b,
        "delivered locally"
    );
    assert_eq!(
        *node_a.next_event().await,
        from_b,
        "and through the cluster"
    );
}

/// The rights of the hub's user on a cluster, as docs/operations.md
/// grants them: the single-Redis rights, sharded pub/sub, and what the
/// cluster client needs to find its way.
const CLUSTER_ACL_RULES: &str = "resetchannels &consult:* resetkeys ~presence:* \
    ~consult:node:* ~consult:nodes -@all +publish +subscribe +unsubscribe +hset +hdel +hgetall \
    +pexpire +set +get +del +zadd +zremrangebyscore +zrangebyscore +zmscore +zrem +spublish \
    +ssubscribe +sunsubscribe +cluster|slots +readonly +ping";

#[test]
fn the_documented_cluster_acl_is_the_one_tested() {
    let operations = include_str!("../../../../docs/operations.md");
    let line = format!("user consult-hub on >PASSWORD {CLUSTER_ACL_RULES}");
    assert!(
        operations.contains(&line),
        "docs/operations.md lacks {line}"
    );
}

/// Events and presence on a cluster through a user with only the documented
/// rights: sharded pub/sub, the node claim, the live set and one person's
/// hash-tagged presence key.
#[tokio::test]
async fn redis_cluster_the_documented_acl_is_all_a_node_needs() {
    let backend = Backend::cluster().await;
    let Backend::Cluster(cluster) = &backend else {
        unreachable!("a cluster")
    };
    for url in cluster.urls() {
        let mut args = vec![
            "ACL",
            "SETUSER",
            "consult-hub",
            "on",
            ">cluster-hub-password",
        ];
        args.extend(CLUSTER_ACL_RULES.split_whitespace());
        let _: () = admin(&url, &args).await.unwrap();
    }
    let mut config = cluster_config(&cluster.urls());
    config.redis_username = Some("consult-hub".to_owned());
    config.redis_password = Some(secrecy::SecretString::from(
        "cluster-hub-password".to_owned(),
    ));
    let node = |name: &str| {
        let (sink, events_rx) = sink();
        let stop = CancellationToken::new();
        let broker = cluster_broker_with(&config, name, sink.clone(), stop.clone());
        Node {
            broker: Broker::Redis(broker),
            sink,
            events_rx,
            stop,
        }
    };
    let node_a = node("node-a");
    let mut node_b = node("node-b");
    node_a.wait_for_health(BrokerHealth::Healthy).await;
    node_b.wait_for_health(BrokerHealth::Healthy).await;
    let room = topic("room:c-1");
    node_b.subscribe(&room).await;
    let sent = event(&room, Some(1), "through the limited user");
    node_a.publish(&sent).await;
    assert_eq!(*node_b.next_event().await, sent);

    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let presence = |name: &str| {
        let clients = redis_cluster_clients(&config).unwrap();
        let connection = RedisConnection::Cluster(
            clients
                .commands
                .get_pending_async_connection_with_config(Default::default()),
        );
        RedisPresence::start(
            connection,
            name,
            Duration::from_millis(3_000),
            Duration::ZERO,
            stop.clone(),
            &Workers::new(),
        )
    };
    let (here, there) = (presence("node-a"), presence("node-b"));
    here.claim_node_id().await.expect("the node id is claimed");
    let patient = PersonKey::new(&"clinic-1".into(), &"pat-a".into());
    let (here, there) = (Presence::Redis(here), Presence::Redis(there));
    here.connected(&patient, true).await;
    timeout(EVENT_TIMEOUT, async {
        while !there.status(&patient).await.foreground {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the other node sees the patient in the foreground");
    assert!(!here.node_id_in_use_elsewhere());
}

/// Topics whose channels share a slot are subscribed (and unsubscribed) in
/// one command; each is confirmed and carries its own events.
#[tokio::test]
async fn redis_cluster_topics_sharing_a_slot_are_subscribed_together() {
    let backend = Backend::cluster().await;
    let node_a = Node::redis(&backend, "node-a").await;
    let mut node_b = Node::redis(&backend, "node-b").await;
    // `{c}` is the hash tag of all three channels: one slot.
    let topics: Vec<Topic> = ["room:{c}1", "room:{c}2", "room:{c}3"]
        .into_iter()
        .map(topic)
        .collect();
    let subscribed =
        futures_util::future::join_all(topics.iter().map(|topic| node_b.broker.subscribe(topic)))
            .await;
    assert!(subscribed.iter().all(Result::is_ok), "{subscribed:?}");
    for topic in &topics {
        assert!(backend.subscribers(topic).await > 0, "{topic} subscribed");
    }
    let events: Vec<Event> = topics
        .iter()
        .map(|topic| event(topic, Some(1), "one per topic"))
        .collect();
    for event in &events {
        node_a.publish(event).await;
    }
    for expected in &events {
        assert_eq!(*node_b.next_event().await, *expected);
    }
    let unsubscribed = futures_util::future::join_all(
        topics[..2]
            .iter()
            .map(|topic| node_b.broker.unsubscribe(topic)),
    )
    .await;
    assert!(unsubscribed.iter().all(Result::is_ok));
    timeout(EVENT_TIMEOUT, async {
        while backend.subscribers(&topics[0]).await + backend.subscribers(&topics[1]).await > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both unsubscribed");
    let last = event(&topics[2], Some(2), "still subscribed");
    node_a.publish(&last).await;
    assert_eq!(*node_b.next_event().await, last);
    assert!(node_b.broker.health() == BrokerHealth::Healthy);
}
