//! Attack tests: a hostile or buggy client against the real hub. Each test
//! states the guarantee it holds.

use crate::harness::providers::{FakeProviders, register_device};
use crate::harness::raw::RawSocket;
use crate::harness::{CLINIC, TestHub};
use consult_client::ClientError;
use consult_hub::config::RateLimit;
use consult_protocol::{AlertChannel, DevicePlatform, ErrorCode, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Padding that makes each written frame a few KiB, so that the hub has
/// unread bytes when it closes.
const PAD: &str = concat!(
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
);

/// What a client that is busy writing reads once it turns to reading: it
/// writes for [`WRITING`] (or until the write fails), then reads every text
/// frame and the close code (`None` when the connection was reset instead of
/// closed).
async fn read_after_writing(socket: RawSocket) -> (Vec<Value>, Option<u16>) {
    read_after_writing_commands(socket, |id| json!({"type": "ping", "id": id, "pad": PAD})).await
}

/// As [`read_after_writing`], writing `command(id)` each time (ids `w-1`,
/// `w-2`, …).
async fn read_after_writing_commands(
    socket: RawSocket,
    command: impl Fn(String) -> Value,
) -> (Vec<Value>, Option<u16>) {
    let RawSocket { mut stream } = socket;
    let started = tokio::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < WRITING {
        i += 1;
        let frame = command(format!("w-{i}")).to_string();
        if stream.send(Message::text(frame)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut frames = Vec::new();
    let code = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a frame or the close within 10 s");
        match next {
            Some(Ok(Message::Text(text))) => {
                frames.push(serde_json::from_str(&text).expect("hub sends JSON"));
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    (frames, code)
}

/// How long the client writes before it reads; well past the moment the
/// hub closes it, well under [`consult_hub::session::socket::CLOSE_DRAIN`].
const WRITING: Duration = Duration::from_millis(500);

/// The guarantee every attack here keeps: meanwhile an honest provider and
/// patient on connections of their own connect, join, and the patient gets
/// the provider's message within a second of its sending. `tag` keeps their
/// ids apart from the attacker's.
async fn an_honest_client_is_served(hub: &TestHub, tag: &str) {
    let started = tokio::time::Instant::now();
    let provider_id = format!("dr-honest-{tag}");
    let patient_id = format!("pat-honest-{tag}");
    let consultation = hub
        .consultation(&provider_id, &patient_id, "waiting_for_patient")
        .await;
    let provider = hub.connect(&provider_id, Role::Provider).await;
    let patient = hub.connect(&patient_id, Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    let sent_at = tokio::time::Instant::now();
    provider
        .send(
            &consultation.id,
            "honest-1",
            "I am running 10 minutes behind",
        )
        .await
        .unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match patient.next_event().await {
                Some(consult_protocol::ServerFrame::Message { message })
                    if message.client_msg_id.as_deref() == Some("honest-1") =>
                {
                    break;
                }
                Some(_) => {}
                None => panic!("the honest patient's connection closed"),
            }
        }
    })
    .await;
    assert!(
        delivered.is_ok(),
        "the honest patient did not get the message within 1 s of its sending"
    );
    assert!(
        sent_at.duration_since(started) < Duration::from_secs(5),
        "connecting and joining took {:?}",
        sent_at.duration_since(started)
    );
}

#[tokio::test]
async fn a_client_still_writing_when_rate_limited_reads_every_answer_and_close_4004() {
    let hub = TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 1;
        config.session.rate_limit_burst = 3;
        config.session.rate_limit_strikes = 2;
    })
    .await;
    let token = hub.token("dr-a", Role::Provider, CLINIC);
    let socket = RawSocket::authenticated(&hub.ws_url(), &token).await;

    let (frames, code) = read_after_writing(socket).await;

    assert_eq!(code, Some(4004), "answers before the close: {frames:?}");
    let kinds: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap_or(""),
                f["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("ok", "w-1"),
            ("ok", "w-2"),
            ("ok", "w-3"),
            ("error", "w-4"),
            ("error", "w-5"),
        ],
        "{frames:?}"
    );
    for refusal in &frames[3..] {
        assert_eq!(refusal["code"], "rate_limited", "{refusal}");
    }
    an_honest_client_is_served(&hub, "rate").await;
}

/// As above, with answers too large for the client's receive buffer: they
/// are still on the hub's side when it closes, and only the close
/// handshake (the hub reads on until the client's close frame) lets them
/// through; closing the connection at once would reset it and lose them.
#[tokio::test]
async fn a_client_with_a_small_receive_buffer_still_writing_when_rate_limited_reads_every_large_answer()
 {
    let hub = TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 1;
        config.session.rate_limit_burst = 3;
        config.session.rate_limit_strikes = 2;
    })
    .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let sender = hub.connect("pat-a", Role::Patient).await;
    // Within the test hub's burst of three commands.
    for i in 0..3 {
        sender
            .send(&consultation.id, format!("long-{i}"), "😀".repeat(4000))
            .await
            .unwrap();
    }
    let mut socket = RawSocket::connect_with_receive_buffer(hub.addr, 4096).await;
    let token = hub.token("dr-a", Role::Provider, CLINIC);
    socket
        .send_json(json!({"type": "hello", "token": token}))
        .await;
    assert_eq!(socket.recv_json().await["type"], "welcome");

    // Each answer is a 48 KB history page.
    let id = consultation.id.to_string();
    let (frames, code) = read_after_writing_commands(
        socket,
        |command_id| json!({"type": "history", "id": command_id, "consultation_id": id}),
    )
    .await;

    assert_eq!(
        code,
        Some(4004),
        "{} answers before the close",
        frames.len()
    );
    let answered: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap_or(""),
                f["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            ("ok", "w-1"),
            ("ok", "w-2"),
            ("ok", "w-3"),
            ("error", "w-4"),
            ("error", "w-5"),
        ]
    );
    for page in &frames[..3] {
        assert_eq!(page["result"]["messages"].as_array().map(Vec::len), Some(3));
    }
    an_honest_client_is_served(&hub, "rate-large").await;
}

#[tokio::test]
async fn a_client_still_writing_before_hello_reads_every_refusal_and_close_4001() {
    let hub = TestHub::start().await;
    let socket = RawSocket::connect(&hub.ws_url()).await;

    let (frames, code) = read_after_writing(socket).await;

    assert_eq!(code, Some(4001), "answers before the close: {frames:?}");
    assert_eq!(frames.len(), 10, "{frames:?}");
    for (i, refusal) in frames.iter().enumerate() {
        assert_eq!(refusal["code"], "hello_required", "{refusal}");
        assert_eq!(refusal["id"], format!("w-{}", i + 1), "{refusal}");
    }
    an_honest_client_is_served(&hub, "prehello").await;
}

#[tokio::test]
async fn a_patient_keeps_only_its_newest_devices_and_an_alert_reaches_just_those() {
    let fake = FakeProviders::start().await;
    let hub = fake
        .hub(|config| {
            config.notify.max_devices_per_patient = 3;
            config.notify.device_registration_limit = RateLimit {
                max: 100,
                window_secs: 600,
            };
        })
        .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    for index in 1..=5 {
        patient
            .register_device(DevicePlatform::Fcm, format!("fcm-{index}"), true)
            .await
            .unwrap();
        // Registration times must differ for "newest" to mean something.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    patient.close().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let sent = provider
        .alert(
            &consultation.id,
            "Please open the app.",
            &[AlertChannel::Push],
            "a-1",
        )
        .await
        .unwrap();
    assert_eq!(sent.notifications.len(), 3, "{:?}", sent.notifications);
    let mut tokens: Vec<String> = fake
        .wait_for_pushes(3)
        .await
        .into_iter()
        .map(|push| push.token)
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["fcm-3", "fcm-4", "fcm-5"]);
    an_honest_client_is_served(&hub, "devices").await;
}

#[tokio::test]
async fn device_registrations_beyond_the_limit_are_rate_limited_and_the_connection_lives() {
    let hub = TestHub::start_with(|config| {
        config.notify.device_registration_limit = RateLimit {
            max: 3,
            window_secs: 600,
        };
    })
    .await;
    hub.consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    for index in 1..=3 {
        patient
            .register_device(DevicePlatform::Apns, format!("apns-{index}"), true)
            .await
            .unwrap();
    }
    match patient
        .register_device(DevicePlatform::Apns, "apns-4", true)
        .await
    {
        Err(ClientError::Command { code, .. }) => assert_eq!(code, ErrorCode::RateLimited),
        other => panic!("a fourth registration: {other:?}"),
    }
    patient.ping().await.unwrap();
    // Another patient's registrations are counted apart.
    hub.consultation("dr-a", "pat-b", "waiting_for_patient")
        .await;
    let other = hub.connect("pat-b", Role::Patient).await;
    other
        .register_device(DevicePlatform::Apns, "apns-b", true)
        .await
        .unwrap();
    an_honest_client_is_served(&hub, "registrations").await;
}

/// The upgrade answer of a WebSocket connect: `Ok(())` when it upgraded,
/// else the HTTP status and the JSON body.
async fn upgrade_refusal(hub: &TestHub) -> Result<RawSocket, (u16, Value)> {
    match tokio_tungstenite::connect_async(hub.ws_url()).await {
        Ok((stream, _)) => Ok(RawSocket { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(other) => panic!("connect failed: {other}"),
    }
}

/// A connection that sends half a request, or nothing, is closed once the
/// header read timeout passes: it cannot hold a descriptor for ever.
#[tokio::test]
async fn half_sent_and_silent_http_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::start_with(|config| config.http.header_read_timeout_secs = 1).await;
    let address = hub.url("").trim_start_matches("http://").to_owned();
    let started = tokio::time::Instant::now();
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    an_honest_client_is_served(&hub, "slowloris").await;
    for (name, stream) in [("half-sent", &mut half), ("silent", &mut silent)] {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("the hub keeps a {name} connection open"));
        // Closed: end of stream (possibly after a 408), or a reset.
        if let Ok(bytes) = read {
            let text = String::from_utf8_lossy(&buffer[..bytes]);
            assert!(bytes == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    // A whole request on a fresh connection is still answered.
    let (status, _) = hub.api_get("/healthz").await;
    assert_eq!(status, 200);
}

/// Past the node's connection cap an upgrade is answered 503 with a JSON
/// code, health checks still answer, and a closed connection frees its
/// place.
#[tokio::test]
async fn past_the_connection_cap_upgrades_get_503_and_health_checks_still_answer() {
    let hub = TestHub::start_with(|config| config.http.max_connections = 2).await;
    let first = upgrade_refusal(&hub).await.expect("first connection");
    let _second = upgrade_refusal(&hub).await.expect("second connection");
    let (status, body) = upgrade_refusal(&hub)
        .await
        .err()
        .expect("the third is refused");
    assert_eq!(status, 503);
    assert_eq!(body["code"], "too_many_connections", "{body}");
    assert_eq!(hub.api_get("/healthz").await.0, 200);
    assert_eq!(hub.api_get("/readyz").await.0, 200);
    let metrics = hub.metrics_text().await;
    assert!(
        metrics.contains("consult_connections_refused_total{code=\"too_many_connections\"} 1"),
        "{metrics}"
    );
    drop(first);
    // The closed connection's place comes back once its session ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match upgrade_refusal(&hub).await {
            Ok(_) => break,
            Err((status, _)) => {
                assert_eq!(status, 503);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One address may hold only so many connections (when configured); the
/// next gets 429 with a JSON code.
#[tokio::test]
async fn past_the_per_address_cap_upgrades_get_429() {
    let hub = TestHub::start_with(|config| config.http.max_connections_per_ip = 1).await;
    let _first = upgrade_refusal(&hub).await.expect("first connection");
    let (status, body) = upgrade_refusal(&hub)
        .await
        .err()
        .expect("the second is refused");
    assert_eq!(status, 429);
    assert_eq!(body["code"], "too_many_connections_from_address", "{body}");
}

/// A history page of long messages larger than the connection's write
/// ceiling used to drop the socket (`Write buffer is full`); it is now cut
/// to what fits, with `has_more`, and paging returns every message.
#[tokio::test]
async fn a_history_page_larger_than_the_write_ceiling_is_cut_not_dropped() {
    let hub = TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 1000;
        config.session.rate_limit_burst = 1000;
    })
    .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let body = "😀".repeat(4000);
    for i in 0..70 {
        provider
            .send(&consultation.id, format!("long-{i}"), body.clone())
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let (page, more) = provider
            .history(&consultation.id, before, Some(200))
            .await
            .expect("the page arrives and the connection stays open");
        pages += 1;
        assert!(!page.is_empty());
        before = page.first().map(|m| m.seq);
        seqs.splice(0..0, page.iter().map(|m| m.seq.get()));
        if !more {
            break;
        }
    }
    assert!(pages > 1, "70 messages of 16 KB do not fit one page");
    assert_eq!(seqs, (1..=70).collect::<Vec<_>>());
    provider.ping().await.expect("still connected");
    an_honest_client_is_served(&hub, "history").await;
}

/// One user may hold only so many connections on a node (a stolen token
/// cannot open thousands): past the cap its `hello` gets
/// `too_many_connections` and close 4007, other users are served, and a
/// closed connection frees its place.
#[tokio::test]
async fn past_the_per_user_cap_hello_gets_too_many_connections_and_4007() {
    let hub = TestHub::start_with(|config| config.http.max_connections_per_user = 2).await;
    let token = hub.token("dr-a", Role::Provider, CLINIC);
    let first = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let _second = RawSocket::authenticated(&hub.ws_url(), &token).await;
    let mut third = RawSocket::connect(&hub.ws_url()).await;
    let answer = third.hello(&token).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "too_many_connections", "{answer}");
    assert_eq!(third.recv_close().await, Some(4007));
    an_honest_client_is_served(&hub, "per-user").await;
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = RawSocket::connect(&hub.ws_url()).await;
        let answer = again.hello(&token).await;
        if answer["type"] == "welcome" {
            break;
        }
        assert_eq!(answer["code"], "too_many_connections", "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A provider's templates are bounded in text as well as in number, so that
/// `list_templates` always fits in one answer: past 128 KiB the next save is
/// `invalid_value`, and the list still arrives on an open connection.
#[tokio::test]
async fn templates_are_bounded_in_text_so_the_list_always_arrives() {
    let hub = TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 1000;
        config.session.rate_limit_burst = 1000;
    })
    .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    // 16,000 bytes of JSON each: 8 fit in 128 KiB.
    let body = "😀".repeat(4000);
    let mut saved = 0;
    let refusal = loop {
        match provider
            .save_template(None, None, format!("Long {saved}"), body.clone(), None)
            .await
        {
            Ok(_) => saved += 1,
            Err(error) => break error,
        }
        assert!(saved <= 50, "the count limit was reached first");
    };
    assert_eq!(saved, 8, "128 KiB of 16 KB templates");
    match refusal {
        ClientError::Command { code, message } => {
            assert_eq!(code, ErrorCode::InvalidValue);
            assert!(message.contains("128 KiB"), "{message}");
        }
        other => panic!("expected invalid_value, got {other:?}"),
    }
    // Shorter text still fits beside them.
    provider
        .save_template(None, None, "Short", "Running 5 minutes late.", None)
        .await
        .unwrap();
    let templates = provider
        .list_templates(None)
        .await
        .expect("the list arrives and the connection stays open");
    assert_eq!(
        templates
            .iter()
            .filter(|template| template.provider_id.is_some())
            .count(),
        9
    );
    an_honest_client_is_served(&hub, "templates").await;
}

/// An answer that still would not fit in what the connection may buffer is
/// refused with `answer_too_large` for that command; the connection stays
/// open and the next command is answered.
#[tokio::test]
async fn an_answer_larger_than_the_connection_may_buffer_is_refused_not_dropped() {
    // A 4 KiB frame limit: the connection buffers at most 16 KiB and an
    // answer may hold 12 KiB.
    let hub = TestHub::start_with(|config| {
        config.session.hard_message_bytes = 4096;
        config.session.max_message_bytes = 4096;
    })
    .await;
    for i in 0..60 {
        hub.consultation("dr-a", &format!("pat-{i}"), "waiting_for_patient")
            .await;
    }
    let provider = hub.connect("dr-a", Role::Provider).await;
    match provider.list_consultations(false).await {
        Err(ClientError::Command { code, .. }) => assert_eq!(code, ErrorCode::AnswerTooLarge),
        other => panic!("expected answer_too_large, got {other:?}"),
    }
    provider.ping().await.expect("still connected");
    assert!(
        hub.metric("consult_client_errors_total{code=\"answer_too_large\"}")
            .await
            >= 1.0
    );
    an_honest_client_is_served(&hub, "answer-too-large").await;
}

/// A patient with a backlog of notifications delays no other patient's
/// alert: the outbox worker takes each consultation's share of a pass and
/// sends several consultations at once, so another patient's single push
/// goes out beside the backlog, not after it.
#[tokio::test]
async fn one_patients_backlog_of_pushes_does_not_delay_another_patients_alert() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let busy = hub
        .consultation("dr-a", "pat-busy", "waiting_for_patient")
        .await;
    let other = hub
        .consultation("dr-a", "pat-other", "waiting_for_patient")
        .await;
    for device in 0..10 {
        register_device(&hub, "pat-busy", &format!("fcm-busy-{device}"), true).await;
    }
    register_device(&hub, "pat-other", "fcm-other", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    // A slow provider: every one of the next 11 sends takes 400 ms.
    fake.delay_next_sends(11, Duration::from_millis(400));
    let text = "Please open the app now, your visit is about to start.";
    provider
        .alert(&busy.id, text, &[AlertChannel::Push], "busy-alert")
        .await
        .unwrap();
    provider
        .alert(&other.id, text, &[AlertChannel::Push], "other-alert")
        .await
        .unwrap();

    let pushes = fake.wait_for_pushes(11).await;
    let arrival = |token: &str| {
        pushes
            .iter()
            .find(|push| push.token == token)
            .map(|push| push.received_at)
            .unwrap()
    };
    let mut busy_arrivals: Vec<_> = pushes
        .iter()
        .filter(|push| push.token.starts_with("fcm-busy-"))
        .map(|push| push.received_at)
        .collect();
    busy_arrivals.sort_unstable();
    assert_eq!(busy_arrivals.len(), 10);
    // Sent one after another the backlog takes 4 s; the other patient's push
    // must not wait behind more than its first row or two.
    assert!(
        arrival("fcm-other") < busy_arrivals[2],
        "the other patient's push waited behind the backlog: {:?} against {:?}",
        arrival("fcm-other"),
        busy_arrivals
    );
    an_honest_client_is_served(&hub, "outbox-fairness").await;
}

/// A kept-alive HTTP connection that sends no further request is closed
/// after the header timeout too: idle keep-alive connections cannot pile up.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::start_with(|config| config.http.header_read_timeout_secs = 1).await;
    let address = hub.url("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0_u8; 1024];
    let read = stream.read(&mut first).await.unwrap();
    let answer = String::from_utf8_lossy(&first[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle_since = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the hub keeps an idle keep-alive connection open"
    );
    assert!(
        idle_since.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
}

/// A patient that stops reading is closed once what the hub may hold for
/// it is full: the kernel's send buffer per connection is bounded
/// (`http.socket_send_buffer_bytes`), so the hub's writes block, its queue
/// fills and it kicks the reader (4003), instead of the kernel soaking up
/// megabytes per silent client.
#[tokio::test]
async fn a_patient_that_stops_reading_is_closed_once_its_buffers_are_full() {
    let hub = TestHub::start_with(|config| {
        config.http.socket_send_buffer_bytes = 16 * 1024;
        config.session.outbound_queue_capacity = 16;
        config.session.rate_limit_per_sec = 1000;
        config.session.rate_limit_burst = 1000;
    })
    .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let mut reader = RawSocket::connect_with_receive_buffer(hub.addr, 4096).await;
    let token = hub.token("pat-a", Role::Patient, CLINIC);
    reader
        .send_json(json!({"type": "hello", "token": token}))
        .await;
    assert_eq!(reader.recv_json().await["type"], "welcome");
    let id = consultation.id.to_string();
    reader
        .send_json(json!({"type": "join", "id": "j", "consultation_id": id}))
        .await;
    assert_eq!(reader.recv_json().await["type"], "ok");

    // 100 messages of 3 KB: 300 KB, far less than the kernel would buffer
    // unbounded, far more than 16 KiB of buffers and 16 queued events.
    let provider = hub.connect("dr-a", Role::Provider).await;
    for i in 0..100 {
        provider
            .send(&consultation.id, format!("fill-{i}"), "x".repeat(3000))
            .await
            .unwrap();
    }
    let RawSocket { mut stream } = reader;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            }
        }
    })
    .await
    .expect("the hub closes the reader");
    assert_eq!(ended, Some(4003), "closed as a slow consumer");
    an_honest_client_is_served(&hub, "slow-reader").await;
}
