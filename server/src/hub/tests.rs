use super::*;
use bytes::Bytes;

fn subscriber(
    conn_id: u64,
    user: &str,
    capacity: usize,
) -> (Subscriber, mpsc::Receiver<Arc<Event>>) {
    let (outbound_tx, outbound_rx) = mpsc::channel(capacity);
    (
        Subscriber {
            conn_id,
            user: UserId::from(user),
            role: Role::Patient,
            outbound_tx,
            slow_consumer: CancellationToken::new(),
            admitted: true,
        },
        outbound_rx,
    )
}

fn event(topic: &str, seq: u64) -> Arc<Event> {
    Arc::new(Event {
        topic: topic.into(),
        seq: Some(seq),
        frame: Bytes::from(format!("{{\"seq\":{seq}}}")),
    })
}

#[test]
fn every_subscriber_gets_the_same_bytes() {
    let hub = Hub::new();
    let (a, mut a_rx) = subscriber(1, "a", 4);
    let (b, mut b_rx) = subscriber(2, "b", 4);
    assert!(hub.subscribe("room:1".into(), a));
    assert!(!hub.subscribe("room:1".into(), b));
    let delivery = hub.fan_out(&event("room:1", 1));
    assert_eq!(
        delivery,
        Delivery {
            queued: 2,
            kicked: 0
        }
    );
    let first = a_rx.try_recv().unwrap();
    let second = b_rx.try_recv().unwrap();
    assert!(Arc::ptr_eq(&first, &second));
}

#[test]
fn slow_consumer_is_kicked_without_stalling_the_room() {
    let hub = Hub::new();
    let (slow, _slow_rx) = subscriber(1, "slow", 1);
    let slow_token = slow.slow_consumer.clone();
    let (fast, mut fast_rx) = subscriber(2, "fast", 8);
    hub.subscribe("room:1".into(), slow);
    hub.subscribe("room:1".into(), fast);
    hub.fan_out(&event("room:1", 1));
    let second = hub.fan_out(&event("room:1", 2));
    assert_eq!(second.kicked, 1);
    assert!(slow_token.is_cancelled());
    let third = hub.fan_out(&event("room:1", 3));
    assert_eq!(third.kicked, 0, "a kicked subscriber is counted once");
    assert_eq!(fast_rx.try_recv().unwrap().seq, Some(1));
    assert_eq!(fast_rx.try_recv().unwrap().seq, Some(2));
}

#[test]
fn unsubscribe_reports_the_last_local_subscriber() {
    let hub = Hub::new();
    let (a, _a_rx) = subscriber(1, "a", 1);
    let (b, _b_rx) = subscriber(2, "b", 1);
    hub.subscribe("room:1".into(), a);
    hub.subscribe("room:1".into(), b);
    assert!(!hub.unsubscribe("room:1", 1));
    assert!(hub.unsubscribe("room:1", 2));
    assert_eq!(hub.topic_count(), 0);
}

#[test]
fn members_lists_each_user_once() {
    let hub = Hub::new();
    let (a1, _r1) = subscriber(1, "a", 1);
    let (a2, _r2) = subscriber(2, "a", 1);
    hub.subscribe("room:1".into(), a1);
    hub.subscribe("room:1".into(), a2);
    assert_eq!(hub.members("room:1").len(), 1);
    assert_eq!(hub.connections_of("room:1", &UserId::from("a")), 2);
}

#[test]
fn events_for_other_topics_go_nowhere() {
    let hub = Hub::new();
    let (a, mut a_rx) = subscriber(1, "a", 1);
    hub.subscribe("room:1".into(), a);
    assert_eq!(hub.fan_out(&event("room:2", 1)).queued, 0);
    assert!(a_rx.try_recv().is_err());
}

#[test]
fn a_subscriber_not_yet_admitted_gets_events_but_is_no_member() {
    let hub = Hub::new();
    let (member, _member_rx) = subscriber(1, "dr", 4);
    let (mut joining, mut joining_rx) = subscriber(2, "pat", 4);
    joining.admitted = false;
    hub.subscribe("room:1".into(), member);
    hub.subscribe("room:1".into(), joining);
    assert_eq!(hub.fan_out(&event("room:1", 1)).queued, 2);
    assert_eq!(joining_rx.try_recv().unwrap().seq, Some(1));
    let users = |hub: &Hub| -> Vec<String> {
        hub.members("room:1")
            .into_iter()
            .map(|member| member.user.to_string())
            .collect()
    };
    assert_eq!(users(&hub), ["dr"]);
    assert_eq!(hub.connections_of("room:1", &UserId::from("pat")), 0);

    hub.admit("room:1", 2);
    assert_eq!(users(&hub), ["dr", "pat"]);
    assert_eq!(hub.connections_of("room:1", &UserId::from("pat")), 1);
}
