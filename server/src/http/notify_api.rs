//! The REST API for notifications: escalation policies per clinic,
//! patients' devices and SMS consent, a consultation's notification
//! outcomes, and inbound SMS (STOP/START).

use super::api::{find_consultation, platform};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiKey, ApiPath, ApiQuery, check_api_key};
use super::paging;
use crate::app::AppState;
use crate::domain::escalation::Policy;
use crate::notify::providers::verify_inbound_signature;
use crate::service::{contacts as contact_service, reach};
use crate::store::audit::{self, AuditEntry};
use crate::store::{inbound_sms, participants, policies};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use consult_protocol::{ClinicId, ConsultationId, DevicePlatform, NotificationView, Role, UserId};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest escalation time a policy may set: one day.
const MAX_POLICY_MS: u64 = 24 * 60 * 60 * 1000;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(register_device))
        .routes(routes!(put_sms_consent))
        .routes(routes!(list_notifications))
        .routes(routes!(inbound_sms))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    push_after_ms: u64,
    offline_grace_ms: u64,
    #[serde(default)]
    sms_after_unread_ms: Option<u64>,
    #[serde(default)]
    push_include_text: bool,
    /// Days the messages of an ended (or cancelled) consultation are kept
    /// before they are deleted (1 to 36 500); absent or `null`: kept forever
    /// (and then absent from answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    message_retention_days: Option<u32>,
}

/// Longest message retention a clinic may set: a hundred years.
const MAX_RETENTION_DAYS: u32 = 36_500;

impl PolicyBody {
    fn new(policy: Policy, message_retention_days: Option<u32>) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            push_after_ms: ms(policy.push_after),
            offline_grace_ms: ms(policy.offline_grace),
            sms_after_unread_ms: policy.sms_after_unread.map(ms),
            push_include_text: policy.push_include_text,
            message_retention_days,
        }
    }
}

/// Reads the clinic's escalation policy (the configured default when it
/// set none).
#[utoipa::path(get, path = "/clinics/{clinic}/policy", tag = "notifications", operation_id = "get_policy",
    params(("clinic" = ClinicId, Path, description = "The clinic")),
    responses((status = 200, description = "The policy", body = PolicyBody)))]
async fn get_policy(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
) -> Result<Json<PolicyBody>, ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    let policy = reach::policy(&state, &clinic).await?;
    let retention = policies::retention_days(state.store.connection(), &clinic).await?;
    Ok(Json(PolicyBody::new(policy, retention)))
}

/// Sets the clinic's escalation policy.
#[utoipa::path(put, path = "/clinics/{clinic}/policy", tag = "notifications", operation_id = "put_policy",
    params(("clinic" = ClinicId, Path, description = "The clinic")), request_body = PolicyBody,
    responses((status = 200, description = "The policy as stored", body = PolicyBody)))]
async fn put_policy(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Json<PolicyBody>, ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    let times = [
        Some(body.push_after_ms),
        Some(body.offline_grace_ms),
        body.sms_after_unread_ms,
    ];
    if times.into_iter().flatten().any(|ms| ms > MAX_POLICY_MS) {
        return Err(ApiError::invalid(format!(
            "escalation times must be at most {MAX_POLICY_MS} ms"
        )));
    }
    if body
        .message_retention_days
        .is_some_and(|days| !(1..=MAX_RETENTION_DAYS).contains(&days))
    {
        return Err(ApiError::invalid(format!(
            "message_retention_days must be 1 to {MAX_RETENTION_DAYS}, or null to keep messages"
        )));
    }
    let policy = Policy {
        push_after: Duration::from_millis(body.push_after_ms),
        offline_grace: Duration::from_millis(body.offline_grace_ms),
        sms_after_unread: body.sms_after_unread_ms.map(Duration::from_millis),
        push_include_text: body.push_include_text,
    };
    let db = state.store.connection();
    participants::upsert_clinic(db, &clinic, None).await?;
    policies::put(db, &clinic, &policy, body.message_retention_days).await?;
    state.reach.forget_clinic(&clinic);
    audit::record(
        db,
        AuditEntry {
            actor: (&platform(&clinic)).into(),
            action: "policy.update",
            consultation: None,
            detail: serde_json::to_value(&body).unwrap_or_default(),
        },
    )
    .await?;
    Ok(Json(body))
}

/// The patient `id` as a principal, for acting on its behalf.
async fn patient(state: &AppState, id: &UserId) -> Result<crate::auth::Principal, ApiError> {
    let person = participants::find(state.store.connection(), id)
        .await?
        .filter(|person| person.role == Role::Patient)
        .ok_or_else(|| ApiError::not_found(format!("no patient {id}")))?;
    Ok(crate::auth::Principal {
        user: person.id,
        role: Role::Patient,
        clinic: person.clinic_id,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    platform: DevicePlatform,
    /// The push token the platform gave the app (1 to 512 visible ASCII characters).
    #[schema(pattern = r"^[!-~]{1,512}$")]
    token: String,
    notifications_enabled: bool,
}

/// Registers a patient's push device.
#[utoipa::path(post, path = "/participants/{id}/devices", tag = "notifications", operation_id = "register_device",
    params(("id" = UserId, Path, description = "The patient")), request_body = DeviceBody,
    responses(
        (status = 204, description = "Registered"),
        (status = 404, description = "No such patient (`not_found`)", body = ErrorBody),
        (status = 429, description = "Too many registrations for this patient lately (`rate_limited`)", body = ErrorBody),
    ))]
async fn register_device(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<DeviceBody>,
) -> Result<StatusCode, ApiError> {
    let principal = patient(&state, &id).await?;
    contact_service::register_device(
        &state,
        &principal,
        body.platform,
        &body.token,
        body.notifications_enabled,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    consent: bool,
}

/// Records whether a patient agreed to receive SMS.
#[utoipa::path(put, path = "/participants/{id}/sms-consent", tag = "notifications", operation_id = "put_sms_consent",
    params(("id" = UserId, Path, description = "The patient")), request_body = ConsentBody,
    responses((status = 204, description = "Recorded"), (status = 404, description = "No such patient (`not_found`)", body = ErrorBody)))]
async fn put_sms_consent(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<ConsentBody>,
) -> Result<StatusCode, ApiError> {
    let principal = patient(&state, &id).await?;
    contact_service::set_sms_consent(&state, &principal, body.consent).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct NotificationsQuery {
    /// At most this many (default and most 500).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// Where to go on: the previous page's `next_cursor` (older ones).
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct NotificationList {
    notifications: Vec<NotificationView>,
    /// Older notifications were left out.
    has_more: bool,
    /// Present when older ones remain: pass it as `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The consultation's push and SMS notifications, newest first; no text,
/// device token or phone number.
#[utoipa::path(get, path = "/consultations/{id}/notifications", tag = "notifications", operation_id = "list_notifications",
    params(("id" = ConsultationId, Path, description = "The consultation"), NotificationsQuery),
    responses(
        (status = 200, description = "The notifications", body = NotificationList),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
    ))]
async fn list_notifications(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    use crate::service::notifications::{MAX_LISTED, page};
    let limit = paging::limit(query.limit, MAX_LISTED, MAX_LISTED)?;
    let before = match &query.cursor {
        None => None,
        Some(cursor) => {
            let [created_at, key] = paging::decode(cursor)?;
            Some((paging::time(&created_at)?, key))
        }
    };
    find_consultation(&state, &id).await?;
    let page = page(&state, &id, before.as_ref(), limit).await?;
    let next_cursor = page.older.as_ref().map(|(created_at, key)| {
        let created_at = paging::time_part(*created_at);
        paging::encode([created_at.as_str(), key.as_str()])
    });
    Ok(Json(NotificationList {
        notifications: page.rows.iter().map(|row| row.view()).collect(),
        has_more: page.older.is_some(),
        next_cursor,
    }))
}

/// Inbound SMS. With Twilio configured, Twilio posts here and the request
/// must carry a valid `X-Twilio-Signature`; otherwise the host platform
/// relays inbound SMS with its API key. Only STOP/START keywords act.
#[utoipa::path(post, path = "/sms/inbound", tag = "notifications", operation_id = "inbound_sms",
    security(("api_key" = []), ("twilio_signature" = [])),
    request_body(content = InboundSms, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Taken (an empty TwiML answer)", content_type = "text/xml", body = String)))]
async fn inbound_sms(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let signed_by_twilio = authenticate_inbound(&state, &headers, &params)?;
    let field = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let from = field("From").ok_or_else(|| ApiError::invalid("missing From"))?;
    let text = field("Body").unwrap_or_default();
    let twiml = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;
    let answer = ([(axum::http::header::CONTENT_TYPE, "text/xml")], twiml);
    if signed_by_twilio {
        // A signature covers the URL and the parameters, never a time: the
        // same request can be sent again at will. Act on a MessageSid once.
        let sid = field("MessageSid")
            .filter(|sid| !sid.is_empty() && sid.len() <= inbound_sms::MAX_MESSAGE_SID_LEN)
            .ok_or_else(|| ApiError::invalid("missing or malformed MessageSid"))?;
        if !inbound_sms::first_sight(state.store.connection(), sid).await? {
            metrics::counter!("consult_sms_inbound_total", "outcome" => "replayed").increment(1);
            tracing::info!("inbound SMS replayed; ignored");
            return Ok(answer.into_response());
        }
    }
    metrics::counter!("consult_sms_inbound_total", "outcome" => "accepted").increment(1);
    if let Some(keyword) = contact_service::keyword(text) {
        let matched = contact_service::apply_keyword(&state, from, keyword).await?;
        tracing::info!(?keyword, matched, "inbound SMS keyword applied");
    }
    Ok(answer.into_response())
}

/// The form fields of an inbound SMS that the hub reads (Twilio sends
/// more; they are ignored).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
struct InboundSms {
    /// The sender's number, E.164.
    From: String,
    /// The text; only STOP and START keywords act.
    Body: Option<String>,
    /// Twilio's message id (required when signed by Twilio).
    MessageSid: Option<String>,
}

/// Authenticates an inbound SMS: by Twilio's signature when Twilio is
/// configured (`true`), else by the API key (`false`).
fn authenticate_inbound(
    state: &AppState,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<bool, ApiError> {
    let unauthorized =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let Some(twilio) = &state.config.notify.twilio else {
        return check_api_key(state, headers).map(|()| false);
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| unauthorized("missing X-Twilio-Signature"))?;
    // Configuration validation requires the public URL with Twilio: the
    // request's own Host and scheme say nothing reliable behind a proxy.
    let url = state
        .config
        .notify
        .sms_inbound_url
        .as_deref()
        .ok_or_else(|| {
            ApiError::internal(&"notify.sms_inbound_url is not set although notify.twilio is")
        })?;
    if verify_inbound_signature(twilio.auth_token.expose_secret(), url, params, signature) {
        Ok(true)
    } else {
        Err(unauthorized("bad X-Twilio-Signature"))
    }
}
