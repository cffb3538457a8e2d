//! The REST API for the host platform: participants, consultations, message
//! history, the audit trail and tokens, behind `Authorization: Bearer <key>`;
//! its JSON errors; and `/healthz`, `/readyz` and `/metrics`.

use crate::harness::{API_KEY, CLINIC, TestHub};
use consult_client::Client;
use consult_hub::config::SqliteSync;
use consult_protocol::{ConsultationStatus, ConsultationView, Role};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// Status and JSON body of a response (`Null` when the body is not JSON).
async fn parts(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts an error response: `status` and a JSON body `{code, message}`.
#[track_caller]
fn assert_error(response: &(u16, Value), status: u16, code: &str) {
    let (got, body) = response;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error carries a message: {body}"
    );
}

/// Creates a consultation in `clinic` through the API.
async fn create(
    hub: &TestHub,
    clinic: &str,
    provider: &str,
    patient: &str,
    status: &str,
) -> ConsultationView {
    let (code, body) = hub
        .api_post(
            "/v1/consultations",
            json!({
                "clinic_id": clinic,
                "provider": { "id": provider, "display_name": "Dr. Who" },
                "patient": { "id": patient, "display_name": "Pat Smith" },
                "status": status,
            }),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The ids of a `{"consultations": [...]}` list, in order.
async fn listed(hub: &TestHub, query: &str) -> Vec<String> {
    let (code, body) = hub.api_get(&format!("/v1/consultations{query}")).await;
    assert_eq!(code, 200, "{body}");
    body["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_participant_is_created_updated_and_read_back() {
    let hub = TestHub::start().await;
    let (code, body) = hub.api_get("/v1/participants/pat-1").await;
    assert_error(&(code, body), 404, "not_found");

    let person = json!({
        "clinic_id": CLINIC,
        "role": "patient",
        "display_name": "Alex Rivera",
        "phone": "+15550100001",
    });
    let response = hub
        .http
        .put(hub.url("/v1/participants/pat-1"))
        .bearer_auth(API_KEY)
        .json(&person)
        .send()
        .await
        .unwrap();
    let (code, body) = parts(response).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"], "pat-1");
    assert_eq!(body["phone"], "+15550100001");

    let renamed = json!({ "clinic_id": CLINIC, "role": "patient", "display_name": "Alex R." });
    let response = hub
        .http
        .put(hub.url("/v1/participants/pat-1"))
        .bearer_auth(API_KEY)
        .json(&renamed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let (code, body) = hub.api_get("/v1/participants/pat-1").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["display_name"], "Alex R.");
    assert_eq!(body["role"], "patient");
    assert_eq!(body["clinic_id"], CLINIC);
    assert!(body.get("preferred_name").is_none(), "{body}");

    let short = json!({ "clinic_id": CLINIC, "role": "patient", "display_name": "Alex R.",
                        "preferred_name": "Lexi" });
    let (code, body) =
        crate::harness::providers::api(&hub, reqwest::Method::PUT, "/v1/participants/pat-1", short)
            .await;
    assert_eq!(code, 200, "{body}");
    let (_, body) = hub.api_get("/v1/participants/pat-1").await;
    assert_eq!(body["preferred_name"], "Lexi");

    let blank = json!({ "clinic_id": CLINIC, "role": "patient", "display_name": "Alex R.",
                        "preferred_name": " " });
    let refused =
        crate::harness::providers::api(&hub, reqwest::Method::PUT, "/v1/participants/pat-1", blank)
            .await;
    assert_error(&refused, 400, "invalid_value");
}

#[tokio::test]
async fn creating_a_consultation_answers_201_with_the_view_that_get_returns() {
    let hub = TestHub::start().await;
    let (code, created) = hub
        .api_post(
            "/v1/consultations",
            json!({
                "clinic_id": CLINIC,
                "clinic_name": "Riverside",
                "provider": { "id": "dr-a", "display_name": "Dr. A" },
                "patient": { "id": "pat-a", "display_name": "Pat A", "phone": "+15550001111" },
                "scheduled_at": "2030-01-02T03:04:05Z",
            }),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"], "scheduled", "the default status");
    assert_eq!(created["provider_id"], "dr-a");
    assert_eq!(created["patient_id"], "pat-a");
    assert_eq!(created["clinic_id"], CLINIC);
    assert_eq!(created["last_seq"], 0);
    assert_eq!(created["scheduled_at"], "2030-01-02T03:04:05Z");
    let id = created["id"].as_str().unwrap();
    assert!(!id.is_empty());

    let (code, fetched) = hub.api_get(&format!("/v1/consultations/{id}")).await;
    assert_eq!(code, 200, "{fetched}");
    assert_eq!(fetched, created);

    let (code, provider) = hub.api_get("/v1/participants/dr-a").await;
    assert_eq!(code, 200, "the provider was registered: {provider}");
    assert_eq!(provider["role"], "provider");
}

#[tokio::test]
async fn only_scheduled_or_waiting_consultations_can_be_created() {
    let hub = TestHub::start().await;
    let (code, body) = hub
        .api_post(
            "/v1/consultations",
            json!({
                "clinic_id": CLINIC,
                "provider": { "id": "dr-a", "display_name": "Dr. A" },
                "patient": { "id": "pat-a", "display_name": "Pat A" },
                "status": "in_progress",
            }),
        )
        .await;
    assert_error(&(code, body), 400, "invalid_value");
    assert!(listed(&hub, "").await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn the_list_filters_by_clinic_provider_status_and_limit() {
    let hub = TestHub::start().await;
    let a_scheduled = create(&hub, CLINIC, "dr-a", "pat-1", "scheduled").await;
    let a_waiting = create(&hub, CLINIC, "dr-a", "pat-2", "waiting_for_patient").await;
    let b_waiting = create(&hub, CLINIC, "dr-b", "pat-3", "waiting_for_patient").await;
    let other_clinic = create(&hub, "clinic-2", "dr-c", "pat-4", "scheduled").await;
    let cancelled = create(&hub, CLINIC, "dr-a", "pat-5", "scheduled").await;
    let (code, body) = hub
        .api_post(
            &format!("/v1/consultations/{}/cancel", cancelled.id),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "{body}");

    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let ids =
        |views: &[&ConsultationView]| sorted(views.iter().map(|v| v.id.to_string()).collect());

    assert_eq!(listed(&hub, "").await.len(), 5);
    assert_eq!(
        sorted(listed(&hub, "?clinic_id=clinic-2").await),
        ids(&[&other_clinic])
    );
    assert_eq!(
        sorted(listed(&hub, "?provider_id=dr-a").await),
        ids(&[&a_scheduled, &a_waiting, &cancelled])
    );
    assert_eq!(
        sorted(listed(&hub, "?status=waiting_for_patient").await),
        ids(&[&a_waiting, &b_waiting])
    );
    assert_eq!(
        sorted(listed(&hub, "?status=waiting_for_patient,cancelled").await),
        ids(&[&a_waiting, &b_waiting, &cancelled])
    );
    assert_eq!(
        sorted(
            listed(
                &hub,
                &format!("?clinic_id={CLINIC}&provider_id=dr-a&status=scheduled")
            )
            .await
        ),
        ids(&[&a_scheduled])
    );
    assert!(listed(&hub, "?status=ended").await.is_empty());
    assert_eq!(listed(&hub, "?limit=2").await.len(), 2);
}

#[tokio::test]
async fn the_list_refuses_unknown_statuses_and_limits_out_of_range() {
    let hub = TestHub::start().await;
    create(&hub, CLINIC, "dr-a", "pat-1", "scheduled").await;
    for query in [
        "?status=waiting_for_patient,bogus",
        "?status=",
        "?limit=0",
        "?limit=501",
    ] {
        let response = hub.api_get(&format!("/v1/consultations{query}")).await;
        assert_error(&response, 400, "invalid_value");
    }
    for query in ["?limit=many", "?colour=blue"] {
        let response = hub.api_get(&format!("/v1/consultations{query}")).await;
        assert_error(&response, 400, "invalid_query");
    }
    assert_eq!(listed(&hub, "?limit=500").await.len(), 1);
}

#[tokio::test]
async fn open_moves_a_scheduled_consultation_to_waiting_and_is_audited() {
    let hub = TestHub::start().await;
    let consultation = create(&hub, CLINIC, "dr-a", "pat-a", "scheduled").await;
    let open = format!("/v1/consultations/{}/open", consultation.id);
    let (code, opened) = hub.api_post(&open, Value::Null).await;
    assert_eq!(code, 200, "{opened}");
    let opened: ConsultationView = serde_json::from_value(opened).unwrap();
    assert_eq!(opened.status, ConsultationStatus::WaitingForPatient);
    assert!(opened.rev > consultation.rev, "a status change bumps rev");
    assert!(opened.waiting_since.is_some());

    let again = hub.api_post(&open, Value::Null).await;
    assert_error(&again, 409, "invalid_transition");

    let (code, trail) = hub
        .api_get(&format!("/v1/consultations/{}/audit", consultation.id))
        .await;
    assert_eq!(code, 200, "{trail}");
    let entries = trail["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["consultation.create", "status.open"]);
    let open_entry = &entries[1];
    assert_eq!(open_entry["actor_id"], "platform");
    assert_eq!(open_entry["consultation_id"], consultation.id.as_str());
    assert_eq!(open_entry["detail"]["from"], "scheduled");
    assert_eq!(open_entry["detail"]["to"], "waiting_for_patient");
}

#[tokio::test]
async fn cancel_reaches_the_room_and_a_second_cancel_is_consultation_closed() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&consultation.id, None).await.unwrap();

    let cancel = format!("/v1/consultations/{}/cancel", consultation.id);
    let (code, body) = hub.api_post(&cancel, Value::Null).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    let status = crate::harness::expect_event(&patient, |event| match event {
        consult_protocol::ServerFrame::Status {
            status, changed_by, ..
        } => Some((*status, changed_by.to_string())),
        _ => None,
    })
    .await;
    assert_eq!(
        status,
        (ConsultationStatus::Cancelled, "platform".to_owned())
    );

    let again = hub.api_post(&cancel, Value::Null).await;
    assert_error(&again, 409, "consultation_closed");
    let (_, fetched) = hub
        .api_get(&format!("/v1/consultations/{}", consultation.id))
        .await;
    assert_eq!(fetched["status"], "cancelled");
}

#[tokio::test]
async fn message_history_pages_backwards_through_the_api() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for i in 1..=5 {
        provider
            .send(&consultation.id, format!("m-{i}"), format!("note {i}"))
            .await
            .unwrap();
    }
    let path = format!("/v1/consultations/{}/messages", consultation.id);
    let seqs = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };

    let (code, newest) = hub.api_get(&format!("{path}?limit=2")).await;
    assert_eq!(code, 200, "{newest}");
    assert_eq!(seqs(&newest), [4, 5]);
    assert_eq!(newest["has_more"], true);
    assert_eq!(newest["messages"][1]["body"], "note 5");
    assert_eq!(newest["messages"][1]["sender"], "dr-a");

    let (_, older) = hub.api_get(&format!("{path}?before=4&limit=10")).await;
    assert_eq!(seqs(&older), [1, 2, 3]);
    assert_eq!(older["has_more"], false);

    let (_, all) = hub.api_get(&path).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);

    let zero = hub.api_get(&format!("{path}?limit=0")).await;
    assert_error(&zero, 400, "invalid_value");
    let unknown = hub.api_get("/v1/consultations/no-such/messages").await;
    assert_error(&unknown, 404, "not_found");
}

#[tokio::test]
async fn an_issued_token_authenticates_a_websocket_within_the_ttl_bounds() {
    let hub = TestHub::start().await;
    let before = chrono::Utc::now();
    let (code, body) = hub
        .api_post(
            "/v1/tokens",
            json!({ "user": "pat-z", "role": "patient", "clinic": CLINIC, "ttl_secs": 120 }),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["expires_at"].clone()).unwrap();
    let lifetime = (expires_at - before).num_seconds();
    assert!((110..=130).contains(&lifetime), "expires in {lifetime} s");

    let token = body["token"].as_str().unwrap();
    let (client, welcome) = Client::connect(&hub.ws_url(), token).await.unwrap();
    assert_eq!(welcome.user.as_str(), "pat-z");
    assert_eq!(welcome.role, Role::Patient);
    assert_eq!(welcome.clinic.as_str(), CLINIC);
    client.ping().await.unwrap();

    let (code, body) = hub
        .api_post(
            "/v1/tokens",
            json!({ "user": "dr-z", "role": "provider", "clinic": CLINIC, "ttl_secs": 86_400 }),
        )
        .await;
    assert_eq!(code, 200, "the longest ttl is allowed: {body}");
    for ttl in [0, 86_401] {
        let response = hub
            .api_post(
                "/v1/tokens",
                json!({ "user": "dr-z", "role": "provider", "clinic": CLINIC, "ttl_secs": ttl }),
            )
            .await;
        assert_error(&response, 400, "invalid_value");
    }
    let empty_user = hub
        .api_post(
            "/v1/tokens",
            json!({ "user": "", "role": "provider", "clinic": CLINIC }),
        )
        .await;
    assert_error(&empty_user, 400, "invalid_value");
}

#[tokio::test]
async fn requests_without_the_api_key_in_the_authorization_header_are_unauthorized() {
    let hub = TestHub::start().await;
    hub.consultation("dr-a", "pat-a", "scheduled").await;
    let list = hub.url("/v1/consultations");

    let missing = parts(hub.http.get(&list).send().await.unwrap()).await;
    assert_error(&missing, 401, "unauthorized");
    let wrong = parts(
        hub.http
            .get(&list)
            .bearer_auth("not-the-key")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&wrong, 401, "unauthorized");
    let basic = parts(
        hub.http
            .get(&list)
            .basic_auth(API_KEY, None::<&str>)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&basic, 401, "unauthorized");
    let in_query = parts(
        hub.http
            .get(format!("{list}?api_key={API_KEY}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&in_query, 401, "unauthorized");
    let create_without_key = parts(
        hub.http
            .post(format!("{list}?api_key={API_KEY}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&create_without_key, 401, "unauthorized");

    assert_eq!(listed(&hub, "").await.len(), 1, "the right key still works");
}

#[tokio::test]
async fn bad_bodies_are_refused_with_json_errors_and_store_nothing() {
    let hub = TestHub::start().await;
    let post_raw = |body: &'static str, content_type: &'static str| {
        hub.http
            .post(hub.url("/v1/consultations"))
            .bearer_auth(API_KEY)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };

    let malformed = parts(
        post_raw(r#"{"clinic_id": "clinic-1", "#, "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_error(&malformed, 400, "invalid_json");

    let valid = r#"{"clinic_id":"clinic-1","provider":{"id":"dr-a","display_name":"A"},"patient":{"id":"pat-a","display_name":"P"}}"#;
    let wrong_type = parts(post_raw(valid, "text/plain").await.unwrap()).await;
    assert_error(&wrong_type, 415, "unsupported_media_type");

    let unknown_field = r#"{"clinic_id":"clinic-1","provider":{"id":"dr-a","display_name":"A"},"patient":{"id":"pat-a","display_name":"P"},"priority":"high"}"#;
    let unknown = parts(post_raw(unknown_field, "application/json").await.unwrap()).await;
    assert_error(&unknown, 422, "invalid_json");
    assert!(
        unknown.1["message"].as_str().unwrap().contains("priority"),
        "the message names the field: {}",
        unknown.1
    );

    let bad_phone = hub
        .api_post(
            "/v1/consultations",
            json!({
                "clinic_id": CLINIC,
                "provider": { "id": "dr-a", "display_name": "A" },
                "patient": { "id": "pat-a", "display_name": "P", "phone": "555-1234" },
            }),
        )
        .await;
    assert_error(&bad_phone, 400, "invalid_value");
    assert!(listed(&hub, "").await.is_empty(), "nothing was created");

    let participant = parts(
        hub.http
            .put(hub.url("/v1/participants/pat-b"))
            .bearer_auth(API_KEY)
            .json(&json!({
                "clinic_id": CLINIC,
                "role": "patient",
                "display_name": "B",
                "phone": "+1555",
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&participant, 400, "invalid_value");
    let missing = hub.api_get("/v1/participants/pat-b").await;
    assert_error(&missing, 404, "not_found");

    let missing_fields = hub.api_post("/v1/consultations", json!({})).await;
    assert_error(&missing_fields, 422, "invalid_json");
}

#[tokio::test]
async fn unknown_consultations_and_routes_are_json_404s() {
    let hub = TestHub::start().await;
    for path in [
        "/v1/consultations/no-such",
        "/v1/consultations/no-such/audit",
    ] {
        assert_error(&hub.api_get(path).await, 404, "not_found");
    }
    for path in [
        "/v1/consultations/no-such/open",
        "/v1/consultations/no-such/cancel",
    ] {
        assert_error(&hub.api_post(path, Value::Null).await, 404, "not_found");
    }
    assert_error(&hub.api_get("/v1/no-such-route").await, 404, "not_found");
    let anonymous = parts(hub.http.get(hub.url("/nowhere")).send().await.unwrap()).await;
    assert_error(&anonymous, 404, "not_found");
}

#[tokio::test]
async fn health_and_readiness_answer_200_with_their_checks() {
    let hub = TestHub::start().await;
    let health = parts(hub.http.get(hub.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(health.0, 200, "{}", health.1);
    let ready = parts(hub.http.get(hub.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    let mut checks = ready.1.clone();
    let workers = checks
        .as_object_mut()
        .and_then(|body| body.remove("workers"))
        .expect("the workers' states");
    assert_eq!(
        checks,
        json!({ "status": "ready", "database": "ok", "broker": "healthy", "node_id": "ok" })
    );
    assert_eq!(workers["writer"], "running", "{workers}");
}

#[tokio::test]
async fn commands_are_timed_by_kind() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&consultation.id, None).await.unwrap();
    provider
        .send(&consultation.id, "m-1", "hello")
        .await
        .unwrap();
    provider
        .send(&consultation.id, "m-2", "again")
        .await
        .unwrap();
    let text = hub.metrics_text().await;
    let count = |command: &str| {
        crate::harness::metric(
            &text,
            &format!("consult_command_seconds_count{{command=\"{command}\"}}"),
        )
    };
    assert!(count("send") >= 2.0, "{text}");
    assert!(count("join") >= 1.0, "{text}");
}

/// Waits (up to 10 s) until the hub's metric `count` is at least 1.
async fn wait_for_a_count(hub: &TestHub, count: &str) {
    crate::harness::cluster::wait_until(std::time::Duration::from_secs(10), count, || async {
        hub.metric(count).await >= 1.0
    })
    .await;
}

/// Waits `millis` and checks that `hub` counted nothing under `count`.
async fn assert_no_count_after(hub: &TestHub, count: &str, millis: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    let text = hub.metrics_text().await;
    assert!(
        crate::harness::metric(&text, count).abs() < f64::EPSILON,
        "{count}: {text}"
    );
}

/// A hub where a provider has sent three messages, one at a time.
async fn hub_with_three_messages_sent() -> TestHub {
    hub_configured_with_three_messages_sent(|_| {}).await
}

/// A hub configured by `adjust` where a provider has sent three messages,
/// one at a time.
async fn hub_configured_with_three_messages_sent(
    adjust: impl FnOnce(&mut consult_hub::config::Config),
) -> TestHub {
    let hub = TestHub::start_with(adjust).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    for i in 0..3 {
        provider
            .send(&consultation.id, format!("m-{i}"), "hello")
            .await
            .unwrap();
    }
    hub
}

#[tokio::test]
async fn on_a_sqlite_file_the_checkpoint_thread_syncs_the_database_file_after_copying_the_log() {
    let hub = hub_with_three_messages_sent().await;
    if hub.database_url().starts_with("sqlite:") {
        // The first checkpoint runs one interval (1 s in the durable mode)
        // after the writes.
        wait_for_a_count(&hub, "consult_sqlite_database_sync_seconds_count").await;
    } else {
        // PostgreSQL has no checkpoint thread of the hub's.
        assert_no_count_after(&hub, "consult_sqlite_database_sync_seconds_count", 1_500).await;
    }
}

#[tokio::test]
async fn in_normal_mode_the_checkpoint_thread_syncs_the_sqlite_log_between_checkpoints() {
    let hub = hub_configured_with_three_messages_sent(|config| {
        config.database.sqlite_synchronous = SqliteSync::Normal;
        // No checkpoint within the test: only the log syncs between them.
        config.database.sqlite_checkpoint_interval_ms = Some(60_000);
        config.database.sqlite_log_sync_interval_ms = Some(10);
    })
    .await;
    if hub.database_url().starts_with("sqlite:") {
        wait_for_a_count(&hub, "consult_sqlite_log_sync_seconds_count").await;
        let text = hub.metrics_text().await;
        assert!(
            crate::harness::metric(&text, "consult_sqlite_database_sync_seconds_count").abs()
                < f64::EPSILON,
            "no checkpoint ran, so no database sync: {text}"
        );
    } else {
        assert_no_count_after(&hub, "consult_sqlite_log_sync_seconds_count", 500).await;
    }
}

#[tokio::test]
async fn in_the_durable_mode_only_commits_sync_the_sqlite_log() {
    let hub = hub_configured_with_three_messages_sent(|config| {
        config.database.sqlite_checkpoint_interval_ms = Some(20);
        config.database.sqlite_log_sync_interval_ms = Some(10);
    })
    .await;
    if hub.database_url().starts_with("sqlite:") {
        // Checkpoints run meanwhile; the thread never syncs the log itself.
        wait_for_a_count(&hub, "consult_sqlite_database_sync_seconds_count").await;
    }
    let text = hub.metrics_text().await;
    assert!(
        crate::harness::metric(&text, "consult_sqlite_log_sync_seconds_count").abs() < f64::EPSILON,
        "{text}"
    );
}

#[tokio::test]
async fn the_sqlite_writer_reports_how_long_its_commits_take() {
    let hub = hub_with_three_messages_sent().await;
    let text = hub.metrics_text().await;
    let commits = crate::harness::metric(&text, "consult_sqlite_commit_seconds_count");
    if hub.database_url().starts_with("sqlite:") {
        // Sequential sends: one batch each.
        assert!(commits >= 3.0, "{text}");
        assert!(
            crate::harness::metric(&text, "consult_sqlite_commit_seconds_sum") > 0.0,
            "{text}"
        );
    } else {
        // PostgreSQL appends through the pool: no writer thread.
        assert!(commits.abs() < f64::EPSILON, "{text}");
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_counting_connections() {
    let hub = TestHub::start().await;
    let client = hub.connect("dr-a", Role::Provider).await;
    client.ping().await.unwrap();

    let response = hub.http.get(hub.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE consult_connections_total counter"),
        "{text}"
    );
    let connections = crate::harness::metric(&text, "consult_connections_total");
    assert!(connections >= 1.0, "{text}");
    assert!(
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .all(|line| line.starts_with("consult_")),
        "every metric is named consult_*: {text}"
    );
}

#[tokio::test]
async fn a_fresh_hub_lists_every_counter_family_at_zero_and_its_build() {
    let hub = TestHub::start().await;
    let text = hub.metrics_text().await;
    for line in [
        "consult_messages_stored_total 0",
        "consult_slow_consumer_kicks_total 0",
        "consult_broker_disconnects_total 0",
        "consult_client_errors_total{code=\"invalid_token\"} 0",
        "consult_client_errors_total{code=\"privacy_violation\"} 0",
        "consult_session_closes_total{code=\"4003\"} 0",
        "consult_notifications_total{channel=\"sms\",status=\"failed\"} 0",
        "consult_broker_rejected_total{reason=\"bad_signature\"} 0",
        "consult_sms_inbound_total{outcome=\"replayed\"} 0",
        "consult_status_changes_total{to=\"patient_ready\"} 0",
        "consult_connections_active 0",
        "consult_connection_slots_open 0",
        "consult_connections_refused_total{code=\"too_many_connections\"} 0",
        "consult_http_header_timeouts_total 0",
        "consult_append_queue_seconds_count 0",
        "consult_command_seconds_count{command=\"send\"} 0",
        "consult_sqlite_checkpoint_seconds_count{mode=\"RESTART\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    let build = text
        .lines()
        .find(|line| line.starts_with("consult_build_info{"))
        .unwrap_or_else(|| panic!("no consult_build_info:\n{text}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("commit=\""), "{build}");
    assert!(build.ends_with(" 1"), "{build}");
}

#[tokio::test]
async fn the_sqlite_log_is_rewound_once_writes_pause_and_checkpointed_again_after() {
    let Some((hub, provider, consultation)) = sqlite_hub_after_one_send(|_| {}).await else {
        return;
    };
    // The checkpoint thread looks every interval: one pass copies the log,
    // the next, finding no new writes, rewinds it.
    let first = checkpoints_once_at_least(&hub, 1.0, 1.0).await;
    // Rewound and idle, the thread sleeps; the next commit must wake it.
    provider
        .send(&consultation.id, "m-2", "are you there?")
        .await
        .unwrap();
    checkpoints_once_at_least(&hub, first.0 + 1.0, first.1 + 1.0).await;
}

#[tokio::test]
async fn the_sqlite_checkpoint_interval_setting_spaces_checkpoints() {
    let Some((hub, _provider, _consultation)) = sqlite_hub_after_one_send(|config| {
        config.database.sqlite_checkpoint_interval_ms = Some(60_000);
    })
    .await
    else {
        return;
    };
    // At a default interval (25 ms or 1 s) this second holds at least one chance.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let text = hub.metrics_text().await;
    assert!(
        crate::harness::metric(&text, "consult_sqlite_commit_seconds_count") >= 1.0,
        "the writer committed:\n{text}"
    );
    for mode in ["PASSIVE", "RESTART"] {
        assert_eq!(
            checkpoint_count(&text, mode),
            0.0,
            "no {mode} checkpoint before the interval:\n{text}"
        );
    }
}

/// A hub on a SQLite file whose provider has sent one message: the hub, the
/// provider and the consultation; `None` on PostgreSQL, which has no such
/// log.
async fn sqlite_hub_after_one_send(
    adjust: impl FnOnce(&mut consult_hub::Config),
) -> Option<(TestHub, Client, ConsultationView)> {
    let hub = TestHub::start_with(adjust).await;
    if !hub.database_url().starts_with("sqlite:") {
        return None;
    }
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider
        .send(&consultation.id, "m-1", "hello")
        .await
        .unwrap();
    Some((hub, provider, consultation))
}

/// Checkpoints of `mode` (`PASSIVE`, `RESTART`) in a metrics page.
fn checkpoint_count(text: &str, mode: &str) -> f64 {
    crate::harness::metric(
        text,
        &format!("consult_sqlite_checkpoint_seconds_count{{mode=\"{mode}\"}}"),
    )
}

/// Waits (up to 10 s) until the hub has run at least `passive` passive and
/// `restart` restart checkpoints; the counts then.
async fn checkpoints_once_at_least(hub: &TestHub, passive: f64, restart: f64) -> (f64, f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = hub.metrics_text().await;
        let counts = (
            checkpoint_count(&text, "PASSIVE"),
            checkpoint_count(&text, "RESTART"),
        );
        if counts.0 >= passive && counts.1 >= restart {
            return counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {passive} passive and {restart} restart checkpoints:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
