//! The REST API for the host platform's back end, behind an API key:
//! participants, consultations (create, list, get, open, cancel), message
//! history, the audit trail, and token issuing.

use super::error::ApiError;
use super::extract::{ApiJson, ApiKey, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::status::StatusAction;
use crate::service::{messaging, status};
use crate::store::audit;
use crate::store::consultations::{self, ListFilter, NewConsultation};
use crate::store::participants::{self, Participant};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use consult_protocol::{
    ChatMessage, ClinicId, ConsultationId, ConsultationStatus, ConsultationView, Role, Seq, UserId,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest token lifetime the API issues: 24 hours.
const MAX_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;
/// Most consultations one list call returns.
const MAX_LIST_LIMIT: u64 = 500;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/participants/{id}",
            put(put_participant).get(get_participant),
        )
        .route(
            "/consultations",
            post(create_consultation).get(list_consultations),
        )
        .route("/consultations/{id}", get(get_consultation))
        .route("/consultations/{id}/open", post(open_consultation))
        .route("/consultations/{id}/cancel", post(cancel_consultation))
        .route("/consultations/{id}/messages", get(list_messages))
        .route("/consultations/{id}/audit", get(list_audit))
        .route("/tokens", post(issue_token))
}

/// The platform acting through the API, as recorded in the audit log.
pub(super) fn platform(clinic: &ClinicId) -> Principal {
    Principal {
        user: UserId::from("platform"),
        role: Role::Admin,
        clinic: clinic.clone(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantBody {
    clinic_id: ClinicId,
    role: Role,
    display_name: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    preferred_name: Option<String>,
}

async fn put_participant(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ParticipantBody>,
) -> Result<Json<Participant>, ApiError> {
    let person = Participant {
        id: UserId(id),
        clinic_id: body.clinic_id,
        role: body.role,
        display_name: body.display_name,
        phone: body.phone,
        preferred_name: body.preferred_name,
    };
    validate_participant(&person)?;
    let db = state.store.connection();
    ensure_in_clinic(&state, &person.id, &person.clinic_id).await?;
    participants::upsert_clinic(db, &person.clinic_id, None).await?;
    register(&state, &person).await?;
    Ok(Json(person))
}

/// Refuses (409 `clinic_mismatch`) a user id registered in another clinic.
pub(super) async fn ensure_in_clinic(
    state: &AppState,
    user: &UserId,
    clinic: &ClinicId,
) -> Result<(), ApiError> {
    match participants::clinic_of(state.store.connection(), user).await? {
        Some(registered) if registered != *clinic => Err(ApiError::clinic_mismatch(user)),
        _ => Ok(()),
    }
}

/// Writes `person`; 409 `clinic_mismatch` if another clinic registered the
/// id first (the store's conditional update decides a race).
async fn register(state: &AppState, person: &Participant) -> Result<(), ApiError> {
    match participants::upsert(state.store.connection(), person).await? {
        participants::Upserted::Written => Ok(()),
        participants::Upserted::OtherClinic => Err(ApiError::clinic_mismatch(&person.id)),
    }
}

fn validate_participant(person: &Participant) -> Result<(), ApiError> {
    ApiError::check_id("id", person.id.as_str())?;
    ApiError::check_id("clinic_id", person.clinic_id.as_str())?;
    if person.display_name.trim().is_empty() || person.display_name.chars().count() > 200 {
        return Err(ApiError::invalid(
            "display_name must be 1 to 200 characters",
        ));
    }
    if person
        .preferred_name
        .as_ref()
        .is_some_and(|name| name.trim().is_empty() || name.chars().count() > 200)
    {
        return Err(ApiError::invalid(
            "preferred_name must be 1 to 200 characters when given",
        ));
    }
    if let Some(phone) = &person.phone {
        let digits = phone.strip_prefix('+').unwrap_or("");
        if digits.len() < 8 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid("phone must be E.164, like +15551234567"));
        }
    }
    Ok(())
}

async fn get_participant(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Participant>, ApiError> {
    participants::find(state.store.connection(), &UserId(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such participant"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonBody {
    id: UserId,
    display_name: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    preferred_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConsultationBody {
    clinic_id: ClinicId,
    #[serde(default)]
    clinic_name: Option<String>,
    provider: PersonBody,
    patient: PersonBody,
    #[serde(default)]
    scheduled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<ConsultationStatus>,
}

async fn create_consultation(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateConsultationBody>,
) -> Result<(StatusCode, Json<ConsultationView>), ApiError> {
    let status = body.status.unwrap_or(ConsultationStatus::Scheduled);
    if !matches!(
        status,
        ConsultationStatus::Scheduled | ConsultationStatus::WaitingForPatient
    ) {
        return Err(ApiError::invalid(
            "status must be scheduled or waiting_for_patient",
        ));
    }
    let people = [
        (body.provider, Role::Provider),
        (body.patient, Role::Patient),
    ]
    .map(|(person, role)| Participant {
        id: person.id,
        clinic_id: body.clinic_id.clone(),
        role,
        display_name: person.display_name,
        phone: person.phone,
        preferred_name: person.preferred_name,
    });
    for person in &people {
        validate_participant(person)?;
    }
    for person in &people {
        ensure_in_clinic(&state, &person.id, &body.clinic_id).await?;
    }
    let db = state.store.connection();
    participants::upsert_clinic(db, &body.clinic_id, body.clinic_name.as_deref()).await?;
    for person in &people {
        register(&state, person).await?;
    }
    let [provider, patient] = people;
    let created = consultations::create(
        db,
        NewConsultation {
            clinic_id: body.clinic_id.clone(),
            provider_id: provider.id,
            patient_id: patient.id,
            scheduled_at: body.scheduled_at.unwrap_or_else(Utc::now),
            status,
        },
    )
    .await?;
    audit::record(
        db,
        audit::AuditEntry {
            actor: (&platform(&body.clinic_id)).into(),
            action: "consultation.create",
            consultation: Some(&created.id),
            detail: serde_json::json!({ "status": status }),
        },
    )
    .await?;
    if status.is_active_or_waiting() {
        crate::service::dashboard::spawn_publish_entry(state.clone(), created.id.clone());
    }
    Ok((StatusCode::CREATED, Json(created.view())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    clinic_id: Option<ClinicId>,
    #[serde(default)]
    provider_id: Option<UserId>,
    #[serde(default)]
    patient_id: Option<UserId>,
    /// Comma-separated statuses.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ConsultationList {
    consultations: Vec<ConsultationView>,
}

async fn list_consultations(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ConsultationList>, ApiError> {
    let statuses = match &query.status {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|name| {
                name.trim()
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("unknown status {name}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_LIST_LIMIT}"
        )));
    }
    let filter = ListFilter {
        clinic_id: query.clinic_id,
        provider_id: query.provider_id,
        patient_id: query.patient_id,
        statuses,
        updated_since: None,
        limit,
    };
    let list = consultations::list(state.store.connection(), &filter).await?;
    Ok(Json(ConsultationList {
        consultations: list.iter().map(|c| c.view()).collect(),
    }))
}

pub(super) async fn find_consultation(
    state: &AppState,
    id: &ConsultationId,
) -> Result<crate::domain::Consultation, ApiError> {
    consultations::find(state.store.connection(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no consultation {id}")))
}

async fn get_consultation(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
) -> Result<Json<ConsultationView>, ApiError> {
    Ok(Json(find_consultation(&state, &id).await?.view()))
}

async fn open_consultation(
    key: ApiKey,
    state: State<Arc<AppState>>,
    path: ApiPath<ConsultationId>,
) -> Result<Json<ConsultationView>, ApiError> {
    apply_action(key, state, path, StatusAction::Open).await
}

async fn cancel_consultation(
    key: ApiKey,
    state: State<Arc<AppState>>,
    path: ApiPath<ConsultationId>,
) -> Result<Json<ConsultationView>, ApiError> {
    apply_action(key, state, path, StatusAction::Cancel).await
}

async fn apply_action(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
    action: StatusAction,
) -> Result<Json<ConsultationView>, ApiError> {
    let consultation = find_consultation(&state, &id).await?;
    let actor = platform(&consultation.clinic_id);
    let updated = status::apply(&state, &actor, &id, action).await?;
    Ok(Json(updated.view()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct MessagePage {
    messages: Vec<ChatMessage>,
    has_more: bool,
}

async fn list_messages(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    find_consultation(&state, &id).await?;
    let (messages, has_more) =
        messaging::history(&state, &id, query.before.map(Seq), query.limit).await?;
    Ok(Json(MessagePage { messages, has_more }))
}

#[derive(Debug, Serialize)]
struct AuditTrail {
    entries: Vec<audit::AuditRecord>,
}

async fn list_audit(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
) -> Result<Json<AuditTrail>, ApiError> {
    find_consultation(&state, &id).await?;
    let entries = audit::for_consultation(state.store.connection(), &id).await?;
    Ok(Json(AuditTrail { entries }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    user: UserId,
    role: Role,
    clinic: ClinicId,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    token: String,
    expires_at: DateTime<Utc>,
    /// The token's id, for `POST /v1/revocations/tokens`.
    jti: Option<String>,
}

async fn issue_token(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ttl = body.ttl_secs.unwrap_or(3600);
    let max_ttl = MAX_TOKEN_TTL_SECS.min(state.config.auth.max_token_lifetime_secs);
    if ttl == 0 || ttl > max_ttl {
        return Err(ApiError::invalid(format!(
            "ttl_secs must be 1 to {max_ttl}"
        )));
    }
    ApiError::check_id("user", body.user.as_str())?;
    ApiError::check_id("clinic", body.clinic.as_str())?;
    ensure_in_clinic(&state, &body.user, &body.clinic).await?;
    let principal = Principal {
        user: body.user,
        role: body.role,
        clinic: body.clinic,
    };
    let issued = state
        .auth
        .issue_token(&principal, ttl)
        .map_err(|error| ApiError::internal(&error))?;
    crate::service::revocations::audit_issued(&state, &issued.claims).await?;
    let expires_at = i64::try_from(issued.claims.exp)
        .ok()
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
        .unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(3600));
    Ok(Json(TokenResponse {
        token: issued.token,
        expires_at,
        jti: issued.claims.jti,
    }))
}
