//! Who a token speaks for, checked against the registered participants.
//!
//! A user id names one person of one clinic (see docs/security.md,
//! "Identity"). A signed token whose `sub` is registered under another clinic
//! than its `clinic` claim is refused, even though its signature is good:
//! otherwise a token minted for clinic B naming clinic A's patient would act
//! as that patient wherever the clinic is not checked. A `sub` nobody
//! registered yet is accepted: it can reach only its own clinic's records
//! (every per-person record is keyed by clinic).

use super::ServiceError;
use super::registered_clinics::registered_clinic;
use crate::app::AppState;
use crate::auth::{AuthError, Principal, VerifiedToken};
use consult_protocol::ErrorCode;

/// Verifies `token`, checks its clinic against the registered participant
/// and that it is not revoked.
///
/// # Errors
///
/// `token_expired`, `invalid_token` (with a reason that holds no token
/// material) or `token_revoked`; a store failure.
pub async fn authenticate(state: &AppState, token: &str) -> Result<VerifiedToken, ServiceError> {
    let verified = state
        .auth
        .verify_fresh(token)
        .await
        .map_err(|error| match error {
            AuthError::Expired => ServiceError::refused(ErrorCode::TokenExpired, error.to_string()),
            AuthError::Invalid(_) => {
                ServiceError::refused(ErrorCode::InvalidToken, error.to_string())
            }
        })?;
    check_clinic(state, &verified.principal).await?;
    if state.revocations.is_revoked(&verified) {
        return Err(ServiceError::refused(
            ErrorCode::TokenRevoked,
            "the token was revoked",
        ));
    }
    Ok(verified)
}

/// Refuses a principal whose user is registered under another clinic.
///
/// # Errors
///
/// `invalid_token`; a store failure.
pub async fn check_clinic(state: &AppState, principal: &Principal) -> Result<(), ServiceError> {
    match registered_clinic(state, &principal.user).await? {
        Some(registered) if registered != principal.clinic => Err(ServiceError::refused(
            ErrorCode::InvalidToken,
            "invalid token: the user is registered in another clinic than the token names",
        )),
        _ => Ok(()),
    }
}
