use super::*;
use tokio::sync::oneshot::error::TryRecvError;

#[derive(Default)]
struct RecordingSink {
    events: Mutex<Vec<Arc<Event>>>,
}

impl EventSink for RecordingSink {
    fn deliver(&self, event: Arc<Event>) {
        self.events.lock().unwrap().push(event);
    }

    fn resync(&self) {}
}

fn shared(sink: Arc<RecordingSink>) -> Shared {
    Shared {
        node_id: "node-a".to_owned(),
        keys: ClusterKeys::insecure_none(),
        rejection_logged_at: AtomicU64::new(0),
        sink,
        healthy: AtomicBool::new(true),
        wanted: DashMap::new(),
        changed: Notify::new(),
        owed: Mutex::new(HashSet::new()),
    }
}

fn waiting(shared: &Shared, topic: &str) -> oneshot::Receiver<()> {
    let (confirmed_tx, confirmed_rx) = oneshot::channel();
    let mut wanted = shared.wanted.entry(Topic::from(topic)).or_default();
    wanted.count += 1;
    wanted.waiters.push(confirmed_tx);
    confirmed_rx
}

#[test]
fn only_callers_of_topics_just_subscribed_are_confirmed() {
    let sink = Arc::new(RecordingSink::default());
    let shared = shared(sink.clone());
    let mut in_snapshot = waiting(&shared, "room:a");
    // Wanted while the SUBSCRIBE for room:a was in flight.
    let mut too_late = waiting(&shared, "room:b");
    confirm_subscribed(&shared, &HashSet::from([Topic::from("room:a")]));
    assert_eq!(in_snapshot.try_recv(), Ok(()));
    assert_eq!(too_late.try_recv(), Err(TryRecvError::Empty));
    assert!(sink.events.lock().unwrap().is_empty(), "nothing to resync");
}

#[test]
fn a_topic_whose_caller_gave_up_is_resynced_once_subscribed() {
    let sink = Arc::new(RecordingSink::default());
    let shared = shared(sink.clone());
    drop(waiting(&shared, "room:a"));
    let mut still_waiting = waiting(&shared, "room:b");
    confirm_subscribed(
        &shared,
        &HashSet::from([Topic::from("room:a"), Topic::from("room:b")]),
    );
    assert_eq!(still_waiting.try_recv(), Ok(()));
    let events = sink.events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(*events[0], Event::resync(Topic::from("room:a")));
}

#[tokio::test]
async fn a_topic_stays_wanted_until_every_subscribe_is_matched_by_an_unsubscribe() {
    // Nothing listens on port 1: the broker stays degraded, which is fine
    // for bookkeeping.
    let stop = CancellationToken::new();
    let broker = RedisBroker::start(
        redis::Client::open("redis://127.0.0.1:1/").unwrap(),
        "node-a".to_owned(),
        ClusterKeys::insecure_none(),
        Arc::new(RecordingSink::default()),
        stop.clone(),
        &crate::supervisor::Workers::new(),
    )
    .unwrap();
    let topic = Topic::from("room:a");
    // The last local subscriber left and a new first one arrived before
    // the first session's unsubscribe reached the broker.
    assert!(broker.subscribe(&topic).await.is_err(), "redis is down");
    assert!(broker.subscribe(&topic).await.is_err(), "redis is down");
    broker.unsubscribe(&topic);
    assert_eq!(broker.shared.wanted.get(&topic).map(|w| w.count), Some(1));
    broker.unsubscribe(&topic);
    assert!(broker.shared.wanted.get(&topic).is_none());
    stop.cancel();
}

#[test]
fn a_later_local_joiner_waits_for_the_first_ones_subscribe_to_be_confirmed() {
    let sink = Arc::new(RecordingSink::default());
    let shared = shared(sink);
    let _first = waiting(&shared, "room:a");
    let mut second = shared
        .pending_confirmation(&Topic::from("room:a"))
        .expect("not confirmed yet: the second joiner must wait");
    assert_eq!(second.try_recv(), Err(TryRecvError::Empty));
    confirm_subscribed(&shared, &HashSet::from([Topic::from("room:a")]));
    assert_eq!(second.try_recv(), Ok(()));
    assert!(
        shared
            .pending_confirmation(&Topic::from("room:a"))
            .is_none(),
        "once confirmed, a third joiner goes straight on"
    );
    shared.forget_confirmations();
    assert!(
        shared
            .pending_confirmation(&Topic::from("room:a"))
            .is_some(),
        "after a disconnect the subscription must be confirmed again"
    );
    assert!(
        shared
            .pending_confirmation(&Topic::from("room:none"))
            .is_none()
    );
}
