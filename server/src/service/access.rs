//! Loading a consultation on behalf of a principal, refusing those who are
//! not its members.

use super::ServiceError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::{Consultation, access};
use crate::store::consultations;
use consult_protocol::{ConsultationId, ErrorCode};

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
    let consultation = consultations::find(state.store.connection(), id)
        .await?
        .ok_or_else(|| {
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
