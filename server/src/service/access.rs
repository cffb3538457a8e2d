//! Loading a consultation on behalf of a principal, refusing those who are
//! not its members.

use super::ServiceError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::{Consultation, access};
use crate::store::consultations::{self, ListFilter};
use consult_protocol::{ConsultationId, ConsultationStatus, ErrorCode, Role};

/// Most consultations `consultations_of` returns.
pub const MAX_LISTED: u64 = 200;

/// The consultation, if `principal` may act on it.
///
/// # Errors
///
/// `not_found` when it does not exist, `forbidden` when the principal is not
/// a member, or a store failure.
pub async fn authorized_consultation(
    state: &AppState,
    principal: &Principal,
    id: &ConsultationId,
) -> Result<Consultation, ServiceError> {
    let consultation = state.store.consultation(id).await?.ok_or_else(|| {
        ServiceError::refused(ErrorCode::NotFound, format!("no consultation {id}"))
    })?;
    if !access::may_access(principal, &consultation) {
        tracing::info!(user = %principal.user, consultation = %id, "refused: not a member");
        return Err(ServiceError::refused(
            ErrorCode::Forbidden,
            format!("you are not a member of consultation {id}"),
        ));
    }
    Ok(consultation)
}

/// The consultations `principal` may act on, by booked start: a patient's
/// own, a provider's assigned ones, every one of an admin's clinic. Ended and
/// cancelled ones only with `include_closed`.
///
/// # Errors
///
/// A store failure.
pub async fn consultations_of(
    state: &AppState,
    principal: &Principal,
    include_closed: bool,
) -> Result<Vec<Consultation>, ServiceError> {
    let mut filter = ListFilter {
        after: None,
        clinic_id: Some(principal.clinic.clone()),
        limit: MAX_LISTED,
        ..ListFilter::default()
    };
    match principal.role {
        Role::Patient => filter.patient_id = Some(principal.user.clone()),
        Role::Provider => filter.provider_id = Some(principal.user.clone()),
        Role::Admin => {}
    }
    if !include_closed {
        filter.statuses = vec![
            ConsultationStatus::Scheduled,
            ConsultationStatus::WaitingForPatient,
            ConsultationStatus::PatientReady,
            ConsultationStatus::InProgress,
        ];
    }
    Ok(consultations::list(state.store.connection(), &filter).await?)
}
