//! Authorization: may this principal act on this consultation?
//!
//! A patient may act only on its own consultations, a provider on those it is
//! assigned to, and a clinic admin on every consultation of its clinic. All
//! of them only within the clinic named by their token.

use crate::auth::Principal;
use crate::domain::Consultation;
use consult_protocol::Role;

/// True when `principal` is a member of `consultation`'s room.
pub fn may_access(principal: &Principal, consultation: &Consultation) -> bool {
    if principal.clinic != consultation.clinic_id {
        return false;
    }
    match principal.role {
        Role::Patient => principal.user == consultation.patient_id,
        Role::Provider => principal.user == consultation.provider_id,
        Role::Admin => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use consult_protocol::{ClinicId, ConsultationStatus, UserId};

    fn consultation() -> Consultation {
        Consultation {
            id: "k1".into(),
            clinic_id: "c1".into(),
            provider_id: "dr".into(),
            patient_id: "pat".into(),
            status: ConsultationStatus::WaitingForPatient,
            scheduled_at: Utc::now(),
            waiting_since: None,
            staff_messaged_first: false,
            last_seq: 0,
            rev: 0,
        }
    }

    fn principal(user: &str, role: Role, clinic: &str) -> Principal {
        Principal {
            user: UserId::from(user),
            role,
            clinic: ClinicId::from(clinic),
        }
    }

    #[test]
    fn the_patient_and_provider_of_the_consultation_may_access_it() {
        assert!(may_access(
            &principal("pat", Role::Patient, "c1"),
            &consultation()
        ));
        assert!(may_access(
            &principal("dr", Role::Provider, "c1"),
            &consultation()
        ));
    }

    #[test]
    fn another_patient_or_provider_may_not() {
        assert!(!may_access(
            &principal("other", Role::Patient, "c1"),
            &consultation()
        ));
        assert!(!may_access(
            &principal("other", Role::Provider, "c1"),
            &consultation()
        ));
    }

    #[test]
    fn an_admin_may_access_only_its_own_clinic() {
        assert!(may_access(
            &principal("adm", Role::Admin, "c1"),
            &consultation()
        ));
        assert!(!may_access(
            &principal("adm", Role::Admin, "c2"),
            &consultation()
        ));
    }

    #[test]
    fn a_matching_user_in_another_clinic_is_refused() {
        assert!(!may_access(
            &principal("pat", Role::Patient, "c2"),
            &consultation()
        ));
    }
}
