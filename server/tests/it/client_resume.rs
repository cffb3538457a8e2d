//! The Rust SDK's `ResilientClient` against the real hub: after a network
//! drop (a TCP proxy cuts every connection) and after a graceful restart
//! (close 1001, new hub on the same database), it reconnects, resumes every
//! room from the last message delivered and watches the dashboard again;
//! messages arrive exactly once and in order while others keep sending,
//! and sends retried across the drop are stored once. A token the hub
//! refuses on reconnect ends it for good.

use crate::harness::proxy::TcpProxy;
use crate::harness::{CLINIC, TestHub};
use consult_client::{
    Backoff, ClientError, ClosedBy, ConnectionState, ResilientClient, ResilientConfig,
    ResilientEvent,
};
use consult_hub::Config;
use consult_protocol::{ConsultationId, Role, Seq, ServerFrame};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::timeout;

/// Messages the provider sends in each test.
const TOTAL: u64 = 40;

/// The hub's WebSocket URL through `proxy`.
fn ws_url(proxy: &TcpProxy) -> String {
    format!("ws://{}/v1/ws", proxy.addr())
}

/// Quick reconnects, so the tests spend their time on the hub.
fn resilient_config() -> ResilientConfig {
    ResilientConfig {
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(500),
            ..Backoff::default()
        },
        ..ResilientConfig::default()
    }
}

/// The provider sends faster than the default rate limit allows.
fn generous_limits(config: &mut Config) {
    config.session.rate_limit_per_sec = 10_000;
    config.session.rate_limit_burst = 10_000;
}

async fn connect(hub: &TestHub, proxy: &TcpProxy, user: &str, role: Role) -> ResilientClient {
    let token = hub.token(user, role, CLINIC);
    ResilientClient::connect(ws_url(proxy), token, resilient_config())
        .await
        .expect("connects")
        .0
}

/// What the patient saw.
#[derive(Debug, Default)]
struct Received {
    seqs: Vec<u64>,
    states: Vec<ConnectionState>,
}

/// Moments the test's other futures wait for.
#[derive(Debug, Default)]
struct Signals {
    /// The patient has message 10.
    at_ten: Notify,
    /// The patient's connection dropped.
    dropped: Notify,
}

/// Reads the patient's events until it has message `last` and has resumed.
async fn receive(patient: &ResilientClient, last: u64, signals: &Signals) -> Received {
    let mut received = Received::default();
    let mut resumed = false;
    while received.seqs.last() != Some(&last) || !resumed {
        let event = timeout(Duration::from_secs(20), patient.next_event())
            .await
            .unwrap_or_else(|_| panic!("stalled after {received:?}"))
            .expect("the patient's client stays open");
        match event {
            ResilientEvent::Frame(ServerFrame::Message { message }) => {
                received.seqs.push(message.seq.get());
                if message.seq == Seq(10) {
                    signals.at_ten.notify_one();
                }
            }
            ResilientEvent::State(state) => {
                match state {
                    ConnectionState::Disconnected(_) => signals.dropped.notify_one(),
                    ConnectionState::Resumed(_) => resumed = true,
                    _ => {}
                }
                received.states.push(state);
            }
            _ => {}
        }
    }
    received
}

/// Sends messages `range` with client message ids `m-<n>`.
async fn send_range(
    provider: &ResilientClient,
    id: &ConsultationId,
    range: std::ops::RangeInclusive<u64>,
) {
    for n in range {
        provider
            .send(id, format!("m-{n}"), format!("message {n}"))
            .await
            .unwrap_or_else(|error| panic!("send {n}: {error}"));
    }
}

/// Every stored message's seq and client message id, oldest first.
async fn stored(hub: &TestHub, id: &ConsultationId) -> Vec<(u64, String)> {
    let reader = hub.connect("dr-a", Role::Provider).await;
    let (messages, has_more) = reader.history(id, None, Some(200)).await.unwrap();
    assert!(!has_more);
    messages
        .into_iter()
        .map(|m| (m.seq.get(), m.client_msg_id.unwrap_or_default()))
        .collect()
}

fn expected() -> Vec<(u64, String)> {
    (1..=TOTAL).map(|n| (n, format!("m-{n}"))).collect()
}

#[tokio::test]
async fn a_network_drop_is_resumed_with_no_gap_and_no_duplicate() {
    let hub = TestHub::start_with(generous_limits).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let proxy = TcpProxy::start(hub.addr).await;
    let provider = connect(&hub, &proxy, "dr-a", Role::Provider).await;
    let patient = connect(&hub, &proxy, "pat-a", Role::Patient).await;
    patient.join(&consultation.id, Some(Seq(0))).await.unwrap();

    let signals = Signals::default();
    let cut_then_send = async {
        send_range(&provider, &consultation.id, 1..=20).await;
        signals.at_ten.notified().await;
        proxy.cut();
        // Both clients are down now: these sends wait for the reconnect.
        send_range(&provider, &consultation.id, 21..=TOTAL).await;
    };
    let ((), received) = tokio::join!(cut_then_send, receive(&patient, TOTAL, &signals));

    assert_eq!(received.seqs, (1..=TOTAL).collect::<Vec<_>>());
    let dropped = |state: &ConnectionState| matches!(state, ConnectionState::Disconnected(info) if info.by == ClosedBy::Network);
    assert!(received.states.iter().any(dropped), "{:?}", received.states);
    assert!(matches!(
        received.states.last(),
        Some(ConnectionState::Resumed(_))
    ));
    assert_eq!(patient.stats().resumed, 1);
    assert_eq!(stored(&hub, &consultation.id).await, expected());
}

#[tokio::test]
async fn a_graceful_restart_is_followed_to_the_new_hub_and_resumed() {
    let hub = TestHub::start_with(generous_limits).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let proxy = TcpProxy::start(hub.addr).await;
    let provider = connect(&hub, &proxy, "dr-a", Role::Provider).await;
    let patient = connect(&hub, &proxy, "pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    let listed = provider.watch_dashboard(None).await.unwrap();
    assert_eq!(listed.len(), 1);

    let signals = Signals::default();
    let restart_while_sending = async {
        send_range(&provider, &consultation.id, 1..=20).await;
        signals.at_ten.notified().await;
        let restart = async {
            let hub = hub.restart_with(generous_limits).await;
            proxy.retarget(hub.addr);
            hub
        };
        // Sent while the hub restarts: they wait for the provider's resume.
        let send_during = async {
            signals.dropped.notified().await;
            send_range(&provider, &consultation.id, 21..=TOTAL).await;
        };
        tokio::join!(restart, send_during).0
    };
    let (hub, received) = tokio::join!(restart_while_sending, receive(&patient, TOTAL, &signals));

    assert_eq!(received.seqs, (1..=TOTAL).collect::<Vec<_>>());
    let going_away = |state: &ConnectionState| matches!(state, ConnectionState::Disconnected(info) if info.code == Some(1001));
    assert!(
        received.states.iter().any(going_away),
        "{:?}",
        received.states
    );
    assert_eq!(stored(&hub, &consultation.id).await, expected());
    let snapshot = timeout(Duration::from_secs(10), async {
        loop {
            match provider.next_event().await {
                Some(ResilientEvent::DashboardSnapshot(entries)) => return entries,
                Some(_) => {}
                None => panic!("the provider's client closed"),
            }
        }
    })
    .await
    .expect("the dashboard is watched again after the restart");
    assert_eq!(snapshot.len(), 1);
}

#[tokio::test]
async fn a_token_refused_on_reconnect_ends_the_client_for_good() {
    let hub = TestHub::start().await;
    let proxy = TcpProxy::start(hub.addr).await;
    let good = hub.token("pat-a", Role::Patient, CLINIC);
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let tokens = move || {
        let call = {
            let mut calls = counted.lock().unwrap();
            *calls += 1;
            *calls
        };
        let token = if call == 1 {
            good.clone()
        } else {
            "forged".to_owned()
        };
        async move { Ok::<_, ClientError>(token) }
    };
    let (patient, _) = ResilientClient::connect(ws_url(&proxy), tokens, resilient_config())
        .await
        .unwrap();

    proxy.cut();
    let info = timeout(Duration::from_secs(10), patient.closed())
        .await
        .unwrap();

    assert_eq!((info.by, info.code), (ClosedBy::Hub, Some(4001)), "{info}");
    assert!(info.reason.starts_with("invalid_token"), "{info}");
    // `closed` resolves once the supervisor has stopped for good.
    assert_eq!(*calls.lock().unwrap(), 2, "no attempt after the refusal");
    assert_eq!(patient.stats().attempts, 1);
}
