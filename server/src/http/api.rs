//! The REST API for the host platform's back end, behind an API key:
//! participants and consultations (create, list, get, open, cancel).

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiKey, ApiPath, ApiQuery};
use super::paging;
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::status::StatusAction;
use crate::service::registered_clinics::registered_clinic;
use crate::service::status;
use crate::store::audit;
use crate::store::consultations::{self, ListFilter, NewConsultation};
use crate::store::participants::{self, Participant};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use consult_protocol::{
    ClinicId, ConsultationId, ConsultationStatus, ConsultationView, Role, UserId,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most rows one page of a list returns.
pub(super) const MAX_LIST_LIMIT: u64 = 500;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(put_participant, get_participant))
        .routes(routes!(create_consultation, list_consultations))
        .routes(routes!(get_consultation))
        .routes(routes!(open_consultation))
        .routes(routes!(cancel_consultation))
}

/// The platform acting through the API, as recorded in the audit log.
pub(super) fn platform(clinic: &ClinicId) -> Principal {
    Principal {
        user: UserId::from("platform"),
        role: Role::Admin,
        clinic: clinic.clone(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ParticipantBody {
    clinic_id: ClinicId,
    role: Role,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    display_name: String,
    #[serde(default)]
    #[schema(pattern = r"^\+[0-9]{8,15}$")]
    phone: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    preferred_name: Option<String>,
}

/// Creates or updates a participant (patient, provider or clinic admin).
#[utoipa::path(put, path = "/participants/{id}", tag = "participants", operation_id = "put_participant",
    params(("id" = UserId, Path, description = "The user id, as the host platform knows it")),
    request_body = ParticipantBody,
    responses(
        (status = 200, description = "The participant as stored", body = Participant),
        (status = 409, description = "The id is registered in another clinic (`clinic_mismatch`)", body = ErrorBody),
    ))]
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
    match registered_clinic(state, user).await? {
        Some(registered) if registered != *clinic => Err(ApiError::clinic_mismatch(user)),
        _ => Ok(()),
    }
}

/// Writes `person`; 409 `clinic_mismatch` if another clinic registered the
/// id first (the store's conditional update decides a race).
async fn register(state: &AppState, person: &Participant) -> Result<(), ApiError> {
    match participants::upsert(state.store.connection(), person).await? {
        participants::Upserted::Written => {
            state
                .registered_clinics
                .remember(&person.id, &person.clinic_id);
            Ok(())
        }
        participants::Upserted::OtherClinic => Err(ApiError::clinic_mismatch(&person.id)),
    }
}

/// Refuses a name or label holding control characters (which no name
/// has, and which some stores cannot keep).
pub(super) fn check_printable(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn validate_participant(person: &Participant) -> Result<(), ApiError> {
    ApiError::check_id("id", person.id.as_str())?;
    ApiError::check_id("clinic_id", person.clinic_id.as_str())?;
    check_printable("display_name", &person.display_name)?;
    if let Some(name) = &person.preferred_name {
        check_printable("preferred_name", name)?;
    }
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

/// Reads a participant.
#[utoipa::path(get, path = "/participants/{id}", tag = "participants", operation_id = "get_participant",
    params(("id" = UserId, Path, description = "The user id")),
    responses(
        (status = 200, description = "The participant", body = Participant),
        (status = 404, description = "No such participant (`not_found`)", body = ErrorBody),
    ))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PersonBody {
    id: UserId,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    display_name: String,
    #[serde(default)]
    #[schema(pattern = r"^\+[0-9]{8,15}$")]
    phone: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    preferred_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateConsultationBody {
    clinic_id: ClinicId,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    clinic_name: Option<String>,
    provider: PersonBody,
    patient: PersonBody,
    #[serde(default)]
    scheduled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<ConsultationStatus>,
}

/// Creates a consultation, and its clinic, provider and patient.
#[utoipa::path(post, path = "/consultations", tag = "consultations", operation_id = "create_consultation",
    request_body = CreateConsultationBody,
    responses(
        (status = 201, description = "The new consultation", body = ConsultationView),
        (status = 409, description = "A person's id is registered in another clinic (`clinic_mismatch`)", body = ErrorBody),
    ))]
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
    if let Some(name) = &body.clinic_name {
        check_printable("clinic_name", name)?;
        if name.trim().is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid(
                "clinic_name must be 1 to 200 characters when given",
            ));
        }
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
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
    /// At most this many (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// Where to go on: the previous page's `next_cursor`.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ConsultationList {
    consultations: Vec<ConsultationView>,
    /// Present when more follow: pass it as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Lists consultations, by scheduled time then id.
#[utoipa::path(get, path = "/consultations", tag = "consultations", operation_id = "list_consultations",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of consultations", body = ConsultationList),
    ))]
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
    for (field, id) in [
        ("clinic_id", query.clinic_id.as_ref().map(ClinicId::as_str)),
        (
            "provider_id",
            query.provider_id.as_ref().map(UserId::as_str),
        ),
        ("patient_id", query.patient_id.as_ref().map(UserId::as_str)),
    ] {
        if let Some(id) = id {
            ApiError::check_id(field, id)?;
        }
    }
    let limit = paging::limit(query.limit, 100, MAX_LIST_LIMIT)?;
    let after = match &query.cursor {
        None => None,
        Some(cursor) => {
            let [scheduled_at, id] = paging::decode(cursor)?;
            Some((paging::time(&scheduled_at)?, ConsultationId(id)))
        }
    };
    let filter = ListFilter {
        clinic_id: query.clinic_id,
        provider_id: query.provider_id,
        patient_id: query.patient_id,
        statuses,
        updated_since: None,
        after,
        limit: limit + 1,
    };
    let mut list = consultations::list(state.store.connection(), &filter).await?;
    let more = list.len() as u64 > limit;
    list.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more.then(|| list.last()).flatten().map(|last| {
        let scheduled_at = paging::time_part(last.scheduled_at);
        paging::encode([scheduled_at.as_str(), last.id.as_str()])
    });
    Ok(Json(ConsultationList {
        consultations: list.iter().map(|c| c.view()).collect(),
        next_cursor,
    }))
}

pub(super) async fn find_consultation(
    state: &AppState,
    id: &ConsultationId,
) -> Result<crate::domain::Consultation, ApiError> {
    state
        .store
        .consultation(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no consultation {id}")))
}

/// Reads a consultation.
#[utoipa::path(get, path = "/consultations/{id}", tag = "consultations", operation_id = "get_consultation",
    params(("id" = ConsultationId, Path, description = "The consultation")),
    responses(
        (status = 200, description = "The consultation", body = ConsultationView),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
    ))]
async fn get_consultation(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
) -> Result<Json<ConsultationView>, ApiError> {
    Ok(Json(find_consultation(&state, &id).await?.view()))
}

/// Opens a scheduled consultation: `scheduled` → `waiting_for_patient`.
#[utoipa::path(post, path = "/consultations/{id}/open", tag = "consultations", operation_id = "open_consultation",
    params(("id" = ConsultationId, Path, description = "The consultation")),
    responses(
        (status = 200, description = "The consultation after the change", body = ConsultationView),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
        (status = 409, description = "The status does not allow it (`invalid_transition`, `consultation_closed`)", body = ErrorBody),
    ))]
async fn open_consultation(
    key: ApiKey,
    state: State<Arc<AppState>>,
    path: ApiPath<ConsultationId>,
) -> Result<Json<ConsultationView>, ApiError> {
    apply_action(key, state, path, StatusAction::Open).await
}

/// Cancels a consultation that has not ended.
#[utoipa::path(post, path = "/consultations/{id}/cancel", tag = "consultations", operation_id = "cancel_consultation",
    params(("id" = ConsultationId, Path, description = "The consultation")),
    responses(
        (status = 200, description = "The consultation after the change", body = ConsultationView),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
        (status = 409, description = "The status does not allow it (`invalid_transition`, `consultation_closed`)", body = ErrorBody),
    ))]
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
