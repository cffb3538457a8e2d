use super::*;
use crate::notify::providers::test_support::{
    LogCapture, Recorded, TestServer, respond, respond_json, testdata,
};
use axum::http::{Method, Version};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const DEVICE_TOKEN: &str = "8f2b1c0de4a5968776a5b4c3d2e1f00112233445566778899aabbccddeeff0011";
const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const BUNDLE_ID: &str = "health.consult.app";

fn config(base_url: &str) -> ApnsConfig {
    serde_json::from_value(json!({
        "base_url": base_url,
        "key_file": testdata("apns-auth-key.p8"),
        "key_id": KEY_ID,
        "team_id": TEAM_ID,
        "bundle_id": BUNDLE_ID,
    }))
    .unwrap()
}

fn client(base_url: &str) -> ApnsClient {
    ApnsClient::new(&config(base_url)).unwrap()
}

fn push(idempotency_key: &str) -> PushMessage<'_> {
    PushMessage {
        idempotency_key,
        device_token: DEVICE_TOKEN,
        title: "New message",
        body: "Dr. Lee sent you a message",
        consultation_id: "consult-7",
    }
}

/// Echoes the request's `apns-id`, as APNs does.
fn accepted(request: &Recorded) -> axum::response::Response {
    respond(200, &[("apns-id", request.header("apns-id"))], "")
}

/// The provider token's claims, after checking its header and signature.
fn verified_claims(request: &Recorded) -> serde_json::Value {
    let jwt = request
        .header("authorization")
        .strip_prefix("bearer ")
        .unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    assert_eq!(header.typ, None);
    let public = std::fs::read(testdata("apns-auth-key-pub.pem")).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let key = DecodingKey::from_ec_pem(&public).unwrap();
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn sends_an_alert_over_http2_with_a_signed_provider_token() {
    let logs = LogCapture::start();
    let server = TestServer::start(accepted).await;
    let client = client(&server.url);
    let before = chrono::Utc::now().timestamp();

    let first = client.send(&push("outbox-42")).await.unwrap();
    let uuid_key = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
    let second = client.send(&push(uuid_key)).await.unwrap();

    // A key that is not a UUID gets its v5 UUID (checked with Python's uuid5).
    assert_eq!(
        first.provider_message_id,
        "0800b076-94d4-587e-a4a9-47c616db0af7"
    );
    assert_eq!(second.provider_message_id, uuid_key.to_lowercase());
    let [request, again] = server.requests().try_into().unwrap();
    assert_eq!(request.version, Version::HTTP_2);
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, format!("/3/device/{DEVICE_TOKEN}"));
    assert_eq!(request.header("apns-topic"), BUNDLE_ID);
    assert_eq!(request.header("apns-push-type"), "alert");
    assert_eq!(request.header("apns-priority"), "10");
    assert_eq!(request.header("apns-id"), first.provider_message_id);
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.json(),
        json!({
            "aps": {
                "alert": {"title": "New message", "body": "Dr. Lee sent you a message"},
                "sound": "default",
            },
            "consultation_id": "consult-7",
        })
    );
    let claims = verified_claims(&request);
    assert_eq!(claims["iss"], TEAM_ID);
    let iat = claims["iat"].as_i64().unwrap();
    assert!((before - 5..=before + 5).contains(&iat));
    assert_eq!(claims.as_object().unwrap().len(), 2);
    // The provider token is reused, not re-signed per push.
    assert_eq!(
        request.header("authorization"),
        again.header("authorization")
    );
    let text = logs.contents();
    assert!(
        text.contains("outbox-42"),
        "the capture saw nothing: {text}"
    );
    assert!(
        !text.contains(DEVICE_TOKEN) && !text.contains("Dr. Lee"),
        "{text}"
    );
    assert!(!text.contains(request.header("authorization")), "{text}");
}

#[tokio::test]
async fn unregistered_and_bad_device_tokens_are_permanent() {
    // (status, body, whether the device token itself is dead)
    let cases = [
        (
            410,
            json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000_u64}),
            true,
        ),
        (400, json!({"reason": "BadDeviceToken"}), true),
        (400, json!({"reason": "DeviceTokenNotForTopic"}), true),
        (400, json!({"reason": "PayloadEmpty"}), false),
        (413, json!({"reason": "PayloadTooLarge"}), false),
    ];
    for (status, body, gone) in cases {
        let reason = body["reason"].as_str().unwrap().to_owned();
        let server = TestServer::start(move |_| respond_json(status, &body)).await;

        let error = client(&server.url)
            .send(&push("outbox-42"))
            .await
            .unwrap_err();

        assert!(!error.is_retryable(), "{error}");
        assert_eq!(error.device_is_gone(), gone, "{error}");
        assert!(error.to_string().contains(&reason), "{error}");
        assert!(!error.to_string().contains(DEVICE_TOKEN), "{error}");
    }
}

#[tokio::test]
async fn throttling_and_outages_are_retryable() {
    let cases = [
        (429, json!({"reason": "TooManyRequests"})),
        (503, json!({"reason": "ServiceUnavailable"})),
        (500, json!({"reason": "InternalServerError"})),
    ];
    for (status, body) in cases {
        let server = TestServer::start(move |_| respond_json(status, &body)).await;

        let error = client(&server.url)
            .send(&push("outbox-42"))
            .await
            .unwrap_err();

        assert!(error.is_retryable(), "{status}: {error}");
    }
}

#[tokio::test]
async fn an_expired_provider_token_is_replaced_and_the_push_retried_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server_calls = Arc::clone(&calls);
    let server = TestServer::start(move |request| {
        if server_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            respond_json(403, &json!({"reason": "ExpiredProviderToken"}))
        } else {
            accepted(request)
        }
    })
    .await;

    let delivered = client(&server.url).send(&push("outbox-42")).await.unwrap();

    assert_eq!(
        delivered.provider_message_id,
        "0800b076-94d4-587e-a4a9-47c616db0af7"
    );
    let [rejected, retried] = server.requests().try_into().unwrap();
    assert_ne!(
        rejected.header("authorization"),
        retried.header("authorization")
    );
    assert_eq!(verified_claims(&retried)["iss"], TEAM_ID);
    assert_eq!(rejected.header("apns-id"), retried.header("apns-id"));
}

#[tokio::test]
async fn a_provider_token_rejected_twice_is_retryable_after_two_requests() {
    let server =
        TestServer::start(|_| respond_json(403, &json!({"reason": "ExpiredProviderToken"}))).await;

    let error = client(&server.url)
        .send(&push("outbox-42"))
        .await
        .unwrap_err();

    assert!(error.is_retryable(), "{error}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_malformed_device_token_fails_without_a_request() {
    let server = TestServer::start(accepted).await;
    let mut message = push("outbox-42");
    message.device_token = "../../admin";

    let error = client(&server.url).send(&message).await.unwrap_err();

    assert!(matches!(error, SendError::DeviceGone(_)), "{error}");
    assert!(server.requests().is_empty());
}

#[test]
fn a_missing_or_wrong_key_file_fails_at_startup() {
    let mut missing = config("https://api.push.apple.com");
    missing.key_file = testdata("no-such-key.p8");
    assert!(matches!(
        ApnsClient::new(&missing),
        Err(ProviderSetupError::ReadFile { .. })
    ));
    let mut wrong = config("https://api.push.apple.com");
    wrong.key_file = testdata("fcm-service-account-pub.pem");
    assert!(matches!(
        ApnsClient::new(&wrong),
        Err(ProviderSetupError::InvalidKeyFile { .. })
    ));
}

#[test]
fn base_url_defaults_to_production_apns() {
    let config: ApnsConfig = serde_json::from_value(json!({
        "key_file": "AuthKey.p8", "key_id": KEY_ID, "team_id": TEAM_ID, "bundle_id": BUNDLE_ID,
    }))
    .unwrap();
    assert_eq!(config.base_url, "https://api.push.apple.com");
}
