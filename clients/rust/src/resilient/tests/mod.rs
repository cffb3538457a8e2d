//! The resilient client against an in-memory fake hub, under paused time:
//! resume without gap or duplicate, which closes reconnect, the backoff
//! schedule, retried sends, commands while disconnected, the dashboard,
//! keepalive and close.

mod backoff;
mod fake_hub;

use super::*;
use crate::config::ClientConfig;
use crate::connection::ClosedBy;
use consult_protocol::{ConsultationId, ErrorCode, Seq, ServerFrame};
use fake_hub::{FakeHub, Kill};
use std::time::Duration;
use tokio::time::timeout;

fn room() -> ConsultationId {
    ConsultationId::from("k1")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// No jitter, short waits, no keepalive: a schedule tests can predict.
fn config() -> ResilientConfig {
    ResilientConfig {
        client: ClientConfig::default(),
        backoff: Backoff {
            base: ms(100),
            max: ms(400),
            jitter: 0.0,
            stable_after: Duration::from_secs(10),
            max_attempts: None,
        },
        retry_timeout: Duration::from_secs(30),
        keepalive: None,
        refresh_before: None,
    }
}

async fn start(hub: &FakeHub, config: ResilientConfig) -> ResilientClient {
    let connector = hub.connector(config.client.clone());
    let (client, welcome) = ResilientClient::start(connector, config).await.unwrap();
    assert_eq!(welcome.conn_id, "n1");
    client
}

async fn next(client: &ResilientClient) -> Option<ResilientEvent> {
    timeout(Duration::from_secs(600), client.next_event())
        .await
        .expect("an event (or the end) within 600 s")
}

/// Reads events up to and including the first that `stop` accepts.
async fn until(
    client: &ResilientClient,
    stop: impl Fn(&ResilientEvent) -> bool,
) -> Vec<ResilientEvent> {
    let mut events = Vec::new();
    loop {
        let event = next(client).await.expect("events go on");
        let done = stop(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

fn message_seq(event: &ResilientEvent) -> Option<u64> {
    match event {
        ResilientEvent::Frame(ServerFrame::Message { message }) => Some(message.seq.get()),
        _ => None,
    }
}

fn seqs(events: &[ResilientEvent]) -> Vec<u64> {
    events.iter().filter_map(message_seq).collect()
}

fn is_message(seq: u64) -> impl Fn(&ResilientEvent) -> bool {
    move |event| message_seq(event) == Some(seq)
}

fn is_resumed(event: &ResilientEvent) -> bool {
    matches!(event, ResilientEvent::State(ConnectionState::Resumed(_)))
}

fn is_closed(event: &ResilientEvent) -> bool {
    matches!(event, ResilientEvent::State(ConnectionState::Closed(_)))
}

fn states(events: &[ResilientEvent]) -> Vec<&ConnectionState> {
    events
        .iter()
        .filter_map(|event| match event {
            ResilientEvent::State(state) => Some(state),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_network_drop_resumes_from_the_last_delivered_message() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    client.join(&room(), Some(Seq(0))).await.unwrap();
    for n in 1..=3 {
        hub.publish(&room(), &format!("m{n}"));
    }
    let mut events = until(&client, is_message(3)).await;

    hub.kill(Kill::Drop);
    for n in 4..=5 {
        hub.publish(&room(), &format!("m{n}"));
    }
    events.extend(until(&client, is_resumed).await);
    hub.publish(&room(), "m6");
    events.extend(until(&client, is_message(6)).await);

    assert_eq!(seqs(&events), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        hub.state().joins,
        [(room(), Some(Seq(0))), (room(), Some(Seq(3)))]
    );
    let states = states(&events);
    assert!(matches!(states[0], ConnectionState::Connected(_)));
    assert!(
        matches!(states[1], ConnectionState::Disconnected(info) if info.by == ClosedBy::Network)
    );
    assert!(matches!(
        states[2],
        ConnectionState::Reconnecting { attempt: 1, .. }
    ));
    assert!(matches!(states[3], ConnectionState::Resumed(welcome) if welcome.conn_id == "n2"));
    let rejoined = events.iter().position(
        |event| matches!(event, ResilientEvent::Rejoined { joined, .. } if joined.replayed == 2),
    );
    let replayed_5 = events.iter().position(is_message(5));
    assert!(
        replayed_5 < rejoined,
        "replayed messages come before Rejoined"
    );
    let stats = client.stats();
    assert_eq!((stats.attempts, stats.resumed), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn messages_replayed_twice_reach_the_caller_once() {
    let hub = FakeHub::default();
    hub.state().replay_overlap = 2;
    let client = start(&hub, config()).await;
    client.join(&room(), Some(Seq(0))).await.unwrap();
    for n in 1..=4 {
        hub.publish(&room(), &format!("m{n}"));
    }
    let mut events = until(&client, is_message(4)).await;
    hub.kill(Kill::Close(1001));
    hub.publish(&room(), "m5");
    events.extend(until(&client, is_resumed).await);

    assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
    assert_eq!(client.stats().duplicates_dropped, 2);
}

#[tokio::test(start_paused = true)]
async fn going_away_reconnects_but_a_refused_hello_ends_it() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    hub.kill(Kill::Close(1001));
    let events = until(&client, is_resumed).await;
    let going_away = |state: &&ConnectionState| matches!(state, ConnectionState::Disconnected(info) if info.code == Some(1001));
    assert!(states(&events).iter().any(going_away));

    hub.state().reject = true;
    hub.kill(Kill::Close(1001));
    let events = until(&client, is_closed).await;
    let Some(ConnectionState::Closed(info)) = states(&events).last().copied() else {
        panic!("no final state in {events:?}");
    };
    assert_eq!((info.by, info.code), (ClosedBy::Hub, Some(4001)), "{info}");
    assert!(next(&client).await.is_none(), "the events end");

    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(hub.state().connects, 3, "no attempt after the refusal");
    assert!(matches!(
        client.call(|c| async move { c.ping().await }).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_auth_failure_close_is_final() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    hub.kill(Kill::Close(4001));
    let info = client.closed().await;
    assert_eq!((info.by, info.code), (ClosedBy::Hub, Some(4001)));
    assert_eq!(client.stats().attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_send_whose_answer_was_lost_is_retried_and_stored_once() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    client.join(&room(), None).await.unwrap();
    hub.state().drop_on_send = true;

    let (seq, duplicate) = client.send(&room(), "m-1", "hello").await.unwrap();

    assert_eq!(
        (seq, duplicate),
        (Seq(1), true),
        "the retry found the first try"
    );
    assert_eq!(hub.state().rooms[&room()].len(), 1);
    assert_eq!(client.stats().retried_commands, 1);
    hub.publish(&room(), "after");
    let events = until(&client, is_message(2)).await;
    assert_eq!(seqs(&events), [1, 2], "the message is delivered once");
}

#[tokio::test(start_paused = true)]
async fn commands_between_connections_fail_as_retryable() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    client.join(&room(), None).await.unwrap();
    hub.state().refuse = true;
    hub.kill(Kill::Drop);
    until(&client, |event| {
        matches!(
            event,
            ResilientEvent::State(ConnectionState::Reconnecting { .. })
        )
    })
    .await;

    let ping = client.call(|c| async move { c.ping().await }).await;
    assert!(matches!(ping, Err(ClientError::Disconnected)));
    assert!(ping.unwrap_err().is_retryable());
    let other_room = ConsultationId::from("k2");
    assert!(matches!(
        client.join(&other_room, None).await,
        Err(ClientError::Disconnected)
    ));
    client.leave(&room()).await.unwrap();

    hub.state().refuse = false;
    until(&client, is_resumed).await;
    client
        .call(|c| async move { c.ping().await })
        .await
        .unwrap();
    assert_eq!(hub.state().joins, [(room(), None)], "left rooms stay left");
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_is_watched_again_after_a_reconnect_until_unwatched() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    client.watch_dashboard(None).await.unwrap();
    hub.kill(Kill::Drop);
    let events = until(&client, is_resumed).await;
    let snapshot = events
        .iter()
        .position(|event| matches!(event, ResilientEvent::DashboardSnapshot(_)));
    assert_eq!(snapshot, Some(events.len() - 2), "just before Resumed");
    assert_eq!(hub.state().watches, 2);

    client.unwatch_dashboard().await.unwrap();
    hub.kill(Kill::Drop);
    until(&client, is_resumed).await;
    assert_eq!(hub.state().watches, 2);
}

#[tokio::test(start_paused = true)]
async fn a_room_refused_on_resume_is_reported_and_forgotten() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    client.join(&room(), None).await.unwrap();
    hub.state().forbidden.insert(room());
    hub.kill(Kill::Drop);
    let events = until(&client, is_resumed).await;
    assert!(events.iter().any(|event| matches!(
        event,
        ResilientEvent::RejoinFailed {
            code: ErrorCode::Forbidden,
            ..
        }
    )));

    hub.kill(Kill::Drop);
    until(&client, is_resumed).await;
    assert_eq!(hub.state().joins.len(), 2, "not tried a third time");
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_keepalive_drops_the_connection_and_reconnects() {
    let hub = FakeHub::default();
    let config = ResilientConfig {
        client: ClientConfig {
            request_timeout: Duration::from_secs(1),
            ..ClientConfig::default()
        },
        keepalive: Some(Duration::from_secs(5)),
        ..config()
    };
    let client = start(&hub, config).await;
    hub.kill(Kill::Stall);
    let events = until(&client, is_resumed).await;
    let stale = |state: &&ConnectionState| matches!(state, ConnectionState::Disconnected(info) if info.reason.contains("keepalive"));
    assert!(states(&events).iter().any(stale), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn close_is_final_and_ends_the_events() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    let info = client.close().await;
    assert_eq!((info.by, info.code), (ClosedBy::Client, Some(1000)));
    let events = until(&client, is_closed).await;
    assert!(matches!(
        events[0],
        ResilientEvent::State(ConnectionState::Connected(_))
    ));
    assert!(next(&client).await.is_none());
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(hub.state().connects, 1);
}
