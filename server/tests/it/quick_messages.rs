//! Quick Messages: the seeded clinic defaults, who may manage which
//! templates (over WebSocket and REST), sending from the dashboard without
//! joining, refusals, the audit entry, and the push that follows when the
//! patient is offline or the app is in the background, but not when the
//! patient acknowledges in the foreground.

use crate::harness::providers::{
    FakeProviders, api, audited, notifications, register_device, wait_for_status,
};
use crate::harness::{CLINIC, TestHub, expect_event, expect_no_event};
use consult_client::Client;
use consult_hub::domain::escalation::{GENERIC_PUSH_BODY, PUSH_TITLE};
use consult_protocol::{
    AlertChannel, ChatMessage, ConsultationId, ConsultationStatus, DevicePlatform, ErrorCode,
    MessageKind, NotificationReason, NotificationStatus, QuickTemplate, ReceiptKind, Role,
    ServerFrame, UserId,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const RUNNING_BEHIND: &str = "clinic-1:running-behind";
const PLEASE_ENTER: &str = "clinic-1:please-enter";
const BEHIND_TEN: &str = "I am running 10 minutes behind. Thank you for your patience.";

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn ten_minutes() -> BTreeMap<String, String> {
    vars(&[("minutes", "10")])
}

fn ids(templates: &[QuickTemplate]) -> Vec<&str> {
    templates.iter().map(|t| t.id.as_str()).collect()
}

fn code(error: consult_client::ClientError) -> ErrorCode {
    error
        .code()
        .unwrap_or_else(|| panic!("not a hub refusal: {error}"))
}

/// The next `message` event `client` receives.
async fn next_message(client: &Client) -> ChatMessage {
    expect_event(client, |event| match event {
        ServerFrame::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await
}

/// A waiting consultation dr-a/pat-a and the patient, connected and joined.
async fn joined_patient(hub: &TestHub) -> (ConsultationId, Client) {
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    (consultation.id, patient)
}

#[tokio::test]
async fn listing_templates_seeds_the_five_clinic_defaults_with_their_variables() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    let templates = provider.list_templates(None).await.unwrap();

    let summary: Vec<(&str, &str, Vec<&str>, i32)> = templates
        .iter()
        .map(|t| {
            let variables = t.variables.iter().map(String::as_str).collect();
            (t.id.as_str(), t.title.as_str(), variables, t.position)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (RUNNING_BEHIND, "Running behind", vec!["minutes"], 0),
            (
                "clinic-1:running-early",
                "Running early",
                vec!["minutes"],
                10
            ),
            ("clinic-1:unavailable", "Provider unavailable", vec![], 20),
            (
                "clinic-1:not-responding",
                "Patient not responding",
                vec![],
                30
            ),
            (PLEASE_ENTER, "Please enter", vec![], 40),
        ]
    );
    for template in &templates {
        assert_eq!(template.clinic_id.as_str(), CLINIC);
        assert_eq!(template.provider_id, None, "a clinic default has no owner");
    }
    assert_eq!(
        provider.list_templates(None).await.unwrap(),
        templates,
        "listing again seeds nothing more"
    );
}

#[tokio::test]
async fn a_provider_saves_lists_first_updates_and_deletes_its_own_template() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let other = hub.connect("dr-b", Role::Provider).await;

    let saved = provider
        .save_template(
            None,
            None,
            "Room",
            "Please go to room {room} in {minutes} min.",
            None,
        )
        .await
        .unwrap();
    assert_eq!(saved.provider_id, Some(UserId::from("dr-a")));
    assert_eq!(saved.variables, ["room", "minutes"]);
    let listed = provider.list_templates(None).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0], saved, "the provider's own come first");
    assert!(
        !ids(&other.list_templates(None).await.unwrap()).contains(&saved.id.as_str()),
        "another provider does not see it"
    );

    let updated = provider
        .save_template(
            Some(saved.id.clone()),
            None,
            "Room (new)",
            "Room {room}, please.",
            Some(5),
        )
        .await
        .unwrap();
    assert_eq!(updated.id, saved.id);
    assert_eq!(
        (
            updated.title.as_str(),
            updated.body.as_str(),
            updated.position
        ),
        ("Room (new)", "Room {room}, please.", 5)
    );
    assert_eq!(updated.variables, ["room"]);
    assert_eq!(provider.list_templates(None).await.unwrap()[0], updated);

    provider.delete_template(saved.id.clone()).await.unwrap();
    let after = provider.list_templates(None).await.unwrap();
    assert_eq!(after.len(), 5);
    assert!(after.iter().all(|t| t.provider_id.is_none()));
    let again = provider.delete_template(saved.id).await.unwrap_err();
    assert_eq!(code(again), ErrorCode::NotFound);
}

#[tokio::test]
async fn a_provider_cannot_change_clinic_defaults_or_another_providers_templates() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let other = hub.connect("dr-b", Role::Provider).await;
    let defaults = provider.list_templates(None).await.unwrap();
    let theirs = other
        .save_template(None, None, "Mine", "Only mine.", None)
        .await
        .unwrap();

    let refusals = [
        provider
            .save_template(Some(RUNNING_BEHIND.to_owned()), None, "X", "Hacked.", None)
            .await,
        provider
            .save_template(Some(theirs.id.clone()), None, "X", "Hacked.", None)
            .await,
        provider
            .save_template(None, Some(UserId::from("dr-b")), "X", "Planted.", None)
            .await,
    ];
    for refusal in refusals {
        assert_eq!(code(refusal.unwrap_err()), ErrorCode::Forbidden);
    }
    for id in [RUNNING_BEHIND, theirs.id.as_str()] {
        let refused = provider.delete_template(id).await.unwrap_err();
        assert_eq!(code(refused), ErrorCode::Forbidden);
    }
    let peek = provider
        .list_templates(Some(UserId::from("dr-b")))
        .await
        .unwrap_err();
    assert_eq!(code(peek), ErrorCode::Forbidden);

    assert_eq!(provider.list_templates(None).await.unwrap(), defaults);
    assert_eq!(other.list_templates(None).await.unwrap()[0], theirs);
}

#[tokio::test]
async fn a_clinic_admin_manages_defaults_and_its_providers_templates() {
    let hub = TestHub::start().await;
    let admin = hub.connect("admin-1", Role::Admin).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let providers_own = provider
        .save_template(None, None, "Mine", "Only mine.", None)
        .await
        .unwrap();

    let default = admin
        .save_template(
            Some(RUNNING_BEHIND.to_owned()),
            None,
            "Running late",
            "Running {minutes} minutes late.",
            None,
        )
        .await
        .unwrap();
    assert_eq!(default.provider_id, None, "still a clinic default");
    assert_eq!(default.position, 0, "position kept when not given");
    let clinic_wide = admin
        .save_template(None, None, "Closing", "The clinic closes soon.", Some(50))
        .await
        .unwrap();
    assert_eq!(clinic_wide.provider_id, None);
    let for_provider = admin
        .save_template(
            None,
            Some(UserId::from("dr-a")),
            "Break",
            "Short break.",
            None,
        )
        .await
        .unwrap();
    assert_eq!(for_provider.provider_id, Some(UserId::from("dr-a")));

    let seen_by_provider = provider.list_templates(None).await.unwrap();
    assert!(seen_by_provider.contains(&default));
    assert!(seen_by_provider.contains(&clinic_wide));
    assert!(seen_by_provider.contains(&for_provider));
    let admin_view = admin
        .list_templates(Some(UserId::from("dr-a")))
        .await
        .unwrap();
    assert_eq!(ids(&admin_view), ids(&seen_by_provider));
    let clinic_only = admin.list_templates(None).await.unwrap();
    assert!(clinic_only.iter().all(|t| t.provider_id.is_none()));

    admin
        .delete_template(providers_own.id.clone())
        .await
        .unwrap();
    admin.delete_template(clinic_wide.id).await.unwrap();
    let after = provider.list_templates(None).await.unwrap();
    assert!(!ids(&after).contains(&providers_own.id.as_str()));
    assert_eq!(after.len(), 6, "five defaults and the admin's one for dr-a");
}

#[tokio::test]
async fn patients_have_no_quick_messages() {
    let hub = TestHub::start().await;
    let (id, patient) = joined_patient(&hub).await;

    let refusals = [
        patient.list_templates(None).await.map(drop),
        patient
            .save_template(None, None, "Mine", "Hello.", None)
            .await
            .map(drop),
        patient.delete_template(PLEASE_ENTER).await,
        patient
            .quick_message(&id, PLEASE_ENTER, BTreeMap::new(), "q1")
            .await
            .map(drop),
    ];
    for (index, refusal) in refusals.into_iter().enumerate() {
        let error = refusal.expect_err(&format!("refusal {index}"));
        assert_eq!(code(error), ErrorCode::Forbidden, "refusal {index}");
    }
    let (messages, _) = patient.history(&id, None, None).await.unwrap();
    assert!(messages.is_empty());
    let staff = hub.connect("dr-a", Role::Provider).await;
    let templates = staff.list_templates(None).await.unwrap();
    assert_eq!(
        templates.len(),
        5,
        "the patient planted nothing: {templates:?}"
    );
}

#[tokio::test]
async fn templates_are_managed_over_rest_too() {
    let hub = TestHub::start().await;
    let base = format!("/v1/clinics/{CLINIC}/templates");

    let (status, listed) = api(&hub, Method::GET, &base, Value::Null).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["templates"].as_array().unwrap().len(), 5);

    let body = json!({"provider_id": "dr-a", "title": "Room", "body": "Room {room}."});
    let (status, created) = api(&hub, Method::POST, &base, body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["provider_id"], "dr-a");
    assert_eq!(created["variables"], json!(["room"]));
    let id = created["id"].as_str().unwrap().to_owned();

    let for_provider = format!("{base}?provider_id=dr-a");
    let (_, listed) = api(&hub, Method::GET, &for_provider, Value::Null).await;
    assert_eq!(listed["templates"][0]["id"], id.as_str());
    assert_eq!(listed["templates"].as_array().unwrap().len(), 6);

    let body = json!({"title": "Room 2", "body": "Room {room}, now."});
    let (status, updated) = api(&hub, Method::PUT, &format!("{base}/{id}"), body).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (&updated["title"], &updated["provider_id"]),
        (&json!("Room 2"), &json!("dr-a"))
    );
    // The provider sees the change over WebSocket.
    let provider = hub.connect("dr-a", Role::Provider).await;
    assert_eq!(
        provider.list_templates(None).await.unwrap()[0].body,
        "Room {room}, now."
    );

    let (status, _) = api(&hub, Method::DELETE, &format!("{base}/{id}"), Value::Null).await;
    assert_eq!(status, 204);
    let (status, missing) = api(&hub, Method::DELETE, &format!("{base}/{id}"), Value::Null).await;
    assert_eq!((status, &missing["code"]), (404, &json!("not_found")));
    let (_, listed) = api(&hub, Method::GET, &for_provider, Value::Null).await;
    assert_eq!(listed["templates"].as_array().unwrap().len(), 5);

    let empty_title = json!({"title": " ", "body": "Hello."});
    let (status, refused) = api(&hub, Method::POST, &base, empty_title).await;
    assert_eq!(status, 400, "{refused}");
}

#[tokio::test]
async fn a_provider_sends_a_quick_message_from_the_dashboard_without_joining() {
    let hub = TestHub::start().await;
    let (id, patient) = joined_patient(&hub).await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    let sent = provider
        .quick_message(&id, RUNNING_BEHIND, ten_minutes(), "q1")
        .await
        .unwrap();

    assert!(!sent.duplicate);
    let message = next_message(&patient).await;
    assert_eq!(message.kind, MessageKind::Quick);
    assert_eq!(message.body, BEHIND_TEN);
    assert_eq!(message.seq, sent.seq);
    assert_eq!(message.sender.as_str(), "dr-a");
    let (status, stored) = hub.api_get(&format!("/v1/consultations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        stored["status"],
        json!(ConsultationStatus::WaitingForPatient),
        "sending did not enter the consultation"
    );

    let retry = provider
        .quick_message(&id, RUNNING_BEHIND, ten_minutes(), "q1")
        .await
        .unwrap();
    assert!(retry.duplicate, "the same client_msg_id stores nothing new");
    assert_eq!(retry.seq, sent.seq);
}

#[tokio::test]
async fn bad_variables_or_unreachable_templates_are_refused_and_send_nothing() {
    let hub = TestHub::start().await;
    let (id, patient) = joined_patient(&hub).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let other = hub.connect("dr-b", Role::Provider).await;
    let theirs = other
        .save_template(None, None, "Mine", "Only mine.", None)
        .await
        .unwrap();
    let elsewhere = hub.connect_in("admin-2", Role::Admin, "clinic-2").await;
    elsewhere.list_templates(None).await.unwrap();

    let cases = [
        (RUNNING_BEHIND, BTreeMap::new(), ErrorCode::InvalidValue),
        (
            RUNNING_BEHIND,
            vars(&[("minutes", " ")]),
            ErrorCode::InvalidValue,
        ),
        (PLEASE_ENTER, ten_minutes(), ErrorCode::InvalidValue),
        ("clinic-1:no-such", BTreeMap::new(), ErrorCode::NotFound),
        (
            "clinic-2:please-enter",
            BTreeMap::new(),
            ErrorCode::NotFound,
        ),
        (theirs.id.as_str(), BTreeMap::new(), ErrorCode::NotFound),
    ];
    for (index, (template, variables, expected)) in cases.into_iter().enumerate() {
        let refused = provider
            .quick_message(&id, template, variables, format!("q{index}"))
            .await
            .unwrap_err();
        assert_eq!(code(refused), expected, "{template}");
    }

    expect_no_event(&patient, Duration::from_millis(100), |event| {
        matches!(event, ServerFrame::Message { .. })
    })
    .await;
    let (messages, _) = patient.history(&id, None, None).await.unwrap();
    assert!(messages.is_empty());
}

#[tokio::test]
async fn an_admin_sends_a_quick_message_for_its_provider_with_the_providers_template() {
    let hub = TestHub::start().await;
    let (id, patient) = joined_patient(&hub).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let own = provider
        .save_template(None, None, "Room", "Please come to room {room}.", None)
        .await
        .unwrap();
    let admin = hub.connect("admin-1", Role::Admin).await;

    admin
        .quick_message(&id, PLEASE_ENTER, BTreeMap::new(), "a1")
        .await
        .unwrap();
    admin
        .quick_message(&id, own.id, vars(&[("room", "4")]), "a2")
        .await
        .unwrap();

    let first = next_message(&patient).await;
    assert_eq!(
        (first.sender.as_str(), first.sender_role, first.kind),
        ("admin-1", Role::Admin, MessageKind::Quick)
    );
    assert_eq!(first.body, "Please enter the consultation now.");
    assert_eq!(next_message(&patient).await.body, "Please come to room 4.");
}

#[tokio::test]
async fn a_quick_message_is_audited_without_its_text() {
    let hub = TestHub::start().await;
    let (id, _patient) = joined_patient(&hub).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let sent = provider
        .quick_message(&id, RUNNING_BEHIND, ten_minutes(), "q1")
        .await
        .unwrap();

    let entries = audited(&hub, &id, "quick_message.send").await;

    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["actor_id"], "dr-a");
    assert_eq!(entry["consultation_id"], id.as_str());
    assert_eq!(entry["detail"]["template_id"], RUNNING_BEHIND);
    assert_eq!(entry["detail"]["seq"], sent.seq.get());
    let text = entry.to_string();
    assert!(
        !text.contains("running 10 minutes") && !text.contains("patience"),
        "the audit log must not hold the text: {text}"
    );
}

#[tokio::test]
async fn an_offline_patient_gets_a_generic_push_after_the_grace_window() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    register_device(&hub, "pat-a", "fcm-pat-a", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    let sent = provider
        .quick_message(&consultation.id, RUNNING_BEHIND, ten_minutes(), "q1")
        .await
        .unwrap();

    let [queued] = sent.notifications.as_slice() else {
        panic!("one push queued: {:?}", sent.notifications);
    };
    assert_eq!(
        (queued.channel, queued.provider.as_str(), queued.reason),
        (AlertChannel::Push, "fcm", NotificationReason::Offline)
    );
    assert_eq!(queued.status, NotificationStatus::Pending);
    assert!(queued.due_at - sent.sent_at >= chrono::Duration::milliseconds(300));

    let pushes = fake.wait_for_pushes(1).await;
    let push = &pushes[0];
    assert!(
        push.received_at >= queued.due_at,
        "sent before the grace window ended"
    );
    assert_eq!(push.token, "fcm-pat-a");
    assert_eq!(push.title, PUSH_TITLE);
    assert_eq!(push.body, GENERIC_PUSH_BODY, "no message text in the push");
    assert_eq!(push.consultation_id, consultation.id.as_str());
    let row = wait_for_status(&hub, &consultation.id, &queued.id, NotificationStatus::Sent).await;
    assert_eq!(row.attempts, 1);
    assert_eq!(fake.pushes().len(), 1);
}

#[tokio::test]
async fn a_patient_app_in_the_background_gets_the_quick_message_push_at_once() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, patient) = joined_patient(&hub).await;
    patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();
    patient.visibility(false).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;

    let sent = provider
        .quick_message(&id, RUNNING_BEHIND, ten_minutes(), "q1")
        .await
        .unwrap();

    let [queued] = sent.notifications.as_slice() else {
        panic!("one push queued: {:?}", sent.notifications);
    };
    assert_eq!(queued.reason, NotificationReason::Quick);
    assert!(
        queued.due_at - sent.sent_at < chrono::Duration::milliseconds(100),
        "due at once, not after the grace or escalation time"
    );
    assert_eq!(next_message(&patient).await.body, BEHIND_TEN);
    let push = &fake.wait_for_pushes(1).await[0];
    assert_eq!(push.body, GENERIC_PUSH_BODY);
    assert_eq!(push.consultation_id, id.as_str());
    wait_for_status(&hub, &id, &queued.id, NotificationStatus::Sent).await;
}

#[tokio::test]
async fn a_foreground_patient_who_acknowledges_delivery_gets_no_push() {
    let fake = FakeProviders::start().await;
    // A wide escalation window, so the acknowledgement always wins the race.
    let hub = fake.hub(|config| config.notify.push_after_ms = 1_000).await;
    let (id, patient) = joined_patient(&hub).await;
    patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;

    let sent = provider
        .quick_message(&id, RUNNING_BEHIND, ten_minutes(), "q1")
        .await
        .unwrap();
    let [queued] = sent.notifications.as_slice() else {
        panic!("one push queued: {:?}", sent.notifications);
    };
    assert_eq!(queued.reason, NotificationReason::Escalation);
    let message = next_message(&patient).await;
    patient
        .ack(&id, message.seq, ReceiptKind::Delivered)
        .await
        .unwrap();

    let row = wait_for_status(&hub, &id, &queued.id, NotificationStatus::Cancelled).await;
    assert_eq!(row.error.as_deref(), Some("acknowledged"));
    assert!(fake.pushes().is_empty(), "{:?}", fake.pushes());
    assert_eq!(notifications(&hub, &id).await.len(), 1);
}

/// With pushes carrying message text, a Quick Message whose variable names
/// the patient (possessive included) goes out with the generic line; the
/// same template with a harmless value carries its text.
#[tokio::test]
async fn a_quick_message_variable_naming_the_patient_never_reaches_the_push_text() {
    let fake = FakeProviders::start().await;
    let hub = fake
        .hub(|config| config.notify.push_include_text = true)
        .await;
    let (id, patient) = joined_patient(&hub).await;
    patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();
    patient.visibility(false).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;
    let template = provider
        .save_template(None, None, "Bring", "Please bring {who} to the call.", None)
        .await
        .unwrap();

    // The harness names the patient "Patient pat-a".
    provider
        .quick_message(
            &id,
            template.id.as_str(),
            vars(&[("who", "Pat's family")]),
            "q1",
        )
        .await
        .unwrap();
    let push = &fake.wait_for_pushes(1).await[0];
    assert_eq!(
        push.body, GENERIC_PUSH_BODY,
        "the name must not reach the push"
    );

    provider
        .quick_message(
            &id,
            template.id.as_str(),
            vars(&[("who", "your ID card")]),
            "q2",
        )
        .await
        .unwrap();
    let pushes = fake.wait_for_pushes(2).await;
    assert_eq!(pushes[1].body, "Please bring your ID card to the call.");
}
