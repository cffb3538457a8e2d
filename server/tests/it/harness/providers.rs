//! Local stand-ins for the push and SMS providers, and the notify harness
//! around them.
//!
//! [`FakeProviders`] is one axum server on `127.0.0.1:0` that answers FCM's
//! OAuth token exchange and HTTP v1 `messages:send`, and Twilio's Messages
//! API. It checks each request the way the provider would (signed assertion,
//! bearer token, basic auth, payload shape, E.164 numbers), records every
//! request it accepted, parsed, and can be told to fail the next ones. A
//! request that breaks the provider's contract is refused and noted; every
//! wait panics if there is one, so a malformed request cannot pass unseen.
//!
//! The rest points a hub at it and reads the outbox, the audit trail and the
//! patient's contacts through the REST API.

use super::{API_KEY, TestHub};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use consult_hub::Config;
use consult_hub::config::{PushRoute, SmsRoute};
use consult_hub::notify::providers::{FcmConfig, TwilioConfig};
use consult_protocol::{ConsultationId, NotificationStatus, NotificationView};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The project of the committed service-account fixture.
pub(crate) const FCM_PROJECT: &str = "consult-hub-test";
/// The fixture's `client_email`, the assertion's issuer.
const FCM_CLIENT_EMAIL: &str = "notify@consult-hub-test.iam.gserviceaccount.com";
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The Twilio account the hub is configured with.
pub(crate) const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its auth token: basic-auth password and inbound signing key.
pub(crate) const TWILIO_AUTH_TOKEN: &str = "twilio-test-auth-token";
/// The hub's sending number.
pub(crate) const TWILIO_FROM: &str = "+15005550006";
/// The phone number `TestHub::consultation` gives every patient.
pub(crate) const PATIENT_PHONE: &str = "+15550001111";
/// How long the waits below wait.
const WAIT: Duration = Duration::from_secs(5);
/// Poll step of the waits below.
const POLL: Duration = Duration::from_millis(10);

/// A push FCM accepted for checking (its answer is in `status`).
#[derive(Debug, Clone)]
pub(crate) struct Push {
    /// `message.token`.
    pub(crate) token: String,
    /// `message.notification.title`.
    pub(crate) title: String,
    /// `message.notification.body`.
    pub(crate) body: String,
    /// `message.data.consultation_id`.
    pub(crate) consultation_id: String,
    /// When it arrived.
    pub(crate) received_at: DateTime<Utc>,
    /// The status the fake answered.
    pub(crate) status: u16,
}

/// An SMS Twilio accepted for checking (its answer is in `status`).
#[derive(Debug, Clone)]
pub(crate) struct Sms {
    /// Form `To`.
    pub(crate) to: String,
    /// Form `From`.
    pub(crate) from: String,
    /// Form `Body`.
    pub(crate) body: String,
    /// The `I-Twilio-Idempotency-Token` header.
    pub(crate) idempotency_token: String,
    /// When it arrived.
    pub(crate) received_at: DateTime<Utc>,
    /// The status the fake answered.
    pub(crate) status: u16,
}

/// A send request that passed the provider's checks, in arrival order.
#[derive(Debug, Clone)]
pub(crate) enum ProviderRequest {
    Push(Push),
    Sms(Sms),
}

struct Failure {
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Recorder {
    requests: Vec<ProviderRequest>,
    /// Requests that broke the provider's contract, with the reason.
    refused: Vec<String>,
    failures: VecDeque<Failure>,
    access_tokens: HashSet<String>,
    unregistered: HashSet<String>,
    issued: u64,
    /// How long the next `delayed` send requests wait before their answer.
    delay: Duration,
    delayed: usize,
}

#[derive(Clone)]
struct Fake {
    recorder: Arc<Mutex<Recorder>>,
    token_uri: String,
    assertion_key: Arc<DecodingKey>,
}

impl Fake {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap()
    }

    fn refuse(&self, status: u16, why: String, body: Value) -> Response {
        self.lock().refused.push(why);
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    }

    /// Waits as long as the test asked this send to take.
    async fn answer_delay(&self) {
        let delay = {
            let mut recorder = self.lock();
            if recorder.delayed == 0 {
                return;
            }
            recorder.delayed -= 1;
            recorder.delay
        };
        tokio::time::sleep(delay).await;
    }

    /// The injected failure for this request, if one is queued.
    fn take_failure(&self) -> Option<Failure> {
        self.lock().failures.pop_front()
    }

    fn next_id(&self) -> u64 {
        let mut recorder = self.lock();
        recorder.issued += 1;
        recorder.issued
    }
}

/// The fake FCM and Twilio; stops when dropped.
pub(crate) struct FakeProviders {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    fake: Fake,
    task: JoinHandle<()>,
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A file under the server's `notify/providers/testdata/`.
fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/notify/providers/testdata")
        .join(name)
}

impl FakeProviders {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pem = std::fs::read(testdata("fcm-service-account-pub.pem")).unwrap();
        let fake = Fake {
            recorder: Arc::default(),
            token_uri: format!("{url}/oauth2/token"),
            assertion_key: Arc::new(DecodingKey::from_rsa_pem(&pem).unwrap()),
        };
        let router = Router::new()
            .route("/oauth2/token", post(fcm_token))
            .route("/v1/projects/{project}/{method}", post(fcm_send))
            .route("/2010-04-01/Accounts/{sid}/{resource}", post(twilio_send))
            .with_state(fake.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { url, fake, task }
    }

    /// Points `config.notify` at this server, with times small enough for
    /// tests: offline grace 300 ms, push escalation 400 ms, polling and
    /// the first retry 50 ms.
    pub(crate) fn configure(&self, config: &mut Config) {
        let notify = &mut config.notify;
        notify.push = PushRoute::Native;
        notify.fcm = Some(FcmConfig {
            base_url: self.url.clone(),
            service_account_file: testdata("fcm-service-account.json"),
            token_uri: Some(self.fake.token_uri.clone()),
            connect_timeout_secs: 2,
            request_timeout_secs: 5,
        });
        notify.sms = SmsRoute::Twilio;
        notify.twilio = Some(TwilioConfig {
            base_url: self.url.clone(),
            account_sid: TWILIO_SID.to_owned(),
            auth_token: SecretString::from(TWILIO_AUTH_TOKEN.to_owned()),
            from_number: Some(TWILIO_FROM.to_owned()),
            messaging_service_sid: None,
            connect_timeout_secs: 2,
            request_timeout_secs: 5,
        });
        notify.sms_inbound_url = Some(INBOUND_URL.to_owned());
        notify.poll_interval_ms = 50;
        notify.retry_base_ms = 50;
        notify.offline_grace_ms = 300;
        notify.push_after_ms = 400;
    }

    /// A hub configured by [`FakeProviders::configure`], then `adjust`.
    pub(crate) async fn hub(&self, adjust: impl FnOnce(&mut Config)) -> TestHub {
        TestHub::start_with(|config| {
            self.configure(config);
            adjust(config);
        })
        .await
    }

    /// The next `n` send requests (push or SMS) wait `delay` before their
    /// answer, as a slow provider's would.
    pub(crate) fn delay_next_sends(&self, n: usize, delay: Duration) {
        let mut recorder = self.fake.lock();
        recorder.delay = delay;
        recorder.delayed = n;
    }

    /// Answers the next `n` send requests (push or SMS) with `status` and
    /// `body` instead of accepting them.
    pub(crate) fn fail_next(&self, n: usize, status: u16, body: Value) {
        let mut recorder = self.fake.lock();
        for _ in 0..n {
            recorder.failures.push_back(Failure {
                status,
                body: body.clone(),
            });
        }
    }

    /// From now on FCM answers 404 `UNREGISTERED` for `token`.
    pub(crate) fn unregister(&self, token: &str) {
        self.fake.lock().unregistered.insert(token.to_owned());
    }

    /// Every send request that passed the checks so far.
    pub(crate) fn requests(&self) -> Vec<ProviderRequest> {
        let recorder = self.fake.lock();
        assert!(
            recorder.refused.is_empty(),
            "the hub broke a provider contract: {:?}",
            recorder.refused
        );
        recorder.requests.clone()
    }

    pub(crate) fn pushes(&self) -> Vec<Push> {
        self.requests()
            .into_iter()
            .filter_map(|request| match request {
                ProviderRequest::Push(push) => Some(push),
                ProviderRequest::Sms(_) => None,
            })
            .collect()
    }

    pub(crate) fn sms(&self) -> Vec<Sms> {
        self.requests()
            .into_iter()
            .filter_map(|request| match request {
                ProviderRequest::Sms(sms) => Some(sms),
                ProviderRequest::Push(_) => None,
            })
            .collect()
    }

    /// Waits until at least `n` send requests have arrived; returns them all.
    pub(crate) async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Vec<ProviderRequest> {
        wait_until(timeout, &format!("{n} provider requests"), || {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
        .await
    }

    /// Waits until at least `n` pushes have arrived; returns them all.
    pub(crate) async fn wait_for_pushes(&self, n: usize) -> Vec<Push> {
        wait_until(WAIT, &format!("{n} pushes"), || {
            let pushes = self.pushes();
            (pushes.len() >= n).then_some(pushes)
        })
        .await
    }

    /// Waits until at least `n` SMS have arrived; returns them all.
    pub(crate) async fn wait_for_sms(&self, n: usize) -> Vec<Sms> {
        wait_until(WAIT, &format!("{n} SMS"), || {
            let sms = self.sms();
            (sms.len() >= n).then_some(sms)
        })
        .await
    }
}

/// Polls `check` every 10 ms until it returns something, for at most
/// `timeout`.
pub(crate) async fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Deserialize)]
struct AssertionClaims {
    scope: String,
    iat: i64,
    exp: i64,
}

/// Google's token endpoint: a JWT-bearer grant whose RS256 assertion is
/// signed with the service account's key, issued by its email, for this URI.
async fn fcm_token(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let invalid_grant = |why: &str| {
        fake.refuse(
            400,
            format!("fcm oauth: {why}"),
            json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if content_type(&headers) != "application/x-www-form-urlencoded" {
        return invalid_grant("not a form");
    }
    let form = parse_form(&body);
    if field(&form, "grant_type") != Some(JWT_BEARER_GRANT) {
        return invalid_grant("unsupported grant_type");
    }
    let Some(assertion) = field(&form, "assertion") else {
        return invalid_grant("missing assertion");
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&fake.token_uri]);
    validation.set_issuer(&[FCM_CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(
        assertion,
        &fake.assertion_key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(error) => return invalid_grant(&format!("bad assertion: {error}")),
    };
    if claims.scope != FCM_SCOPE || claims.exp - claims.iat > 3600 {
        return invalid_grant("wrong scope or lifetime");
    }
    let token = format!("ya29.fake-{}", fake.next_id());
    fake.lock().access_tokens.insert(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

/// FCM HTTP v1 `messages:send`.
async fn fcm_send(
    State(fake): State<Fake>,
    Path((project, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.answer_delay().await;
    let google_error = |status: u16, code: &str, why: String| {
        fake.refuse(
            status,
            format!("fcm: {why}"),
            json!({"error": {"code": status, "status": code, "message": why}}),
        )
    };
    if project != FCM_PROJECT || method != "messages:send" {
        return google_error(404, "NOT_FOUND", format!("no {project}/{method}"));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let authorized = bearer.is_some_and(|token| fake.lock().access_tokens.contains(token));
    if !authorized {
        return google_error(401, "UNAUTHENTICATED", "no valid access token".to_owned());
    }
    if content_type(&headers) != "application/json" {
        return google_error(400, "INVALID_ARGUMENT", "not JSON".to_owned());
    }
    let push = match parse_push(&body) {
        Ok(push) => push,
        Err(why) => return google_error(400, "INVALID_ARGUMENT", why),
    };
    let unregistered = fake.lock().unregistered.contains(&push.token);
    let (status, answer) = if unregistered {
        let details = [json!({
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "UNREGISTERED",
        })];
        (
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND", "details": details}}),
        )
    } else if let Some(failure) = fake.take_failure() {
        (failure.status, failure.body)
    } else {
        let name = format!("projects/{FCM_PROJECT}/messages/0:{}", fake.next_id());
        (200, json!({ "name": name }))
    };
    fake.lock()
        .requests
        .push(ProviderRequest::Push(Push { status, ..push }));
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

/// Checks the v1 shape: `{"message": {"token", "notification": {"title",
/// "body"}, "data": {"consultation_id", ...}}}`, data values all strings.
fn parse_push(body: &[u8]) -> Result<Push, String> {
    let value: Value = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let message = &value["message"];
    let text = |pointer: &str| {
        message
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("message{pointer} must be a non-empty string"))
    };
    let data = message["data"]
        .as_object()
        .ok_or("message.data must be an object")?;
    if !data.values().all(Value::is_string) {
        return Err("message.data values must be strings".to_owned());
    }
    Ok(Push {
        token: text("/token")?,
        title: text("/notification/title")?,
        body: text("/notification/body")?,
        consultation_id: text("/data/consultation_id")?,
        received_at: Utc::now(),
        status: 0,
    })
}

/// Twilio's `POST /2010-04-01/Accounts/{sid}/Messages.json`.
async fn twilio_send(
    State(fake): State<Fake>,
    Path((sid, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.answer_delay().await;
    let twilio_error = |status: u16, code: u32, why: String| {
        fake.refuse(
            status,
            format!("twilio: {why}"),
            json!({"code": code, "message": why, "status": status}),
        )
    };
    if sid != TWILIO_SID || resource != "Messages.json" {
        return twilio_error(404, 20404, format!("no {sid}/{resource}"));
    }
    let expected = format!(
        "Basic {}",
        BASE64.encode(format!("{TWILIO_SID}:{TWILIO_AUTH_TOKEN}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return twilio_error(401, 20003, "Authenticate".to_owned());
    }
    if content_type(&headers) != "application/x-www-form-urlencoded" {
        return twilio_error(400, 20001, "not a form".to_owned());
    }
    let form = parse_form(&body);
    let (Some(to), Some(from), Some(text)) = (
        field(&form, "To"),
        field(&form, "From"),
        field(&form, "Body"),
    ) else {
        return twilio_error(400, 21604, "To, From and Body are required".to_owned());
    };
    if !is_e164(to) {
        return twilio_error(400, 21211, "The 'To' number is not valid".to_owned());
    }
    if from != TWILIO_FROM || text.is_empty() || text.chars().count() > 1600 {
        return twilio_error(400, 21602, "bad From or Body".to_owned());
    }
    let idempotency_token = headers
        .get("i-twilio-idempotency-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if idempotency_token.is_empty() {
        return twilio_error(400, 20001, "no I-Twilio-Idempotency-Token".to_owned());
    }
    let (status, answer) = match fake.take_failure() {
        Some(failure) => (failure.status, failure.body),
        None => {
            let sid = format!("SM{:032x}", fake.next_id());
            (201, json!({"sid": sid, "status": "queued"}))
        }
    };
    fake.lock().requests.push(ProviderRequest::Sms(Sms {
        to: to.to_owned(),
        from: from.to_owned(),
        body: text.to_owned(),
        idempotency_token: idempotency_token.to_owned(),
        received_at: Utc::now(),
        status,
    }));
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or_default()
        .trim()
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Twilio's `X-Twilio-Signature` for a form posted to `url`: base64
/// HMAC-SHA1, keyed with the auth token, of the URL followed by each
/// parameter's name and value, sorted by name.
/// The public inbound-SMS URL the hubs of these tests are configured with.
pub(crate) const INBOUND_URL: &str = "https://hub.example.test/v1/sms/inbound";

pub(crate) fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Sends a request with the API key; returns status and JSON body (`Null`
/// when there is none).
pub(crate) async fn api(hub: &TestHub, method: Method, path: &str, body: Value) -> (u16, Value) {
    let mut request = hub.http.request(method, hub.url(path)).bearer_auth(API_KEY);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Registers an FCM token for `patient` through the REST API.
pub(crate) async fn register_device(hub: &TestHub, patient: &str, token: &str, enabled: bool) {
    let body = json!({"platform": "fcm", "token": token, "notifications_enabled": enabled});
    let path = format!("/v1/participants/{patient}/devices");
    let (status, answer) = api(hub, Method::POST, &path, body).await;
    assert_eq!(status, 204, "{answer}");
}

/// Records `patient`'s SMS consent through the REST API.
pub(crate) async fn sms_consent(hub: &TestHub, patient: &str, consent: bool) {
    let path = format!("/v1/participants/{patient}/sms-consent");
    let (status, answer) = api(hub, Method::PUT, &path, json!({ "consent": consent })).await;
    assert_eq!(status, 204, "{answer}");
}

/// The consultation's notifications, through the REST API.
pub(crate) async fn notifications(hub: &TestHub, id: &ConsultationId) -> Vec<NotificationView> {
    let (status, body) = hub
        .api_get(&format!("/v1/consultations/{id}/notifications"))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body["notifications"].clone()).unwrap()
}

/// Waits until the notification `notification_id` has `status`; returns it.
pub(crate) async fn wait_for_status(
    hub: &TestHub,
    consultation: &ConsultationId,
    notification_id: &str,
    status: NotificationStatus,
) -> NotificationView {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = notifications(hub, consultation).await;
        let row = rows
            .iter()
            .find(|row| row.id == notification_id)
            .unwrap_or_else(|| panic!("no notification {notification_id} in {rows:?}"));
        if row.status == status {
            return row.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notification still {:?}, not {status:?}: {row:?}",
            row.status
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The consultation's audit entries, oldest first.
pub(crate) async fn audit(hub: &TestHub, id: &ConsultationId) -> Vec<Value> {
    let (status, body) = hub.api_get(&format!("/v1/consultations/{id}/audit")).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// The audit entries with `action`.
pub(crate) async fn audited(hub: &TestHub, id: &ConsultationId, action: &str) -> Vec<Value> {
    audit(hub, id)
        .await
        .into_iter()
        .filter(|entry| entry["action"] == action)
        .collect()
}
