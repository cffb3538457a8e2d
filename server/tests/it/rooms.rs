//! Rooms: joining, membership checks, fan-out, typing and presence.

use crate::harness::raw::RawSocket;
use crate::harness::{CLINIC, TestHub, expect_event, expect_no_event};
use consult_protocol::{ErrorCode, Role, ServerFrame, UserId};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_provider_message_reaches_the_joined_patient_instantly() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    provider.join(&consultation.id, None).await.unwrap();

    let (seq, duplicate) = provider
        .send(&consultation.id, "m-1", "Hello, I will be with you shortly")
        .await
        .unwrap();
    assert_eq!(seq.get(), 1);
    assert!(!duplicate);

    let message = expect_event(&patient, |event| match event {
        ServerFrame::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message.seq, seq);
    assert_eq!(message.body, "Hello, I will be with you shortly");
    assert_eq!(message.sender.as_str(), "dr-a");
    assert_eq!(message.sender_role, Role::Provider);
}

#[tokio::test]
async fn joining_another_patients_consultation_is_forbidden_and_the_connection_survives() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let intruder = hub.connect("pat-b", Role::Patient).await;
    let error = intruder.join(&consultation.id, None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
    intruder.ping().await.expect("connection still works");
}

#[tokio::test]
async fn sending_to_a_consultation_one_does_not_belong_to_is_forbidden_and_stores_nothing() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let other_provider = hub.connect("dr-b", Role::Provider).await;
    let error = other_provider
        .send(&consultation.id, "m-1", "hi")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
    let (_, page) = hub
        .api_get(&format!("/v1/consultations/{}/messages", consultation.id))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_admin_of_another_clinic_is_refused() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let admin = hub.connect_in("adm-x", Role::Admin, "clinic-2").await;
    let error = admin.join(&consultation.id, None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn a_clinic_admin_may_join_and_message_for_its_providers() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let admin = hub.connect("adm-1", Role::Admin).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    admin.join(&consultation.id, None).await.unwrap();
    admin
        .send(&consultation.id, "a-1", "The doctor is on the way")
        .await
        .unwrap();
    let message = expect_event(&patient, |event| match event {
        ServerFrame::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message.sender_role, Role::Admin);
}

#[tokio::test]
async fn an_unknown_consultation_is_not_found() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let error = provider.join(&"no-such".into(), None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn typing_and_presence_reach_the_other_members() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&consultation.id, None).await.unwrap();
    let patient = hub.connect("pat-a", Role::Patient).await;
    let joined = patient.join(&consultation.id, None).await.unwrap();
    assert!(joined.members.iter().any(|m| m.user.as_str() == "dr-a"));

    expect_event(&provider, |event| match event {
        ServerFrame::Presence {
            user, online: true, ..
        } if user.as_str() == "pat-a" => Some(()),
        _ => None,
    })
    .await;
    patient.typing(&consultation.id, true).await.unwrap();
    expect_event(&provider, |event| match event {
        ServerFrame::Typing {
            user, active: true, ..
        } if user.as_str() == "pat-a" => Some(()),
        _ => None,
    })
    .await;
    patient.leave(&consultation.id).await.unwrap();
    expect_event(&provider, |event| match event {
        ServerFrame::Presence {
            user,
            online: false,
            ..
        } if user.as_str() == "pat-a" => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn typing_or_leaving_without_joining_is_not_joined() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let error = patient.typing(&consultation.id, true).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotJoined));
    let error = patient.leave(&consultation.id).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotJoined));
}

#[tokio::test]
async fn a_member_who_left_gets_no_more_room_events() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    patient.leave(&consultation.id).await.unwrap();
    provider
        .send(&consultation.id, "m-1", "anyone?")
        .await
        .unwrap();
    expect_no_event(&patient, Duration::from_millis(300), |event| {
        matches!(event, ServerFrame::Message { .. })
    })
    .await;
}

async fn listed(client: &consult_client::Client, include_closed: bool) -> Vec<String> {
    let mut ids: Vec<String> = client
        .list_consultations(include_closed)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn each_role_lists_exactly_the_consultations_it_may_act_on() {
    let hub = TestHub::start().await;
    let mine = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let other_patient = hub.consultation("dr-a", "pat-b", "scheduled").await;
    let other_provider = hub
        .consultation("dr-b", "pat-a", "waiting_for_patient")
        .await;
    let (code, _) = hub
        .api_post(
            &format!("/v1/consultations/{}/cancel", other_provider.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(code, 200);

    let patient = hub.connect("pat-a", Role::Patient).await;
    assert_eq!(listed(&patient, false).await, [mine.id.to_string()]);
    let mut with_closed = vec![mine.id.to_string(), other_provider.id.to_string()];
    with_closed.sort();
    assert_eq!(listed(&patient, true).await, with_closed);

    let provider = hub.connect("dr-a", Role::Provider).await;
    let mut assigned = vec![mine.id.to_string(), other_patient.id.to_string()];
    assigned.sort();
    assert_eq!(listed(&provider, false).await, assigned);

    let admin = hub.connect("adm-1", Role::Admin).await;
    assert_eq!(listed(&admin, true).await.len(), 3);
    let stranger = hub.connect_in("adm-x", Role::Admin, "clinic-2").await;
    assert!(listed(&stranger, true).await.is_empty());
}

#[tokio::test]
async fn staff_entering_a_consultation_have_its_patients_reach_read_ahead() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient_key = consult_hub::domain::PersonKey::new(
        &crate::harness::CLINIC.into(),
        &consult_protocol::UserId::from("pat-a"),
    );
    let ttl = Duration::from_millis(hub.state.config.notify.reach_cache_ms);
    // The patient entering reads nothing ahead: it is not the one who
    // messages the patient.
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hub.state.reach.holds_contact(&patient_key, ttl));
    // The provider entering does, in the background.
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&consultation.id, None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !hub.state.reach.holds_contact(&patient_key, ttl) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the patient's reach was not read ahead"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A join whose replay cannot be written (the patient's app is gone before
/// it) leaves nothing behind: the patient is not listed as a member of the
/// room afterwards, and the node holds no subscription for the connection.
#[tokio::test]
async fn a_join_whose_replay_fails_leaves_no_member_behind() {
    let hub = TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 10_000;
        config.session.rate_limit_burst = 10_000;
    })
    .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let room = consult_hub::hub::topics::room(&consultation.id);
    let provider = hub.connect("dr-a", Role::Provider).await;
    // Over a page of replay (500 messages), about 1.8 MB: more than the
    // sockets between the two hold, so writing it meets the closed peer.
    let body = "x".repeat(3_000);
    for i in 0..600 {
        provider
            .send(&consultation.id, format!("m-{i}"), body.clone())
            .await
            .unwrap();
    }
    // The patient's app reads nothing and has a small receive buffer, so
    // the hub is still writing the replay when the app goes away (an
    // unread buffer makes its close a reset).
    let token = hub.token("pat-a", Role::Patient, CLINIC);
    let mut patient = RawSocket::connect_with_receive_buffer(hub.addr, 4096).await;
    let welcome = patient.hello(&token).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    patient
        .send_json(
            json!({"type": "join", "id": "j", "consultation_id": consultation.id, "since": 0}),
        )
        .await;
    let patient_id = UserId::from("pat-a");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !hub
        .state
        .hub
        .members(&room)
        .iter()
        .any(|member| member.user == patient_id)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the join was not admitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(patient);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let members = hub.state.hub.members(&room);
        let patient_listed = members.iter().any(|member| member.user == patient_id);
        if !patient_listed && hub.state.hub.connections_of(&room, &patient_id) == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the patient is still listed: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
