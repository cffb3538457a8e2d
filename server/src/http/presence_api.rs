//! REST presence, for the host platform's back end: who of a consultation
//! is connected, and whether one participant is, across every node of the
//! cluster (`GET /v1/consultations/{id}/presence`,
//! `GET /v1/participants/{id}/presence`). Answers are as fresh as the
//! presence the hub itself uses (`broker.presence_cache_ms` for other
//! nodes' connections).

use super::api::find_consultation;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiKey, ApiPath};
use crate::app::AppState;
use crate::domain::PersonKey;
use axum::Json;
use axum::extract::State;
use consult_protocol::{ClinicId, ConsultationId, Role, UserId};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(consultation_presence))
        .routes(routes!(participant_presence))
}

/// One person's presence.
#[derive(Debug, Serialize, ToSchema)]
struct MemberPresence {
    user: UserId,
    role: Role,
    /// At least one live connection, on any node.
    online: bool,
    /// At least one of them with the app in the foreground.
    foreground: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct ConsultationPresence {
    consultation_id: ConsultationId,
    members: Vec<MemberPresence>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ParticipantPresence {
    user: UserId,
    clinic: ClinicId,
    online: bool,
    foreground: bool,
}

async fn member(state: &AppState, clinic: &ClinicId, user: &UserId, role: Role) -> MemberPresence {
    let status = state.presence.status(&PersonKey::new(clinic, user)).await;
    MemberPresence {
        user: user.clone(),
        role,
        online: status.online,
        foreground: status.foreground,
    }
}

/// Whether the consultation's provider and patient are connected, on any
/// node.
#[utoipa::path(get, path = "/consultations/{id}/presence", tag = "presence", operation_id = "consultation_presence",
    params(("id" = ConsultationId, Path, description = "The consultation")),
    responses(
        (status = 200, description = "The provider's and the patient's presence", body = ConsultationPresence),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
    ))]
async fn consultation_presence(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
) -> Result<Json<ConsultationPresence>, ApiError> {
    let consultation = find_consultation(&state, &id).await?;
    let clinic = &consultation.clinic_id;
    let members = vec![
        member(&state, clinic, &consultation.provider_id, Role::Provider).await,
        member(&state, clinic, &consultation.patient_id, Role::Patient).await,
    ];
    Ok(Json(ConsultationPresence {
        consultation_id: id,
        members,
    }))
}

/// Whether a participant is connected, on any node.
#[utoipa::path(get, path = "/participants/{id}/presence", tag = "presence", operation_id = "participant_presence",
    params(("id" = UserId, Path, description = "The participant")),
    responses(
        (status = 200, description = "The participant's presence", body = ParticipantPresence),
        (status = 404, description = "No such participant (`not_found`)", body = ErrorBody),
    ))]
async fn participant_presence(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<UserId>,
) -> Result<Json<ParticipantPresence>, ApiError> {
    let clinic = state
        .store
        .clinic_of(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no participant {id}")))?;
    let status = state.presence.status(&PersonKey::new(&clinic, &id)).await;
    Ok(Json(ParticipantPresence {
        user: id,
        clinic,
        online: status.online,
        foreground: status.foreground,
    }))
}
