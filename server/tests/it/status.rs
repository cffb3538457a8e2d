//! Consultation status: the path from scheduled to ended over real
//! WebSockets, the patient's early entry, refusals (and that they change
//! nothing), REST cancel, admins acting for providers, and racing changes.
//! Every change must reach the room, the stored row and the audit trail.

use crate::harness::{TestHub, expect_event};
use consult_client::{Client, ClientError};
use consult_protocol::{
    ConsultationId, ConsultationStatus as Status, ConsultationView, ErrorCode, Role, ServerFrame,
};
use serde_json::Value;

/// One `status` frame as a member saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    previous: Status,
    status: Status,
    changed_by: String,
    rev: u64,
}

/// The next `status` frame for `id` that `client` receives.
async fn next_change(client: &Client, id: &ConsultationId) -> Change {
    expect_event(client, |event| match event {
        ServerFrame::Status {
            consultation_id,
            status,
            previous,
            changed_by,
            rev,
            ..
        } if consultation_id == id => Some(Change {
            previous: *previous,
            status: *status,
            changed_by: changed_by.to_string(),
            rev: *rev,
        }),
        _ => None,
    })
    .await
}

/// The consultation as stored, through the REST API.
async fn stored(hub: &TestHub, id: &ConsultationId) -> ConsultationView {
    let (code, body) = hub.api_get(&format!("/v1/consultations/{id}")).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The whole audit trail of a consultation.
async fn audit(hub: &TestHub, id: &ConsultationId) -> Vec<Value> {
    let (code, body) = hub.api_get(&format!("/v1/consultations/{id}/audit")).await;
    assert_eq!(code, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// The status rows of the audit trail as (action, actor id, actor role).
async fn status_audit(hub: &TestHub, id: &ConsultationId) -> Vec<(String, String, String)> {
    audit(hub, id)
        .await
        .iter()
        .filter(|entry| entry["action"].as_str().unwrap().starts_with("status."))
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["actor_id"].as_str().unwrap().to_owned(),
                entry["actor_role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(action: &str, actor: &str, role: &str) -> (String, String, String) {
    (action.to_owned(), actor.to_owned(), role.to_owned())
}

fn code_of(result: Result<ConsultationView, ClientError>) -> Option<ErrorCode> {
    result.expect_err("the hub refuses").code()
}

/// Moves a fresh waiting consultation to `in_progress` through the patient
/// tapping ready and the provider entering.
async fn in_progress(hub: &TestHub, provider: &Client, patient: &Client) -> ConsultationView {
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    patient.ready(&consultation.id).await.unwrap();
    let entered = provider.enter(&consultation.id).await.unwrap();
    assert_eq!(entered.status, Status::InProgress);
    entered
}

/// Asserts every member in `members` receives `expected` as its next
/// `status` frame for `id`: the other member and the one who made it.
async fn members_see(members: &[&Client], id: &ConsultationId, expected: &Change) {
    for member in members {
        assert_eq!(&next_change(member, id).await, expected);
    }
}

fn change(previous: Status, status: Status, by: &str, view: &ConsultationView) -> Change {
    Change {
        previous,
        status,
        changed_by: by.to_owned(),
        rev: view.rev,
    }
}

#[tokio::test]
async fn a_consultation_goes_from_scheduled_to_ended_and_every_change_is_broadcast_stored_and_audited()
 {
    let hub = TestHub::start().await;
    let consultation = hub.consultation("dr-a", "pat-a", "scheduled").await;
    assert_eq!(consultation.status, Status::Scheduled);
    assert_eq!(consultation.waiting_since, None);
    let id = &consultation.id;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(id, None).await.unwrap();
    patient.join(id, None).await.unwrap();
    let room = [&patient, &provider];

    let opened = provider.open(id).await.unwrap();
    assert_eq!(opened.status, Status::WaitingForPatient);
    assert!(opened.waiting_since.is_some(), "opening starts the wait");
    assert!(opened.rev > consultation.rev);
    let expected = change(
        Status::Scheduled,
        Status::WaitingForPatient,
        "dr-a",
        &opened,
    );
    members_see(&room, id, &expected).await;
    let row_now = stored(&hub, id).await;
    assert_eq!(row_now.status, Status::WaitingForPatient);
    assert_eq!(row_now.waiting_since, opened.waiting_since);

    let ready = patient.ready(id).await.unwrap();
    assert_eq!(ready.status, Status::PatientReady);
    assert!(ready.rev > opened.rev);
    let expected = change(
        Status::WaitingForPatient,
        Status::PatientReady,
        "pat-a",
        &ready,
    );
    members_see(&room, id, &expected).await;
    assert_eq!(stored(&hub, id).await.status, Status::PatientReady);

    let entered = provider.enter(id).await.unwrap();
    assert_eq!(entered.status, Status::InProgress);
    assert!(entered.rev > ready.rev);
    let expected = change(Status::PatientReady, Status::InProgress, "dr-a", &entered);
    members_see(&room, id, &expected).await;
    assert_eq!(stored(&hub, id).await.status, Status::InProgress);

    provider
        .send(id, "m-1", "Your biopsy came back benign")
        .await
        .unwrap();

    let ended = provider.end(id).await.unwrap();
    assert_eq!(ended.status, Status::Ended);
    assert!(ended.rev > entered.rev);
    let expected = change(Status::InProgress, Status::Ended, "dr-a", &ended);
    members_see(&room, id, &expected).await;
    assert_eq!(stored(&hub, id).await.status, Status::Ended);

    assert_eq!(
        status_audit(&hub, id).await,
        [
            row("status.open", "dr-a", "provider"),
            row("status.ready", "pat-a", "patient"),
            row("status.enter", "dr-a", "provider"),
            row("status.end", "dr-a", "provider"),
        ]
    );
    let trail = audit(&hub, id).await;
    let opened_row = trail
        .iter()
        .find(|entry| entry["action"] == "status.open")
        .unwrap();
    assert_eq!(opened_row["consultation_id"], id.as_str());
    assert_eq!(opened_row["detail"]["from"], "scheduled");
    assert_eq!(opened_row["detail"]["to"], "waiting_for_patient");
    let text = Value::Array(trail).to_string();
    assert!(
        !text.contains("biopsy"),
        "the audit trail holds no message text: {text}"
    );
}

#[tokio::test]
async fn a_patient_cannot_enter_before_tapping_ready() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let patient = hub.connect("pat-a", Role::Patient).await;

    assert_eq!(code_of(patient.enter(id).await), Some(ErrorCode::NotReady));
    patient.ping().await.expect("connection still works");
    let row_now = stored(&hub, id).await;
    assert_eq!(row_now.status, Status::WaitingForPatient);
    assert_eq!(row_now.rev, consultation.rev);
    assert!(status_audit(&hub, id).await.is_empty());

    patient.ready(id).await.unwrap();
    let entered = patient.enter(id).await.expect("a ready patient may enter");
    assert_eq!(
        entered.status,
        Status::PatientReady,
        "only the provider starts it"
    );
}

#[tokio::test]
async fn a_patient_messaged_first_may_enter_early_and_stays_waiting_until_the_provider_enters() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(id, None).await.unwrap();

    provider
        .send(id, "m-1", "Come in whenever you are set")
        .await
        .unwrap();
    let entered = patient
        .enter(id)
        .await
        .expect("staff messaged first, so the patient may enter");
    assert_eq!(entered.status, Status::WaitingForPatient, "still gold");
    assert!(entered.staff_messaged_first);
    let row_now = stored(&hub, id).await;
    assert_eq!(row_now.status, Status::WaitingForPatient);
    assert_eq!(
        row_now.rev, consultation.rev,
        "the early entry changed nothing"
    );

    let started = provider.enter(id).await.unwrap();
    assert_eq!(started.status, Status::InProgress);
    let seen = next_change(&patient, id).await;
    assert_eq!(seen.previous, Status::WaitingForPatient);
    assert_eq!(seen.status, Status::InProgress);
    assert_eq!(seen.changed_by, "dr-a");
    assert_eq!(stored(&hub, id).await.status, Status::InProgress);
    assert_eq!(
        status_audit(&hub, id).await,
        [row("status.enter", "dr-a", "provider")],
        "the patient's early entry is not a change"
    );
}

#[tokio::test]
async fn transitions_the_machine_does_not_allow_are_refused_and_change_nothing() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;

    let waiting = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    for attempt in [
        provider.end(&waiting.id).await,
        provider.open(&waiting.id).await,
    ] {
        assert_eq!(code_of(attempt), Some(ErrorCode::InvalidTransition));
        provider.ping().await.expect("connection still works");
    }
    let row_now = stored(&hub, &waiting.id).await;
    assert_eq!(row_now.status, Status::WaitingForPatient);
    assert_eq!(row_now.rev, waiting.rev);
    assert!(status_audit(&hub, &waiting.id).await.is_empty());

    let started = in_progress(&hub, &provider, &patient).await;
    assert_eq!(
        code_of(patient.ready(&started.id).await),
        Some(ErrorCode::InvalidTransition)
    );
    patient.ping().await.expect("connection still works");
    let row_now = stored(&hub, &started.id).await;
    assert_eq!(row_now.status, Status::InProgress);
    assert_eq!(row_now.rev, started.rev);
    assert_eq!(status_audit(&hub, &started.id).await.len(), 2);

    // The refusals left both connections able to change status.
    let ended = provider.end(&started.id).await.unwrap();
    assert_eq!(ended.status, Status::Ended);
}

#[tokio::test]
async fn patients_may_not_open_end_or_cancel_and_staff_may_not_tap_ready() {
    let hub = TestHub::start().await;
    let consultation = hub.consultation("dr-a", "pat-a", "scheduled").await;
    let id = &consultation.id;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let admin = hub.connect("adm-1", Role::Admin).await;

    for attempt in [
        patient.open(id).await,
        patient.end(id).await,
        patient.cancel(id).await,
    ] {
        assert_eq!(code_of(attempt), Some(ErrorCode::Forbidden));
        patient.ping().await.expect("connection still works");
    }
    for staff in [&provider, &admin] {
        assert_eq!(code_of(staff.ready(id).await), Some(ErrorCode::Forbidden));
        staff.ping().await.expect("connection still works");
    }
    let row_now = stored(&hub, id).await;
    assert_eq!(row_now.status, Status::Scheduled);
    assert_eq!(row_now.rev, consultation.rev);
    assert!(status_audit(&hub, id).await.is_empty());

    let ready = patient
        .ready(id)
        .await
        .expect("the patient's own action works");
    assert_eq!(ready.status, Status::PatientReady);
}

#[tokio::test]
async fn nothing_changes_an_ended_or_cancelled_consultation_and_no_message_reaches_it() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let admin = hub.connect("adm-1", Role::Admin).await;

    let ended = in_progress(&hub, &provider, &patient).await;
    let ended = provider.end(&ended.id).await.unwrap();
    let cancelled = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let (code, body) = hub
        .api_post(
            &format!("/v1/consultations/{}/cancel", cancelled.id),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let cancelled = stored(&hub, &cancelled.id).await;
    assert_eq!(cancelled.status, Status::Cancelled);

    for closed in [&ended, &cancelled] {
        let id = &closed.id;
        let audited = status_audit(&hub, id).await.len();
        let attempts = [
            provider.open(id).await,
            provider.enter(id).await,
            provider.end(id).await,
            provider.cancel(id).await,
            admin.cancel(id).await,
            patient.ready(id).await,
            patient.enter(id).await,
            patient.cancel(id).await,
        ];
        for attempt in attempts {
            assert_eq!(code_of(attempt), Some(ErrorCode::ConsultationClosed));
        }
        for sender in [&provider, &patient] {
            let error = sender
                .send(id, "late-1", "anyone there?")
                .await
                .unwrap_err();
            assert_eq!(error.code(), Some(ErrorCode::ConsultationClosed));
            sender.ping().await.expect("connection still works");
        }
        let row_now = stored(&hub, id).await;
        assert_eq!(row_now.status, closed.status);
        assert_eq!(row_now.rev, closed.rev);
        assert_eq!(row_now.last_seq, closed.last_seq, "no message was stored");
        assert_eq!(status_audit(&hub, id).await.len(), audited);
    }
}

#[tokio::test]
async fn tapping_ready_twice_changes_nothing_the_second_time() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(id, None).await.unwrap();

    let first = patient.ready(id).await.unwrap();
    let second = patient.ready(id).await.expect("a second tap is fine");
    assert_eq!(second.status, Status::PatientReady);
    assert_eq!(second.rev, first.rev, "the second tap is not a change");
    assert_eq!(stored(&hub, id).await.rev, first.rev);
    assert_eq!(
        status_audit(&hub, id).await,
        [row("status.ready", "pat-a", "patient")]
    );

    // Frames arrive in order: the one after the first tap's must be the
    // provider entering, not a second "patient ready".
    assert_eq!(
        next_change(&provider, id).await.status,
        Status::PatientReady
    );
    provider.enter(id).await.unwrap();
    let after = next_change(&provider, id).await;
    assert_eq!(
        (after.previous, after.status),
        (Status::PatientReady, Status::InProgress)
    );
}

#[tokio::test]
async fn cancelling_over_rest_tells_the_room_and_a_second_cancel_is_a_conflict() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(id, None).await.unwrap();
    patient.join(id, None).await.unwrap();

    let path = format!("/v1/consultations/{id}/cancel");
    let (code, body) = hub.api_post(&path, Value::Null).await;
    assert_eq!(code, 200, "{body}");
    let view: ConsultationView = serde_json::from_value(body).unwrap();
    assert_eq!(view.status, Status::Cancelled);
    for member in [&provider, &patient] {
        let seen = next_change(member, id).await;
        assert_eq!(
            seen,
            Change {
                previous: Status::WaitingForPatient,
                status: Status::Cancelled,
                changed_by: "platform".to_owned(),
                rev: view.rev,
            }
        );
    }

    let (code, body) = hub.api_post(&path, Value::Null).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["code"], "consultation_closed");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(stored(&hub, id).await.rev, view.rev);
    assert_eq!(
        status_audit(&hub, id).await,
        [row("status.cancel", "platform", "admin")]
    );
}

#[tokio::test]
async fn a_clinic_admin_may_enter_and_end_for_its_providers() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let admin = hub.connect("adm-1", Role::Admin).await;
    let outsider = hub.connect_in("adm-x", Role::Admin, "clinic-2").await;
    patient.join(id, None).await.unwrap();
    patient.ready(id).await.unwrap();

    assert_eq!(
        code_of(outsider.enter(id).await),
        Some(ErrorCode::Forbidden)
    );
    let entered = admin.enter(id).await.unwrap();
    assert_eq!(entered.status, Status::InProgress);
    let seen = next_change(&patient, id).await;
    assert_eq!(
        (seen.status, seen.changed_by.as_str()),
        (Status::PatientReady, "pat-a")
    );
    let seen = next_change(&patient, id).await;
    assert_eq!(
        (seen.status, seen.changed_by.as_str()),
        (Status::InProgress, "adm-1")
    );

    assert_eq!(code_of(outsider.end(id).await), Some(ErrorCode::Forbidden));
    let ended = admin.end(id).await.unwrap();
    assert_eq!(ended.status, Status::Ended);
    let seen = next_change(&patient, id).await;
    assert_eq!(
        (seen.status, seen.changed_by.as_str()),
        (Status::Ended, "adm-1")
    );
    assert_eq!(stored(&hub, id).await.status, Status::Ended);
    assert_eq!(
        status_audit(&hub, id).await,
        [
            row("status.ready", "pat-a", "patient"),
            row("status.enter", "adm-1", "admin"),
            row("status.end", "adm-1", "admin"),
        ]
    );
}

/// The audit action of a successful attempt, checking refusals are the
/// expected kind.
fn audited_action(result: &Result<ConsultationView, ClientError>, action: &str) -> Option<String> {
    match result {
        Ok(_) => Some(format!("status.{action}")),
        Err(error) => {
            assert_eq!(error.code(), Some(ErrorCode::ConsultationClosed), "{error}");
            None
        }
    }
}

#[tokio::test]
async fn a_provider_entering_while_an_admin_cancels_ends_consistent() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let admin = hub.connect("adm-1", Role::Admin).await;
    for _ in 0..8 {
        let consultation = hub
            .consultation("dr-a", "pat-a", "waiting_for_patient")
            .await;
        let id = &consultation.id;
        let ready = patient.ready(id).await.unwrap();

        let (entered, cancelled) = tokio::join!(provider.enter(id), admin.cancel(id));
        // Cancel is allowed from both patient_ready and in_progress, so it
        // always wins; enter succeeds only if it came first.
        let cancelled = cancelled.expect("cancel is allowed from any open status");
        assert_eq!(cancelled.status, Status::Cancelled);
        let mut expected = vec!["status.ready".to_owned()];
        expected.extend(audited_action(&entered, "enter"));
        expected.push("status.cancel".to_owned());

        let row_now = stored(&hub, id).await;
        assert_eq!(row_now.status, Status::Cancelled);
        let changes = u64::try_from(expected.len() - 1).unwrap();
        assert_eq!(row_now.rev, ready.rev + changes, "one revision per change");
        let actions: Vec<String> = status_audit(&hub, id)
            .await
            .into_iter()
            .map(|(action, ..)| action)
            .collect();
        assert_eq!(actions, expected);
    }
}

#[tokio::test]
async fn ending_and_cancelling_at_once_lets_exactly_one_win() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    let admin = hub.connect("adm-1", Role::Admin).await;
    for _ in 0..8 {
        let started = in_progress(&hub, &provider, &patient).await;
        let id = &started.id;

        let (ended, cancelled) = tokio::join!(provider.end(id), admin.cancel(id));
        let winners: Vec<String> = [
            audited_action(&ended, "end"),
            audited_action(&cancelled, "cancel"),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(winners.len(), 1, "exactly one of end and cancel applies");

        let row_now = stored(&hub, id).await;
        let expected_status = if ended.is_ok() {
            Status::Ended
        } else {
            Status::Cancelled
        };
        assert_eq!(row_now.status, expected_status);
        assert_eq!(row_now.rev, started.rev + 1);
        let actions: Vec<String> = status_audit(&hub, id)
            .await
            .into_iter()
            .map(|(action, ..)| action)
            .collect();
        assert_eq!(actions[2..], winners[..]);
    }
}
