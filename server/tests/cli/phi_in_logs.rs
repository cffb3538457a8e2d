//! No PHI, token or phone number reaches the hub's log, even at `trace`.
//!
//! The real binary runs with `RUST_LOG=trace`; the test drives the error
//! paths of the REST API and the WebSocket protocol (and the ordinary ones)
//! with bodies full of marker strings — a patient's name, a phone number, a
//! health term, chat text, a device token, the tokens and the API key
//! themselves — then reads everything the process wrote.

use super::{Served, issue_token};
use consult_client::{Client, ClientError};
use consult_protocol::{AlertChannel, ConsultationId, DevicePlatform, ErrorCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const API_KEY: &str = "phi-log-test-api-key-0123456789abcdef";
const GIVEN_NAME: &str = "Quenby";
const FAMILY_NAME: &str = "Marchetti";
const PHONE: &str = "+15550104242";
const PHONE_DIGITS: &str = "5550104242";
const HEALTH_TERM: &str = "biopsy";
const CHAT_TEXT: &str = "xylophone-lantern-7731";
const DEVICE_TOKEN: &str = "fcm-device-token-marker-4410";

async fn rest(served: &Served, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, served.url(path))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn expect_refused(client_result: Result<impl std::fmt::Debug, ClientError>, code: ErrorCode) {
    match client_result {
        Err(ClientError::Command { code: got, .. }) => assert_eq!(got, code),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn markers_sent_through_every_error_path_never_reach_the_log_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let provider_token = issue_token(dir.path(), "provider", "dr-q", "clinic-q").await;
    let patient_token = issue_token(dir.path(), "patient", "pat-q", "clinic-q").await;
    let api_keys = format!(r#"["{API_KEY}"]"#);
    let served = Served::start_with(
        dir.path(),
        &[],
        &[("RUST_LOG", "trace"), ("CONSULT_AUTH__API_KEYS", &api_keys)],
    )
    .await;
    let name = format!("{GIVEN_NAME} {FAMILY_NAME}");

    // REST: a serde error that quotes the offending value, an unknown
    // field named by a marker, a bad phone, then a valid registration.
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    let (status, _) = rest(
        &served,
        put.clone(),
        "/v1/participants/pat-q",
        &json!({"clinic_id": "clinic-q", "role": PHONE, "display_name": name}).to_string(),
    )
    .await;
    assert!((400..500).contains(&status), "a refusal: {status}");
    let (status, _) = rest(
        &served,
        put.clone(),
        "/v1/participants/pat-q",
        &format!(r#"{{"clinic_id":"clinic-q","role":"patient","display_name":"{name}","{FAMILY_NAME}":1}}"#),
    )
    .await;
    assert!((400..500).contains(&status), "a refusal: {status}");
    let (status, _) = rest(
        &served,
        put.clone(),
        "/v1/participants/pat-q",
        &json!({"clinic_id": "clinic-q", "role": "patient", "display_name": name, "phone": format!("{PHONE}-{HEALTH_TERM}")}).to_string(),
    )
    .await;
    assert!((400..500).contains(&status), "a refusal: {status}");
    let (status, body) = rest(
        &served,
        post.clone(),
        "/v1/consultations",
        &json!({
            "clinic_id": "clinic-q",
            "provider": {"id": "dr-q", "display_name": "Morgan Lee"},
            "patient": {"id": "pat-q", "display_name": name, "phone": PHONE},
            "status": "waiting_for_patient",
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let consultation = ConsultationId::from(body["id"].as_str().unwrap());
    // The same patient id under another clinic: refused, and the refusal
    // is logged without the name or phone it carried.
    let (status, body) = rest(
        &served,
        post.clone(),
        "/v1/consultations",
        &json!({
            "clinic_id": "clinic-other",
            "provider": {"id": "dr-other", "display_name": "Dr Other"},
            "patient": {"id": "pat-q", "display_name": name, "phone": PHONE},
        })
        .to_string(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("clinic_mismatch"))
    );
    let (status, _) = rest(
        &served,
        post.clone(),
        "/v1/tokens",
        &json!({"user": name, "role": "patient", "clinic": "clinic-q"}).to_string(),
    )
    .await;
    assert!((400..500).contains(&status), "a refusal: {status}");
    let (status, _) = rest(
        &served,
        post.clone(),
        "/v1/participants/pat-q/devices",
        &json!({"platform": "fcm", "token": format!("{DEVICE_TOKEN} {name}"), "notifications_enabled": true}).to_string(),
    )
    .await;
    assert!((400..500).contains(&status), "a refusal: {status}");
    let (status, _) = rest(
        &served,
        post.clone(),
        "/v1/consultations",
        &format!("{{\"clinic_id\": \"{name}"),
    )
    .await;
    assert!((400..500).contains(&status), "a refusal: {status}");

    // WebSocket: a forged token, then the real ones.
    match Client::connect(&served.ws_url(), &format!("{name}.{PHONE}.{HEALTH_TERM}")).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::InvalidToken),
        other => panic!("a forged token: {other:?}"),
    }
    let (patient, _) = Client::connect(&served.ws_url(), &patient_token)
        .await
        .unwrap();
    patient
        .register_device(DevicePlatform::Fcm, DEVICE_TOKEN, true)
        .await
        .unwrap();
    expect_refused(
        patient
            .register_device(DevicePlatform::Fcm, format!("{DEVICE_TOKEN} {name}"), true)
            .await,
        ErrorCode::InvalidValue,
    );
    patient.set_sms_consent(true).await.unwrap();
    patient.close().await;

    let (provider, _) = Client::connect(&served.ws_url(), &provider_token)
        .await
        .unwrap();
    provider.join(&consultation, None).await.unwrap();
    provider
        .send(&consultation, "m-1", CHAT_TEXT)
        .await
        .unwrap();
    expect_refused(
        provider
            .send(&consultation, "m-1", format!("{CHAT_TEXT} {name} {PHONE}"))
            .await,
        ErrorCode::DuplicateClientMsgId,
    );
    expect_refused(
        provider
            .send(
                &consultation,
                "m-2",
                format!("{name} {HEALTH_TERM}").repeat(2000),
            )
            .await,
        ErrorCode::InvalidValue,
    );
    expect_refused(
        provider
            .alert(
                &consultation,
                format!("{name}, your {HEALTH_TERM} result is in: call {PHONE}"),
                &[AlertChannel::Push, AlertChannel::Sms],
                "a-1",
            )
            .await,
        ErrorCode::PrivacyViolation,
    );
    let variables = BTreeMap::from([("minutes".to_owned(), format!("{name} {HEALTH_TERM}"))]);
    let quick = provider
        .quick_message(&consultation, "running-behind", variables, "q-1")
        .await;
    assert!(
        matches!(quick, Err(ClientError::Command { .. })),
        "a Quick Message naming the patient is refused: {quick:?}"
    );
    provider
        .alert(
            &consultation,
            "Your provider is ready. Please open the app.",
            &[AlertChannel::Push, AlertChannel::Sms],
            "a-2",
        )
        .await
        .unwrap();
    for raw in [
        format!(r#"{{"type":"send","body":"{name} {PHONE}"#),
        format!(r#"{{"type":"{name}","id":"{PHONE}"}}"#),
        format!(r#"{{"type":"send","id":"x","consultation_id":"{PHONE}","body":7}}"#),
        format!(r#"{{"type":"watch_dashboard","id":"w","provider_id":"{name}"}}"#),
    ] {
        provider.send_raw_text(raw).await.unwrap();
    }
    provider.ping().await.unwrap();
    provider.close().await;

    let log = served.output();
    assert!(
        log.contains("error sent to client") && log.contains("request refused"),
        "the refusals were logged (by code):\n{log}"
    );
    for marker in [
        GIVEN_NAME,
        FAMILY_NAME,
        PHONE_DIGITS,
        HEALTH_TERM,
        CHAT_TEXT,
        DEVICE_TOKEN,
        API_KEY,
        &provider_token,
        &patient_token,
    ] {
        let hits: Vec<&str> = log.lines().filter(|line| line.contains(marker)).collect();
        assert!(
            hits.is_empty(),
            "{marker:?} reached the log:\n{}",
            hits.join("\n")
        );
    }
}
