//! Who a per-person record belongs to: one user id within one clinic.
//!
//! Every record, cache entry and Redis key about a person (push devices, SMS
//! preferences, presence, the reach cache) is keyed by a [`PersonKey`], never
//! by the user id alone, so a token of one clinic naming another clinic's
//! user id can neither read nor change that person's records.

use crate::auth::Principal;
use consult_protocol::{ClinicId, UserId};

/// A user within one clinic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonKey {
    /// The clinic.
    pub clinic: ClinicId,
    /// The user id.
    pub user: UserId,
}

impl PersonKey {
    /// The key of `user` in `clinic`.
    pub fn new(clinic: &ClinicId, user: &UserId) -> Self {
        Self {
            clinic: clinic.clone(),
            user: user.clone(),
        }
    }

    /// The key of the person a token speaks for.
    pub fn of(principal: &Principal) -> Self {
        Self::new(&principal.clinic, &principal.user)
    }
}

impl std::fmt::Display for PersonKey {
    /// `clinic/user`, for logs (ids only, never names).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.clinic, self.user)
    }
}
