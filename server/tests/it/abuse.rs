//! Attacks on the hub's resources, each answered with a bounded cost and a
//! clear refusal while honest traffic goes on.

use crate::harness::TestHub;
use crate::harness::providers::FakeProviders;
use consult_client::ClientError;
use consult_hub::config::RateLimit;
use consult_protocol::{AlertChannel, DevicePlatform, ErrorCode, Role};

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
