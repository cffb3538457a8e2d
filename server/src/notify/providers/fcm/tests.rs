use super::*;
use crate::notify::providers::test_support::{
    LogCapture, Recorded, TestServer, respond_json, testdata,
};
use axum::http::Method;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const DEVICE_TOKEN: &str = "fcm-registration-token:APA91bH-secret";
const SEND_PATH: &str = "/v1/projects/consult-hub-test/messages:send";
const MESSAGE_NAME: &str = "projects/consult-hub-test/messages/0:1700000000000000%31bd1c96";
const CLIENT_EMAIL: &str = "notify@consult-hub-test.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

fn config(base_url: &str) -> FcmConfig {
    serde_json::from_value(json!({
        "base_url": base_url,
        "service_account_file": testdata("fcm-service-account.json"),
        "token_uri": format!("{base_url}/token"),
    }))
    .unwrap()
}

fn client(base_url: &str) -> FcmClient {
    FcmClient::new(&config(base_url)).unwrap()
}

fn push() -> PushMessage<'static> {
    PushMessage {
        idempotency_key: "outbox-42",
        device_token: DEVICE_TOKEN,
        title: "New message",
        body: "Dr. Lee sent you a message",
        consultation_id: "consult-7",
    }
}

/// Google's token endpoint: hands out `token-1`, `token-2`, … in turn.
fn token_endpoint(issued: &AtomicUsize, expires_in: u64) -> Response {
    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
    respond_json(
        200,
        &json!({"access_token": format!("token-{n}"), "expires_in": expires_in, "token_type": "Bearer"}),
    )
}

/// A server whose token endpoint issues tokens valid for `expires_in`
/// seconds and whose send endpoint answers with `send`.
async fn fcm_server(
    expires_in: u64,
    send: impl Fn(&Recorded) -> Response + Send + Sync + 'static,
) -> TestServer {
    let issued = Arc::new(AtomicUsize::new(0));
    TestServer::start(move |request| {
        if request.path == "/token" {
            token_endpoint(&issued, expires_in)
        } else {
            send(request)
        }
    })
    .await
}

fn sent(_: &Recorded) -> Response {
    respond_json(200, &json!({"name": MESSAGE_NAME}))
}

fn fcm_error(status: u16, google_status: &str, error_code: Option<&str>) -> Response {
    let details = error_code.map_or_else(Vec::new, |code| {
        vec![json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code})]
    });
    respond_json(
        status,
        &json!({"error": {"code": status, "message": "Requested entity was not found.", "status": google_status, "details": details}}),
    )
}

fn assertion_claims(request: &Recorded) -> serde_json::Value {
    let form = request.form();
    let assertion = &form.iter().find(|(name, _)| name == "assertion").unwrap().1;
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    let public = std::fs::read(testdata("fcm-service-account-pub.pem")).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("http://{}/token", request.header("host"))]);
    let key = DecodingKey::from_rsa_pem(&public).unwrap();
    jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn sends_an_http_v1_message_with_a_cached_oauth_token() {
    let logs = LogCapture::start();
    let server = fcm_server(3599, sent).await;
    let client = client(&server.url);
    let before = chrono::Utc::now().timestamp();

    let first = client.send(&push()).await.unwrap();
    let second = client.send(&push()).await.unwrap();

    assert_eq!(first.provider_message_id, MESSAGE_NAME);
    assert_eq!(second.provider_message_id, MESSAGE_NAME);
    let [exchange] = server.requests_to("/token").try_into().unwrap();
    assert_eq!(exchange.method, Method::POST);
    assert_eq!(
        exchange.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let form = exchange.form();
    assert_eq!(form.len(), 2);
    assert_eq!(form[0].0, "grant_type");
    assert_eq!(form[0].1, "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let claims = assertion_claims(&exchange);
    assert_eq!(claims["iss"], CLIENT_EMAIL);
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(claims["aud"], format!("{}/token", server.url));
    let iat = claims["iat"].as_i64().unwrap();
    assert!((before - 5..=before + 5).contains(&iat));
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3600);
    assert_eq!(claims.as_object().unwrap().len(), 5);

    let sends = server.requests_to("/v1/");
    assert_eq!(sends.len(), 2);
    for request in &sends {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, SEND_PATH);
        assert_eq!(request.header("authorization"), "Bearer token-1");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(
            request.json(),
            json!({"message": {
                "token": DEVICE_TOKEN,
                "notification": {"title": "New message", "body": "Dr. Lee sent you a message"},
                "data": {"consultation_id": "consult-7"},
                "android": {"priority": "high"},
                "apns": {"headers": {"apns-priority": "10"}},
            }})
        );
    }
    let text = logs.contents();
    assert!(
        text.contains("outbox-42"),
        "the capture saw nothing: {text}"
    );
    assert!(
        !text.contains("APA91bH") && !text.contains("Dr. Lee"),
        "{text}"
    );
    assert!(!text.contains("token-1"), "{text}");
}

#[tokio::test]
async fn a_token_within_a_minute_of_expiry_is_exchanged_again() {
    let server = fcm_server(60, sent).await;
    let client = client(&server.url);

    client.send(&push()).await.unwrap();
    client.send(&push()).await.unwrap();

    assert_eq!(server.requests_to("/token").len(), 2);
    let sends = server.requests_to("/v1/");
    assert_eq!(sends[1].header("authorization"), "Bearer token-2");
}

#[tokio::test]
async fn a_401_refreshes_the_access_token_once_and_retries() {
    let server = fcm_server(3599, |request| {
        if request.header("authorization") == "Bearer token-1" {
            fcm_error(401, "UNAUTHENTICATED", None)
        } else {
            sent(request)
        }
    })
    .await;
    let client = client(&server.url);

    let delivered = client.send(&push()).await.unwrap();
    client.send(&push()).await.unwrap();

    assert_eq!(delivered.provider_message_id, MESSAGE_NAME);
    assert_eq!(server.requests_to("/token").len(), 2);
    let tokens: Vec<String> = server
        .requests_to("/v1/")
        .iter()
        .map(|request| request.header("authorization").to_owned())
        .collect();
    assert_eq!(
        tokens,
        ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    );
}

#[tokio::test]
async fn a_second_401_is_retryable_and_not_retried_again() {
    let server = fcm_server(3599, |_| fcm_error(401, "UNAUTHENTICATED", None)).await;

    let error = client(&server.url).send(&push()).await.unwrap_err();

    assert!(error.is_retryable(), "{error}");
    assert_eq!(server.requests_to("/v1/").len(), 2);
}

#[tokio::test]
async fn unregistered_and_invalid_tokens_are_permanent() {
    // (status, Google's status, FCM's error code, whether the device token
    // itself is dead)
    let cases = [
        (404, "NOT_FOUND", Some("UNREGISTERED"), true),
        (400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), false),
        (400, "INVALID_ARGUMENT", None, false),
        (403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), true),
    ];
    for (status, google_status, code, gone) in cases {
        let server = fcm_server(3599, move |_| fcm_error(status, google_status, code)).await;

        let error = client(&server.url).send(&push()).await.unwrap_err();

        assert!(!error.is_retryable(), "{status}: {error}");
        assert_eq!(error.device_is_gone(), gone, "{status}: {error}");
        let expected = code.unwrap_or(google_status);
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[tokio::test]
async fn quota_and_outages_are_retryable() {
    let cases = [
        (429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED")),
        (503, "UNAVAILABLE", Some("UNAVAILABLE")),
        (500, "INTERNAL", Some("INTERNAL")),
    ];
    for (status, google_status, code) in cases {
        let server = fcm_server(3599, move |_| fcm_error(status, google_status, code)).await;

        let error = client(&server.url).send(&push()).await.unwrap_err();

        assert!(error.is_retryable(), "{status}: {error}");
    }
}

#[tokio::test]
async fn a_rejected_token_exchange_is_retryable_and_sends_nothing() {
    let server = TestServer::start(|_| {
        respond_json(
            400,
            &json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )
    })
    .await;

    let error = client(&server.url).send(&push()).await.unwrap_err();

    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("invalid_grant"), "{error}");
    assert!(server.requests_to("/v1/").is_empty());
}

#[test]
fn a_missing_or_malformed_service_account_fails_at_startup() {
    let mut missing = config("https://fcm.googleapis.com");
    missing.service_account_file = testdata("no-such-account.json");
    assert!(matches!(
        FcmClient::new(&missing),
        Err(ProviderSetupError::ReadFile { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let mut account: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("fcm-service-account.json")).unwrap())
            .unwrap();
    account["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, account.to_string()).unwrap();
    let mut invalid = config("https://fcm.googleapis.com");
    invalid.service_account_file = broken;
    let error = FcmClient::new(&invalid).unwrap_err();
    assert!(matches!(error, ProviderSetupError::InvalidKeyFile { .. }));
    assert!(!error.to_string().contains("not a key"), "{error}");
}

#[test]
fn base_url_defaults_to_fcm_and_token_uri_to_the_key_files() {
    let config: FcmConfig =
        serde_json::from_value(json!({"service_account_file": "sa.json"})).unwrap();
    assert_eq!(config.base_url, "https://fcm.googleapis.com");
    assert_eq!(config.token_uri, None);
    assert_eq!(config.connect_timeout_secs, 5);
    assert_eq!(config.request_timeout_secs, 10);
}
