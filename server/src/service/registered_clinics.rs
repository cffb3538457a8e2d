//! Which clinic each user id is registered in, as `hello` checks it (see
//! [`super::identity`]), cached on this node. A participant's clinic never
//! changes once registered (registering it under another clinic is refused
//! and participants are never deleted), so a registered answer stays true
//! and is kept; "not registered" may change at any moment and is never
//! cached. Bounded: past [`CAPACITY`] users the least recently used are
//! forgotten and read again when they reconnect. Keyed by user id alone:
//! the question is which clinic a user id belongs to, and an id is
//! registered in one clinic at most.

use super::ServiceError;
use crate::app::AppState;
use consult_protocol::{ClinicId, UserId};
use quick_cache::sync::Cache;

/// Users whose clinic is kept (about 100 bytes each).
pub const CAPACITY: usize = 100_000;

/// The cache of registered clinics.
#[derive(Debug)]
pub struct RegisteredClinics {
    clinics: Cache<UserId, ClinicId>,
}

impl Default for RegisteredClinics {
    fn default() -> Self {
        Self {
            clinics: Cache::new(CAPACITY),
        }
    }
}

impl RegisteredClinics {
    /// The clinic `user` is known to be registered in.
    pub fn get(&self, user: &UserId) -> Option<ClinicId> {
        self.clinics.get(user)
    }

    /// Remembers that `user` is registered in `clinic`.
    pub fn remember(&self, user: &UserId, clinic: &ClinicId) {
        self.clinics.insert(user.clone(), clinic.clone());
    }
}

/// The clinic `user` is registered in, if registered: from the cache, else
/// from the store (and then cached).
///
/// # Errors
///
/// A store failure.
pub async fn registered_clinic(
    state: &AppState,
    user: &UserId,
) -> Result<Option<ClinicId>, ServiceError> {
    if let Some(clinic) = state.registered_clinics.get(user) {
        return Ok(Some(clinic));
    }
    let clinic = state.store.clinic_of(user).await?;
    if let Some(clinic) = &clinic {
        state.registered_clinics.remember(user, clinic);
    }
    Ok(clinic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_clinic_is_answered_and_an_unknown_user_is_not() {
        let cache = RegisteredClinics::default();
        let user = UserId::from("pat-a");
        assert_eq!(cache.get(&user), None);
        cache.remember(&user, &ClinicId::from("riverside"));
        assert_eq!(cache.get(&user), Some(ClinicId::from("riverside")));
        assert_eq!(cache.get(&UserId::from("pat-b")), None);
    }
}
