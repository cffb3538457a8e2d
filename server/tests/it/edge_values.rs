//! Values that one store would keep and the other refuse are refused at
//! the edge with 400 `invalid_value`, on both stores alike, and the longest
//! valid ids work end to end (found by Schemathesis on PostgreSQL).

use crate::harness::TestHub;
use serde_json::{Value, json};

fn assert_invalid(answer: &(u16, Value), what: &str) {
    assert_eq!(
        (answer.0, &answer.1["code"]),
        (400, &json!("invalid_value")),
        "{what}: {}",
        answer.1
    );
}

fn consultation_body(provider_name: &str, clinic_name: Option<&str>) -> Value {
    let mut body = json!({
        "clinic_id": "clinic-edge",
        "provider": {"id": "dr-edge", "display_name": provider_name},
        "patient": {"id": "pat-edge", "display_name": "Pat"},
    });
    if let Some(name) = clinic_name {
        body["clinic_name"] = json!(name);
    }
    body
}

#[tokio::test]
async fn control_characters_in_names_and_titles_are_refused_and_nothing_is_stored() {
    let hub = TestHub::start().await;
    for name in ["Dr\u{0}Nul", "Dr\u{7}Bell", "Dr\nNewline"] {
        let answer = hub
            .api_post("/v1/consultations", consultation_body(name, None))
            .await;
        assert_invalid(&answer, name);
    }
    for clinic_name in ["", "  ", "Clinic\u{0}"] {
        let answer = hub
            .api_post(
                "/v1/consultations",
                consultation_body("Dr E", Some(clinic_name)),
            )
            .await;
        assert_invalid(&answer, clinic_name);
    }
    let (status, missing) = hub.api_get("/v1/participants/dr-edge").await;
    assert_eq!(status, 404, "nothing was stored: {missing}");

    let answer = hub
        .api_put(
            "/v1/participants/pat-edge",
            json!({"clinic_id": "clinic-edge", "role": "patient", "display_name": "Pat",
                   "preferred_name": "P\u{0}"}),
        )
        .await;
    assert_invalid(&answer, "preferred_name");

    let answer = hub
        .api_post(
            "/v1/clinics/clinic-edge/templates",
            json!({"title": "Late\u{0}", "body": "Running late."}),
        )
        .await;
    assert_invalid(&answer, "title");
}

#[tokio::test]
async fn ids_longer_than_128_are_refused_in_paths_and_bodies() {
    let hub = TestHub::start().await;
    let long = "c".repeat(129);
    for path in [
        format!("/v1/clinics/{long}/templates"),
        format!("/v1/clinics/{long}/policy"),
    ] {
        assert_invalid(&hub.api_get(&path).await, &path);
    }
    for path in ["/v1/revocations/users", "/v1/disconnections"] {
        let answer = hub
            .api_post(path, json!({"clinic": "clinic-edge", "user": long}))
            .await;
        assert_invalid(&answer, path);
        let answer = hub
            .api_post(path, json!({"clinic": long, "user": "pat-edge"}))
            .await;
        assert_invalid(&answer, path);
    }
}

#[tokio::test]
async fn a_clinic_with_a_128_character_id_gets_its_default_templates() {
    let hub = TestHub::start().await;
    let clinic = "k".repeat(128);
    let (status, list) = hub
        .api_get(&format!("/v1/clinics/{clinic}/templates"))
        .await;
    assert_eq!(status, 200, "{list}");
    let templates = list["templates"].as_array().unwrap();
    assert!(!templates.is_empty(), "{list}");
    assert!(templates.iter().all(|t| t["clinic_id"] == json!(clinic)));
    let (status, created) = hub
        .api_post(
            &format!("/v1/clinics/{clinic}/templates"),
            json!({"title": "Parking", "body": "Parking is behind the building."}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
}

/// Ids that break the id rule (a NUL, a space, a slash once decoded, more
/// than 128 characters) in a path, a query or a command are refused as
/// `invalid_value` on both stores, never looked up.
#[tokio::test]
async fn ids_breaking_the_rule_are_refused_in_paths_queries_and_commands() {
    use crate::harness::raw::RawSocket;
    use consult_protocol::Role;

    let hub = TestHub::start().await;
    let long = "c".repeat(129);
    for bad in ["a%00b", "a%20b", "a%2Fb", long.as_str()] {
        for path in [
            format!("/v1/consultations/{bad}"),
            format!("/v1/consultations/{bad}/messages"),
            format!("/v1/consultations/{bad}/audit"),
            format!("/v1/participants/{bad}"),
            format!("/v1/participants/{bad}/presence"),
            format!("/v1/consultations?provider_id={bad}"),
            format!("/v1/consultations?clinic_id={bad}"),
        ] {
            assert_invalid(&hub.api_get(&path).await, &path);
        }
    }

    let token = hub.token("dr-a", Role::Provider, crate::harness::CLINIC);
    let mut socket = RawSocket::authenticated(&hub.ws_url(), &token).await;
    for (n, bad) in ["a\u{0}b", "a b", long.as_str()].into_iter().enumerate() {
        for command in [
            json!({"type": "join", "consultation_id": bad}),
            json!({"type": "send", "consultation_id": bad, "client_msg_id": "m", "body": "hi"}),
            json!({"type": "history", "consultation_id": bad}),
            json!({"type": "alert", "consultation_id": bad, "client_msg_id": "a", "body": "Please open the app",
                   "channels": ["push"]}),
            json!({"type": "list_templates", "provider_id": bad}),
        ] {
            let answer = socket.command(command.clone(), &format!("c{n}")).await;
            assert_eq!(answer["type"], "error", "{command}: {answer}");
            assert_eq!(answer["code"], "invalid_value", "{command}: {answer}");
        }
    }
    let pong = socket.command(json!({"type": "ping"}), "p").await;
    assert_eq!(pong["type"], "ok", "the session goes on: {pong}");
}
