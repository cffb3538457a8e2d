use super::*;
use crate::notify::providers::test_support::{LogCapture, TestServer, respond, respond_json};
use axum::http::Method;
use serde_json::json;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";

fn config(base_url: &str, sender: serde_json::Value) -> TwilioConfig {
    let mut value = json!({"base_url": base_url, "account_sid": SID, "auth_token": TOKEN});
    for (name, field) in sender.as_object().unwrap() {
        value[name] = field.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn from_number(base_url: &str) -> TwilioClient {
    TwilioClient::new(&config(base_url, json!({"from_number": "+15005550006"}))).unwrap()
}

fn sms() -> SmsMessage<'static> {
    SmsMessage {
        idempotency_key: "outbox-42",
        to: "+14155550123",
        body: "Your consultation starts in 10 minutes",
    }
}

fn sorted(mut form: Vec<(String, String)>) -> Vec<(String, String)> {
    form.sort();
    form
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn posts_the_messages_form_with_basic_auth_and_idempotency_token() {
    let logs = LogCapture::start();
    let server = TestServer::start(|_| {
        respond_json(
            201,
            &json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}),
        )
    })
    .await;

    let delivered = from_number(&server.url).send(&sms()).await.unwrap();

    assert_eq!(
        delivered.provider_message_id,
        "SM0123456789abcdef0123456789abcdef"
    );
    let [request] = server.requests().try_into().unwrap();
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let credentials = BASE64.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        request.header("authorization"),
        format!("Basic {credentials}")
    );
    assert_eq!(
        request.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(request.header("i-twilio-idempotency-token"), "outbox-42");
    assert_eq!(
        sorted(request.form()),
        pairs(&[
            ("To", "+14155550123"),
            ("From", "+15005550006"),
            ("Body", "Your consultation starts in 10 minutes"),
        ])
    );
    let text = logs.contents();
    assert!(
        text.contains("outbox-42"),
        "the capture saw nothing: {text}"
    );
    assert!(
        !text.contains("+14155550123") && !text.contains("starts in"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn a_messaging_service_replaces_from() {
    let server = TestServer::start(|_| respond_json(201, &json!({"sid": "SM1"}))).await;
    let client = TwilioClient::new(&config(
        &server.url,
        json!({"messaging_service_sid": "MG1"}),
    ))
    .unwrap();

    client.send(&sms()).await.unwrap();

    let [request] = server.requests().try_into().unwrap();
    assert_eq!(
        sorted(request.form()),
        pairs(&[
            ("To", "+14155550123"),
            ("MessagingServiceSid", "MG1"),
            ("Body", "Your consultation starts in 10 minutes"),
        ])
    );
}

#[tokio::test]
async fn unsubscribed_and_invalid_numbers_are_permanent() {
    for code in [21610, 21211] {
        let server = TestServer::start(move |_| {
            let body = json!({"code": code, "message": "To +14155550123 is bad", "status": 400});
            respond_json(400, &body)
        })
        .await;

        let error = from_number(&server.url).send(&sms()).await.unwrap_err();

        assert!(matches!(error, SendError::Permanent(_)), "{error}");
        assert!(error.to_string().contains(&code.to_string()), "{error}");
        assert!(!error.to_string().contains("+1415"), "{error}");
    }
}

#[tokio::test]
async fn overload_outage_and_bad_credentials_are_retryable() {
    let cases = [
        (429, json!({"code": 20429, "status": 429})),
        (503, json!({"code": 20503, "status": 503})),
        (401, json!({"code": 20003, "status": 401})),
    ];
    for (status, body) in cases {
        let server = TestServer::start(move |_| respond_json(status, &body)).await;

        let error = from_number(&server.url).send(&sms()).await.unwrap_err();

        assert!(error.is_retryable(), "{status}: {error}");
    }
}

#[tokio::test]
async fn a_non_json_error_page_still_maps_by_status() {
    let server = TestServer::start(|_| respond(502, &[], "<html>bad gateway</html>")).await;

    let error = from_number(&server.url).send(&sms()).await.unwrap_err();

    assert!(error.is_retryable(), "{error}");
}

#[test]
fn exactly_one_sender_must_be_configured() {
    let neither = config("https://api.twilio.com", json!({}));
    assert!(TwilioClient::new(&neither).is_err());
    let both = config(
        "https://api.twilio.com",
        json!({"from_number": "+15005550006", "messaging_service_sid": "MG1"}),
    );
    assert!(TwilioClient::new(&both).is_err());
}

#[test]
fn base_url_defaults_to_the_real_api() {
    let value = json!({"account_sid": SID, "auth_token": TOKEN, "from_number": "+1"});
    let config: TwilioConfig = serde_json::from_value(value).unwrap();
    assert_eq!(config.base_url, "https://api.twilio.com");
    assert_eq!(config.connect_timeout_secs, 5);
    assert_eq!(config.request_timeout_secs, 10);
}

// Twilio's documented example: auth token 12345, this URL and these fields.
const EXAMPLE_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const EXAMPLE_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

fn example_params() -> Vec<(String, String)> {
    [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect()
}

#[test]
fn inbound_signature_matches_twilios_documented_example() {
    let mut params = example_params();
    assert!(verify_inbound_signature(
        "12345",
        EXAMPLE_URL,
        &params,
        EXAMPLE_SIGNATURE
    ));
    params.reverse();
    assert!(verify_inbound_signature(
        "12345",
        EXAMPLE_URL,
        &params,
        EXAMPLE_SIGNATURE
    ));
}

#[test]
fn a_tampered_inbound_request_is_rejected() {
    let mut params = example_params();
    let verify = |token, url, params: &[(String, String)], signature| {
        verify_inbound_signature(token, url, params, signature)
    };
    assert!(!verify("54321", EXAMPLE_URL, &params, EXAMPLE_SIGNATURE));
    let other_url = "https://mycompany.com/myapp.php?foo=1&bar=3";
    assert!(!verify("12345", other_url, &params, EXAMPLE_SIGNATURE));
    assert!(!verify("12345", EXAMPLE_URL, &params, "not base64!"));
    assert!(!verify("12345", EXAMPLE_URL, &params, ""));
    params[2].1 = "9999".to_owned();
    assert!(!verify("12345", EXAMPLE_URL, &params, EXAMPLE_SIGNATURE));
}
