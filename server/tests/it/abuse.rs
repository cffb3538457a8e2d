//! Attack tests: a hostile or buggy client against the real hub. Each test
//! states the guarantee it holds.

use crate::harness::providers::FakeProviders;
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
    let RawSocket { mut stream } = socket;
    let started = tokio::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < WRITING {
        i += 1;
        let ping = json!({"type": "ping", "id": format!("w-{i}"), "pad": PAD}).to_string();
        if stream.send(Message::text(ping)).await.is_err() {
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
}
