use super::*;
use crate::notify::providers::test_support::{LogCapture, TestServer, respond, respond_json};
use axum::http::Method;
use serde_json::json;

const SECRET: &str = "whsec_test";

fn message() -> WebhookMessage<'static> {
    WebhookMessage {
        idempotency_key: "outbox-42",
        channel: "push",
        recipient_id: "user-9",
        consultation_id: "consult-7",
        text: "Dr. Lee has joined your consultation",
    }
}

fn config(url: &str, secret: &str) -> WebhookConfig {
    serde_json::from_value(json!({"url": url, "secret": secret})).unwrap()
}

fn client(url: &str) -> WebhookClient {
    WebhookClient::new(&config(url, SECRET)).unwrap()
}

#[test]
fn signature_matches_an_independent_hmac_sha256() {
    // Computed with Python's hmac module over b'1700000000.{"id":"k"}'.
    assert_eq!(
        sign(SECRET, 1_700_000_000, br#"{"id":"k"}"#),
        "sha256=b62858d7b1df264f39414d17846fb8ef6002f6ea2361dfdcda7121c9746fb3f1"
    );
}

#[tokio::test]
async fn posts_signed_json_and_takes_the_receivers_id() {
    let logs = LogCapture::start();
    let server = TestServer::start(|_| respond_json(200, &json!({"id": "rcv-1"}))).await;
    let before = chrono::Utc::now().timestamp();

    let delivered = client(&format!("{}/hooks/notify", server.url))
        .send(&message())
        .await
        .unwrap();

    assert_eq!(delivered.provider_message_id, "rcv-1");
    let [request] = server.requests().try_into().unwrap();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/hooks/notify");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("idempotency-key"), "outbox-42");
    let timestamp: i64 = request.header("x-consult-timestamp").parse().unwrap();
    assert!((before..=before + 5).contains(&timestamp));
    assert_eq!(
        request.header("x-consult-signature"),
        sign(SECRET, timestamp, &request.body)
    );
    let body = request.json();
    assert_eq!(body["id"], "outbox-42");
    assert_eq!(body["channel"], "push");
    assert_eq!(body["recipient_id"], "user-9");
    assert_eq!(body["consultation_id"], "consult-7");
    assert_eq!(body["text"], "Dr. Lee has joined your consultation");
    let sent_at = body["sent_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(sent_at).is_ok());
    assert_eq!(body.as_object().unwrap().len(), 6);
    let text = logs.contents();
    assert!(
        text.contains("outbox-42"),
        "the capture saw nothing: {text}"
    );
    assert!(
        !text.contains("Dr. Lee") && !text.contains(SECRET),
        "{text}"
    );
}

#[tokio::test]
async fn an_answer_without_an_id_is_delivered_under_the_idempotency_key() {
    let server = TestServer::start(|_| respond(202, &[], "")).await;

    let delivered = client(&server.url).send(&message()).await.unwrap();

    assert_eq!(delivered.provider_message_id, "outbox-42");
}

#[tokio::test]
async fn client_errors_are_permanent_and_overload_is_retryable() {
    for (status, retryable) in [(400, false), (410, false), (429, true), (503, true)] {
        let server = TestServer::start(move |_| respond(status, &[], "no")).await;

        let error = client(&server.url).send(&message()).await.unwrap_err();

        assert_eq!(error.is_retryable(), retryable, "{status}: {error}");
    }
}

#[tokio::test]
async fn an_unreachable_receiver_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);

    let error = client(&url).send(&message()).await.unwrap_err();

    assert!(error.is_retryable(), "{error}");
}

#[test]
fn an_empty_secret_or_a_bad_url_is_rejected_at_startup() {
    assert!(WebhookClient::new(&config("https://hooks.example/n", "")).is_err());
    assert!(WebhookClient::new(&config("hooks.example/n", SECRET)).is_err());
}

#[test]
fn config_has_default_timeouts_and_rejects_unknown_fields() {
    let defaults = config("https://hooks.example/n", SECRET);
    assert_eq!(defaults.connect_timeout_secs, 5);
    assert_eq!(defaults.request_timeout_secs, 10);
    let unknown = json!({"url": "https://hooks.example/n", "secret": SECRET, "sekret": 1});
    assert!(serde_json::from_value::<WebhookConfig>(unknown).is_err());
}
