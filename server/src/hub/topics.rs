//! Topic names for rooms and dashboard feeds.

use crate::broker::Topic;
use consult_protocol::{ClinicId, ConsultationId, UserId};

/// The room of one consultation.
pub fn room(consultation: &ConsultationId) -> Topic {
    format!("room:{consultation}").into()
}

/// The "Active and Waiting" feed of one provider in one clinic. The clinic
/// is part of the name so that a watcher from another clinic naming the same
/// provider id never hears this clinic's rows.
pub fn provider_feed(clinic: &ClinicId, provider: &UserId) -> Topic {
    format!("feed:provider:{clinic}:{provider}").into()
}

/// The "Active and Waiting" feed of a whole clinic.
pub fn clinic_feed(clinic: &ClinicId) -> Topic {
    format!("feed:clinic:{clinic}").into()
}
