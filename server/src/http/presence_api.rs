//! REST presence, for the host platform's back end: who of a consultation
//! is connected, and whether one participant is, across every node of the
//! cluster (`GET /v1/consultations/{id}/presence`,
//! `GET /v1/participants/{id}/presence`). Answers are as fresh as the
//! presence the hub itself uses (`broker.presence_cache_ms` for other
//! nodes' connections).

use super::api::find_consultation;
use super::error::ApiError;
use super::extract::{ApiKey, ApiPath};
use crate::app::AppState;
use crate::domain::PersonKey;
use crate::store::participants;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use consult_protocol::{ClinicId, ConsultationId, Role, UserId};
use serde::Serialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/consultations/{id}/presence", get(consultation_presence))
        .route("/participants/{id}/presence", get(participant_presence))
}

/// One person's presence.
#[derive(Debug, Serialize)]
struct MemberPresence {
    user: UserId,
    role: Role,
    /// At least one live connection, on any node.
    online: bool,
    /// At least one of them with the app in the foreground.
    foreground: bool,
}

#[derive(Debug, Serialize)]
struct ConsultationPresence {
    consultation_id: ConsultationId,
    members: Vec<MemberPresence>,
}

#[derive(Debug, Serialize)]
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

async fn participant_presence(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<UserId>,
) -> Result<Json<ParticipantPresence>, ApiError> {
    let clinic = participants::clinic_of(state.store.connection(), &id)
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
