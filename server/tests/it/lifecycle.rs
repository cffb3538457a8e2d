//! Connection and hub lifecycle: graceful shutdown (flush, close 1001,
//! readiness while draining, data kept across a restart), slow consumers
//! (closed with 4003 without stalling the room), and the heartbeat (a client
//! that answers pings stays; a silent one is closed with 4002).

use crate::harness::raw::{RawSocket, Received};
use crate::harness::{CLINIC, TestHub, expect_event};
use bytes::Bytes;
use consult_client::{ClientConfig, ClosedBy};
use consult_hub::broker::Event;
use consult_hub::hub::topics;
use consult_protocol::{ChatMessage, ConsultationId, MessageKind, Role, Seq, ServerFrame, UserId};
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// A chat message frame as the publisher would encode it.
fn message_event(consultation: &ConsultationId, seq: u64) -> Arc<Event> {
    let frame = ServerFrame::Message {
        message: ChatMessage {
            consultation_id: consultation.clone(),
            seq: Seq(seq),
            sender: UserId::from("dr-a"),
            sender_role: Role::Provider,
            kind: MessageKind::Chat,
            body: format!("queued {seq}"),
            client_msg_id: None,
            sent_at: chrono::Utc::now(),
        },
    };
    Arc::new(Event {
        topic: topics::room(consultation),
        seq: Some(seq),
        frame: Bytes::from(frame.to_json()),
    })
}

/// Every message sequence number left in `client`'s events, until it closed.
async fn remaining_message_seqs(client: &consult_client::Client) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(event) = timeout(Duration::from_secs(5), client.next_event())
        .await
        .expect("the events end after the close")
    {
        if let ServerFrame::Message { message } = event {
            seqs.push(message.seq.get());
        }
    }
    seqs
}

#[tokio::test]
async fn shutdown_flushes_queued_events_then_closes_every_client_with_going_away() {
    let mut hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(&consultation.id, None).await.unwrap();
    patient.join(&consultation.id, None).await.unwrap();
    provider
        .send(&consultation.id, "m-1", "before shutdown")
        .await
        .unwrap();
    let first = expect_event(&patient, |event| match event {
        ServerFrame::Message { message } => Some(message.seq.get()),
        _ => None,
    })
    .await;
    assert_eq!(first, 1);

    // Signal shutdown, then queue events with no await in between. On this
    // single-threaded runtime the hub's run task, woken first, cancels the
    // sessions before they run, so they meet the shutdown with the events
    // still in their outbound queues (without the flush, none would arrive).
    hub.signal_shutdown();
    for seq in 2..=41 {
        let delivery = hub.state.hub.fan_out(&message_event(&consultation.id, seq));
        assert_eq!(delivery.queued, 2, "both sessions are subscribed");
    }
    hub.shutdown().await;

    for client in [&provider, &patient] {
        let info = timeout(Duration::from_secs(5), client.closed())
            .await
            .expect("closed within 5 s");
        assert_eq!(info.by, ClosedBy::Hub, "{info}");
        assert_eq!(info.code, Some(1001), "{info}");
    }
    assert_eq!(
        remaining_message_seqs(&patient).await,
        (2..=41).collect::<Vec<_>>(),
        "every queued event arrives, in order, before the close"
    );
}

#[tokio::test]
async fn stored_messages_and_status_survive_a_graceful_restart() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for i in 1..=3 {
        provider
            .send(&consultation.id, format!("m-{i}"), format!("kept {i}"))
            .await
            .unwrap();
    }
    provider.cancel(&consultation.id).await.unwrap();

    let hub = hub.restart_with(|_| {}).await;
    let closed = timeout(Duration::from_secs(5), provider.closed())
        .await
        .unwrap();
    assert_eq!(closed.code, Some(1001), "{closed}");

    let (code, page) = hub
        .api_get(&format!("/v1/consultations/{}/messages", consultation.id))
        .await;
    assert_eq!(code, 200, "{page}");
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["kept 1", "kept 2", "kept 3"]);
    let (_, view) = hub
        .api_get(&format!("/v1/consultations/{}", consultation.id))
        .await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["last_seq"], 3);

    let patient = hub.connect("pat-a", Role::Patient).await;
    let joined = patient.join(&consultation.id, Some(Seq(1))).await.unwrap();
    assert_eq!(joined.replayed, 2, "resume works against the restarted hub");
}

#[tokio::test]
async fn readiness_is_503_and_upgrades_are_refused_while_draining() {
    let mut hub = TestHub::start().await;
    // The hub stops accepting on its own listener as readiness turns off,
    // so serve the same router and state on a second listener to ask it.
    let side = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let side_addr = side.local_addr().unwrap();
    let router = consult_hub::http::router(hub.state.clone());
    tokio::spawn(async move { axum::serve(side, router).await });
    let http = reqwest::Client::new();
    let readyz = format!("http://{side_addr}/readyz");
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);

    // A tracked task stands in for a session still flushing.
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    hub.state.tracker.spawn(async move {
        let _ = release_rx.await;
    });
    hub.signal_shutdown();
    let shutdown = tokio::spawn(hub.shutdown());

    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        let response = http.get(&readyz).send().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        assert!(Instant::now() < deadline, "readiness never turned off");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (&body["status"], &body["database"], &body["broker"]),
        (&json!("draining"), &json!("ok"), &json!("healthy")),
        "{body}"
    );
    let upgrade = tokio_tungstenite::connect_async(format!("ws://{side_addr}/v1/ws")).await;
    match upgrade {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("upgrade while draining: {other:?}"),
    }
    assert!(!shutdown.is_finished(), "the drain waits for the session");

    release_tx.send(()).unwrap();
    timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finishes once the drain is released")
        .unwrap();
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4003_while_the_room_gets_everything_in_order() {
    let hub = TestHub::start_with(|config| {
        config.session.outbound_queue_capacity = 4;
        config.session.max_body_chars = 10_000;
        config.session.rate_limit_per_sec = 100_000;
        config.session.rate_limit_burst = 100_000;
    })
    .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let roomy = ClientConfig {
        events_capacity: 100_000,
        ..ClientConfig::default()
    };
    let fast = hub.connect_with("pat-a", Role::Patient, roomy).await;
    fast.join(&consultation.id, None).await.unwrap();
    let mut slow =
        RawSocket::authenticated(&hub.ws_url(), &hub.token("adm-1", Role::Admin, CLINIC)).await;
    let joined = slow
        .command(
            json!({"type": "join", "consultation_id": consultation.id}),
            "j1",
        )
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");
    let kicks_before = hub.metric("consult_slow_consumer_kicks_total").await;

    // The slow member reads nothing from here on. Send 8 KiB messages until
    // its socket buffers and then its 4-frame queue fill, then a few more.
    let body = "x".repeat(8 * 1024);
    let mut sent = 0u64;
    let mut rounds_after_kick = None;
    while rounds_after_kick != Some(0) {
        for _ in 0..8 {
            sent += 1;
            provider
                .send(&consultation.id, format!("m-{sent}"), &body)
                .await
                .unwrap();
        }
        rounds_after_kick = match rounds_after_kick {
            Some(rounds) => Some(rounds - 1),
            None if hub.metric("consult_slow_consumer_kicks_total").await > kicks_before => Some(2),
            None => None,
        };
        assert!(sent < 4_000, "no kick after {sent} messages of 8 KiB");
    }
    let kicks = hub.metric("consult_slow_consumer_kicks_total").await - kicks_before;

    // Reading again lets the blocked write finish and the close through.
    let mut slow_seqs = Vec::new();
    let close = loop {
        match slow.recv().await {
            Received::Json(frame) if frame["type"] == "message" => {
                slow_seqs.push(frame["message"]["seq"].as_u64().unwrap());
            }
            Received::Json(_) => {}
            Received::Closed(code) => break code,
        }
    };
    assert_eq!(close, Some(4003), "closed as a slow consumer");
    let got = slow_seqs.len() as u64;
    assert!(got < sent, "the slow member missed the tail");
    assert_eq!(
        slow_seqs,
        (1..=got).collect::<Vec<_>>(),
        "what it got has no gap, so it can resume from its last seq"
    );
    assert_eq!(kicks, 1.0, "one slow connection, one kick");

    let mut fast_seqs = Vec::new();
    while (fast_seqs.len() as u64) < sent {
        let seq = expect_event(&fast, |event| match event {
            ServerFrame::Message { message } => Some(message.seq.get()),
            _ => None,
        })
        .await;
        fast_seqs.push(seq);
    }
    assert_eq!(fast_seqs, (1..=sent).collect::<Vec<_>>());
    assert!(
        fast.close_info().is_none(),
        "the fast member stays connected"
    );
    fast.ping().await.unwrap();
}

/// Heartbeat every second, idle after two.
fn quick_heartbeat(config: &mut consult_hub::Config) {
    config.session.heartbeat_interval_secs = 1;
    config.session.idle_timeout_secs = 2;
}

#[tokio::test]
async fn a_client_that_answers_pings_outlives_the_idle_timeout() {
    let hub = TestHub::start_with(quick_heartbeat).await;
    let mut socket =
        RawSocket::authenticated(&hub.ws_url(), &hub.token("pat-a", Role::Patient, CLINIC)).await;

    // Keep reading, so tungstenite answers each ping, for well past 2 s.
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_millis(3_500);
    while let Ok(next) = timeout_at(deadline, socket.stream.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("only pings expected, got {other:?}"),
        }
    }
    assert!(pings >= 2, "the hub pings every second; saw {pings}");
    let pong = socket.command(json!({"type": "ping"}), "p1").await;
    assert_eq!(pong["type"], "ok", "{pong}");
}

#[tokio::test]
async fn a_silent_client_is_closed_for_idleness() {
    let hub = TestHub::start_with(quick_heartbeat).await;
    let mut socket =
        RawSocket::authenticated(&hub.ws_url(), &hub.token("pat-a", Role::Patient, CLINIC)).await;
    let closes_before = hub.metrics_text().await;

    // Not polling the socket at all means no pong ever goes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(socket.recv_close().await, Some(4002));
    let closes_after = hub.metrics_text().await;
    let idle_closes =
        |text: &str| crate::harness::metric(text, "consult_session_closes_total{code=\"4002\"}");
    assert_eq!(
        idle_closes(&closes_after) - idle_closes(&closes_before),
        1.0
    );
}

#[tokio::test]
async fn readiness_turns_503_on_the_real_listener_before_it_stops_accepting() {
    let mut hub = TestHub::start_with(|config| config.shutdown.unready_grace_ms = 1_500).await;
    let (status, _) = hub.api_get("/readyz").await;
    assert_eq!(status, 200);
    hub.signal_shutdown();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut seen = Vec::new();
    loop {
        let response = hub.http.get(hub.url("/readyz")).send().await;
        let status = response
            .expect("still accepting during the grace")
            .status()
            .as_u16();
        seen.push(status);
        if status == 503 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(seen.last(), Some(&503), "{seen:?}");
}
