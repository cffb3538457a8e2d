//! The REST API for notifications: Quick Message templates and escalation
//! policies per clinic, patients' devices and SMS consent, a consultation's
//! notification outcomes, and inbound SMS (STOP/START).

use super::api::{find_consultation, platform};
use super::error::ApiError;
use super::extract::{ApiJson, ApiKey, ApiPath, ApiQuery, check_api_key};
use crate::app::AppState;
use crate::domain::escalation::Policy;
use crate::notify::providers::verify_inbound_signature;
use crate::service::{contacts as contact_service, reach, templates};
use crate::store::audit::{self, AuditEntry};
use crate::store::{inbound_sms, participants, policies};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use consult_protocol::{
    ClinicId, ConsultationId, DevicePlatform, NotificationView, QuickTemplate, Role, UserId,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Longest escalation time a policy may set: one day.
const MAX_POLICY_MS: u64 = 24 * 60 * 60 * 1000;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/clinics/{clinic}/templates",
            get(list_templates).post(create_template),
        )
        .route(
            "/clinics/{clinic}/templates/{id}",
            put(update_template).delete(delete_template),
        )
        .route("/clinics/{clinic}/policy", get(get_policy).put(put_policy))
        .route("/participants/{id}/devices", post(register_device))
        .route("/participants/{id}/sms-consent", put(put_sms_consent))
        .route("/consultations/{id}/notifications", get(list_notifications))
        .route("/sms/inbound", post(inbound_sms))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateQuery {
    #[serde(default)]
    provider_id: Option<UserId>,
}

#[derive(Debug, Serialize)]
struct TemplateList {
    templates: Vec<QuickTemplate>,
}

async fn list_templates(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
    ApiQuery(query): ApiQuery<TemplateQuery>,
) -> Result<Json<TemplateList>, ApiError> {
    let templates = templates::list(&state, &platform(&clinic), query.provider_id).await?;
    Ok(Json(TemplateList { templates }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    #[serde(default)]
    provider_id: Option<UserId>,
    title: String,
    body: String,
    #[serde(default)]
    position: Option<i32>,
}

async fn create_template(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<(StatusCode, Json<QuickTemplate>), ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    let input = templates::TemplateInput {
        template_id: None,
        provider_id: body.provider_id,
        title: body.title,
        body: body.body,
        position: body.position,
    };
    let template = templates::save(&state, &platform(&clinic), input).await?;
    Ok((StatusCode::CREATED, Json(template)))
}

async fn update_template(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath((clinic, id)): ApiPath<(ClinicId, String)>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<QuickTemplate>, ApiError> {
    let input = templates::TemplateInput {
        template_id: Some(id),
        provider_id: body.provider_id,
        title: body.title,
        body: body.body,
        position: body.position,
    };
    Ok(Json(
        templates::save(&state, &platform(&clinic), input).await?,
    ))
}

async fn delete_template(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath((clinic, id)): ApiPath<(ClinicId, String)>,
) -> Result<StatusCode, ApiError> {
    templates::delete(&state, &platform(&clinic), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    push_after_ms: u64,
    offline_grace_ms: u64,
    #[serde(default)]
    sms_after_unread_ms: Option<u64>,
    #[serde(default)]
    push_include_text: bool,
}

impl From<Policy> for PolicyBody {
    fn from(policy: Policy) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            push_after_ms: ms(policy.push_after),
            offline_grace_ms: ms(policy.offline_grace),
            sms_after_unread_ms: policy.sms_after_unread.map(ms),
            push_include_text: policy.push_include_text,
        }
    }
}

async fn get_policy(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
) -> Result<Json<PolicyBody>, ApiError> {
    Ok(Json(reach::policy(&state, &clinic).await?.into()))
}

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
    let policy = Policy {
        push_after: Duration::from_millis(body.push_after_ms),
        offline_grace: Duration::from_millis(body.offline_grace_ms),
        sms_after_unread: body.sms_after_unread_ms.map(Duration::from_millis),
        push_include_text: body.push_include_text,
    };
    let db = state.store.connection();
    participants::upsert_clinic(db, &clinic, None).await?;
    policies::put(db, &clinic, &policy).await?;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    platform: DevicePlatform,
    token: String,
    notifications_enabled: bool,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    consent: bool,
}

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

#[derive(Debug, Serialize)]
struct NotificationList {
    notifications: Vec<NotificationView>,
    /// Older notifications were left out.
    has_more: bool,
}

async fn list_notifications(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
) -> Result<Json<NotificationList>, ApiError> {
    find_consultation(&state, &id).await?;
    let (notifications, has_more) = crate::service::notifications::listed(&state, &id).await?;
    Ok(Json(NotificationList {
        notifications,
        has_more,
    }))
}

/// Inbound SMS. With Twilio configured, Twilio posts here and the request
/// must carry a valid `X-Twilio-Signature`; otherwise the host platform
/// relays inbound SMS with its API key. Only STOP/START keywords act.
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
