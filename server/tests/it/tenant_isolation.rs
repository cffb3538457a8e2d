//! Tenant isolation: nothing of one clinic reaches another. Topic names that
//! cannot collide however ids are chosen, one clinic per user id, push
//! devices, SMS consent and presence kept per clinic, and ids refused at the
//! edges when they hold characters the hub does not accept.

use crate::harness::providers::FakeProviders;
use crate::harness::{CLINIC, TestHub, expect_event, expect_no_event};
use consult_client::{Client, ClientError};
use consult_hub::domain::PersonKey;
use consult_protocol::{
    AlertChannel, ConsultationStatus, DevicePlatform, ErrorCode, Role, ServerFrame, UserId,
};
use serde_json::json;
use std::time::Duration;

async fn refused_hello(hub: &TestHub, token: &str) -> (ErrorCode, String) {
    match Client::connect(&hub.ws_url(), token).await {
        Err(ClientError::Rejected { code, message, .. }) => (code, message),
        other => panic!("expected the hello to be refused, got {other:?}"),
    }
}

fn is_dashboard(event: &ServerFrame) -> bool {
    matches!(event, ServerFrame::Dashboard { .. })
}

#[tokio::test]
async fn a_colon_in_a_clinic_or_provider_id_cannot_make_two_clinics_share_a_feed() {
    let hub = TestHub::start().await;
    // Clinic `acme:east`, provider `dr-z`; and in clinic `acme` a provider
    // whose id is `east:dr-z`. Joined with a plain `:` both feeds would be
    // `feed:provider:acme:east:dr-z`.
    let theirs = hub
        .consultation_in("acme:east", "dr-z", "pat-z", "waiting_for_patient")
        .await;
    let admin_of_acme = hub.connect_in("adm-acme", Role::Admin, "acme").await;
    let snapshot = admin_of_acme
        .watch_dashboard(Some(UserId::from("east:dr-z")))
        .await
        .unwrap();
    assert!(snapshot.is_empty(), "{snapshot:?}");
    let provider_of_acme = hub.connect_in("east:dr-z", Role::Provider, "acme").await;
    assert!(
        provider_of_acme
            .watch_dashboard(None)
            .await
            .unwrap()
            .is_empty()
    );
    // Positive control: the clinic's own admin watching its provider.
    let insider = hub.connect_in("adm-east", Role::Admin, "acme:east").await;
    insider
        .watch_dashboard(Some(UserId::from("dr-z")))
        .await
        .unwrap();

    let patient = hub.connect_in("pat-z", Role::Patient, "acme:east").await;
    patient.ready(&theirs.id).await.unwrap();
    expect_event(&insider, |event| match event {
        ServerFrame::Dashboard { entry }
            if entry.consultation_id == theirs.id
                && entry.status == ConsultationStatus::PatientReady =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    expect_no_event(&admin_of_acme, Duration::from_millis(300), is_dashboard).await;
    expect_no_event(&provider_of_acme, Duration::from_millis(100), is_dashboard).await;
}

#[tokio::test]
async fn a_token_naming_another_clinic_for_a_registered_user_is_refused_at_hello() {
    let hub = TestHub::start().await;
    hub.consultation("dr-a", "pat-alex", "waiting_for_patient")
        .await;
    let (code, message) = refused_hello(&hub, &hub.token("pat-alex", Role::Patient, "other")).await;
    assert_eq!(code, ErrorCode::InvalidToken, "{message}");
    let (code, _) = refused_hello(&hub, &hub.token("dr-a", Role::Admin, "other")).await;
    assert_eq!(code, ErrorCode::InvalidToken);
    // The same user with its own clinic's token is welcome.
    let patient = hub.connect("pat-alex", Role::Patient).await;
    patient.ping().await.unwrap();
}

#[tokio::test]
async fn a_user_unknown_at_one_hello_and_registered_since_is_checked_again_at_the_next() {
    let hub = TestHub::start().await;
    // Nobody registered pat-new yet: a token of any clinic may speak for it
    // (it reaches only that clinic's records).
    let early = hub.connect_in("pat-new", Role::Patient, "other").await;
    early.ping().await.unwrap();
    // The platform registers it in this clinic; from then on another
    // clinic's token is refused, however often it was accepted before.
    hub.consultation("dr-a", "pat-new", "waiting_for_patient")
        .await;
    for _ in 0..2 {
        let (code, message) =
            refused_hello(&hub, &hub.token("pat-new", Role::Patient, "other")).await;
        assert_eq!(code, ErrorCode::InvalidToken, "{message}");
    }
    hub.connect("pat-new", Role::Patient)
        .await
        .ping()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_user_id_registered_in_one_clinic_cannot_be_registered_or_overwritten_by_another() {
    let hub = TestHub::start().await;
    hub.consultation("dr-a", "pat-jo", "waiting_for_patient")
        .await;
    let (_, before) = hub.api_get("/v1/participants/pat-jo").await;

    let (code, body) = hub
        .api_post(
            "/v1/consultations",
            json!({
                "clinic_id": "other",
                "provider": { "id": "dr-o", "display_name": "Dr. Other" },
                "patient": { "id": "pat-jo", "display_name": "Someone Else", "phone": "+15559999999" },
            }),
        )
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("clinic_mismatch")),
        "{body}"
    );
    let put = reqwest::Client::new()
        .put(hub.url("/v1/participants/pat-jo"))
        .bearer_auth(crate::harness::API_KEY)
        .json(&json!({"clinic_id": "other", "role": "patient", "display_name": "Someone Else", "phone": "+15559999999"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 409);
    let (code, body) = hub
        .api_post(
            "/v1/tokens",
            json!({"user": "pat-jo", "role": "patient", "clinic": "other"}),
        )
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("clinic_mismatch"))
    );

    let (_, after) = hub.api_get("/v1/participants/pat-jo").await;
    assert_eq!(after, before, "the first clinic's record is untouched");
    assert_eq!(after["clinic_id"], CLINIC);
    // Nothing of the refused request was half-written: its provider too.
    let (code, _) = hub.api_get("/v1/participants/dr-o").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn devices_and_sms_consent_registered_under_one_clinic_never_serve_another() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    // A token of clinic `other` for an id nobody registered yet: it may
    // connect, and what it registers is `other`'s.
    let squatter = hub.connect_in("pat-new", Role::Patient, "other").await;
    squatter
        .register_device(DevicePlatform::Fcm, "fcm-squatter", true)
        .await
        .unwrap();
    squatter.set_sms_consent(true).await.unwrap();
    squatter.close().await;

    let consultation = hub
        .consultation("dr-a", "pat-new", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for channel in [AlertChannel::Push, AlertChannel::Sms] {
        match provider
            .alert(
                &consultation.id,
                "Please open the app.",
                &[channel],
                format!("a-{channel:?}"),
            )
            .await
        {
            Err(ClientError::Command { code, .. }) => {
                assert_eq!(code, ErrorCode::ChannelUnavailable, "{channel:?}");
            }
            other => panic!("{channel:?} reached another clinic's registration: {other:?}"),
        }
    }

    // The patient's own app registers under its clinic: the push goes there.
    let patient = hub.connect("pat-new", Role::Patient).await;
    patient
        .register_device(DevicePlatform::Fcm, "fcm-patient", true)
        .await
        .unwrap();
    patient.close().await;
    provider
        .alert(
            &consultation.id,
            "Please open the app.",
            &[AlertChannel::Push],
            "a-own",
        )
        .await
        .unwrap();
    let pushes = fake.wait_for_pushes(1).await;
    let tokens: Vec<&str> = pushes.iter().map(|push| push.token.as_str()).collect();
    assert_eq!(tokens, ["fcm-patient"]);
}

#[tokio::test]
async fn one_device_token_registered_in_two_clinics_stays_with_each_patient() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let here = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let there = hub
        .consultation_in("clinic-2", "dr-b", "pat-b", "waiting_for_patient")
        .await;
    for (user, clinic) in [("pat-a", CLINIC), ("pat-b", "clinic-2")] {
        let patient = hub.connect_in(user, Role::Patient, clinic).await;
        patient
            .register_device(DevicePlatform::Fcm, "fcm-shared-phone", true)
            .await
            .unwrap();
        patient.close().await;
    }
    for (provider, clinic, consultation) in [("dr-a", CLINIC, &here), ("dr-b", "clinic-2", &there)]
    {
        let staff = hub.connect_in(provider, Role::Provider, clinic).await;
        staff
            .alert(
                &consultation.id,
                "Please open the app.",
                &[AlertChannel::Push],
                "a-1",
            )
            .await
            .unwrap();
    }
    let pushes = fake.wait_for_pushes(2).await;
    let mut reached: Vec<String> = pushes
        .iter()
        .map(|push| format!("{}@{}", push.token, push.consultation_id))
        .collect();
    reached.sort();
    let mut expected = vec![
        format!("fcm-shared-phone@{}", here.id),
        format!("fcm-shared-phone@{}", there.id),
    ];
    expected.sort();
    assert_eq!(reached, expected);
}

#[tokio::test]
async fn a_connection_under_one_clinic_does_not_make_another_clinics_patient_online() {
    let hub = TestHub::start().await;
    let other = hub.connect_in("pat-p", Role::Patient, "other").await;
    other.ping().await.unwrap();
    let presence = &hub.state.presence;
    let theirs = PersonKey::new(&"other".into(), &UserId::from("pat-p"));
    let ours = PersonKey::new(&CLINIC.into(), &UserId::from("pat-p"));
    assert!(presence.status(&theirs).await.online);
    assert!(!presence.status(&ours).await.online);
}

#[tokio::test]
async fn ids_outside_the_accepted_characters_are_refused_at_every_edge() {
    let hub = TestHub::start().await;
    for (user, clinic) in [("a b", CLINIC), ("pat", "clinic/2"), ("", CLINIC)] {
        let (code, _) = refused_hello(&hub, &hub.token(user, Role::Patient, clinic)).await;
        assert_eq!(code, ErrorCode::InvalidToken, "{user:?}@{clinic:?}");
    }
    let long = "x".repeat(129);
    for body in [
        json!({"user": "a/b", "role": "patient", "clinic": CLINIC}),
        json!({"user": "pat", "role": "patient", "clinic": long}),
        json!({"user": "pat%", "role": "patient", "clinic": CLINIC}),
    ] {
        let (code, answer) = hub.api_post("/v1/tokens", body).await;
        assert_eq!(
            (code, answer["code"].as_str()),
            (400, Some("invalid_value")),
            "{answer}"
        );
    }
    let (code, answer) = hub
        .api_post(
            "/v1/consultations",
            json!({
                "clinic_id": "clinic 2",
                "provider": { "id": "dr-a", "display_name": "Dr. A" },
                "patient": { "id": "pat-a", "display_name": "Pat A" },
            }),
        )
        .await;
    assert_eq!(
        (code, answer["code"].as_str()),
        (400, Some("invalid_value")),
        "{answer}"
    );
    let admin = hub.connect("adm-a", Role::Admin).await;
    match admin.watch_dashboard(Some(UserId::from("dr a"))).await {
        Err(ClientError::Command { code, .. }) => assert_eq!(code, ErrorCode::InvalidValue),
        other => panic!("a malformed provider id: {other:?}"),
    }
    // An over-long owner id is refused before the store sees it, so both
    // stores answer alike (PostgreSQL would refuse the write itself).
    match admin
        .save_template(
            None,
            Some(UserId::from("d".repeat(200))),
            "Late",
            "Running late.",
            None,
        )
        .await
    {
        Err(ClientError::Command { code, .. }) => assert_eq!(code, ErrorCode::InvalidValue),
        other => panic!("an over-long provider id: {other:?}"),
    }
    admin.ping().await.unwrap();
}
