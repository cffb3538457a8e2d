//! `POST /v1/consultations/{id}/messages`: the platform's messages reach
//! the room live, are idempotent by `client_msg_id`, follow the
//! notification rules, are audited, and bad requests get JSON errors.

use crate::harness::providers::{FakeProviders, audited, register_device};
use crate::harness::{TestHub, expect_event};
use consult_protocol::{MessageKind, Role, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn a_platform_message_reaches_the_room_live_once_however_often_it_is_posted() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();
    let path = format!("/v1/consultations/{}/messages", consultation.id);
    let body = json!({"client_msg_id": "p-1", "body": "Your provider will join in a moment."});

    let (status, posted) = hub.api_post(&path, body.clone()).await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(
        (posted["seq"].as_u64(), &posted["duplicate"]),
        (Some(1), &json!(false))
    );
    let live = expect_event(&patient, |event| match event {
        ServerFrame::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(live.kind, MessageKind::System);
    assert_eq!(live.sender.to_string(), "platform");
    assert_eq!(live.body, "Your provider will join in a moment.");

    let (status, again) = hub.api_post(&path, body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["seq"].as_u64(), &again["duplicate"]),
        (Some(1), &json!(true))
    );
    let (status, conflict) = hub
        .api_post(
            &path,
            json!({"client_msg_id": "p-1", "body": "Something else."}),
        )
        .await;
    assert_eq!(
        (status, &conflict["code"]),
        (409, &json!("duplicate_client_msg_id"))
    );

    let (_, history) = hub.api_get(&path).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        audited(&hub, &consultation.id, "message.platform")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_message_on_the_providers_behalf_to_an_absent_patient_queues_its_push() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    register_device(&hub, "pat-a", "fcm-pat-a", true).await;
    let path = format!("/v1/consultations/{}/messages", consultation.id);
    let (status, posted) = hub
        .api_post(
            &path,
            json!({"client_msg_id": "p-2", "body": "Running 5 minutes late.", "sender_id": "dr-a"}),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    let queued = posted["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(queued.len(), 1, "{posted}");
    assert_eq!(queued[0]["channel"], "push");
    let pushes = fake.wait_for_pushes(1).await;
    assert_eq!(pushes[0].token, "fcm-pat-a");
    let (_, history) = hub.api_get(&path).await;
    assert_eq!(history["messages"][0]["sender"], "dr-a");
    assert_eq!(history["messages"][0]["kind"], "chat");
}

#[tokio::test]
async fn bad_platform_messages_get_json_errors_and_nothing_is_stored() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let path = format!("/v1/consultations/{}/messages", consultation.id);
    for (body, status, code) in [
        (
            json!({"client_msg_id": "b-1", "body": ""}),
            400,
            "invalid_value",
        ),
        (
            json!({"client_msg_id": "b-2", "body": "Hello.", "sender_id": "pat-a"}),
            400,
            "invalid_value",
        ),
        (json!({"body": "Hello."}), 422, "invalid_json"),
        (
            json!({"client_msg_id": "b-3", "body": "Hello.", "extra": 1}),
            422,
            "invalid_json",
        ),
    ] {
        let (got, answer) = hub.api_post(&path, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let (got, answer) = hub
        .api_post(
            "/v1/consultations/no-such-consultation/messages",
            json!({"client_msg_id": "b-4", "body": "Hello."}),
        )
        .await;
    assert_eq!((got, answer["code"].as_str()), (404, Some("not_found")));
    let anonymous = hub
        .http
        .post(hub.url(&path))
        .json(&json!({"client_msg_id": "b-5", "body": "Hello."}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (_, history) = hub.api_get(&path).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(0));

    let (cancelled, _) = hub
        .api_post(
            &format!("/v1/consultations/{}/cancel", consultation.id),
            json!({}),
        )
        .await;
    assert_eq!(cancelled, 200);
    let (got, answer) = hub
        .api_post(&path, json!({"client_msg_id": "b-6", "body": "Hello."}))
        .await;
    assert_eq!(
        (got, answer["code"].as_str()),
        (409, Some("consultation_closed"))
    );
}
