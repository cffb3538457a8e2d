//! The consultation record as the rest of the hub sees it.

use chrono::{DateTime, Utc};
use consult_protocol::{
    ClinicId, ConsultationId, ConsultationStatus, ConsultationView, Seq, UserId,
};

/// One consultation: who is in it and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consultation {
    /// Its id.
    pub id: ConsultationId,
    /// The clinic it belongs to.
    pub clinic_id: ClinicId,
    /// The assigned provider.
    pub provider_id: UserId,
    /// The patient.
    pub patient_id: UserId,
    /// Current status.
    pub status: ConsultationStatus,
    /// Booked start.
    pub scheduled_at: DateTime<Utc>,
    /// When it began waiting for the patient.
    pub waiting_since: Option<DateTime<Utc>>,
    /// Staff messaged the patient before the patient was ready.
    pub staff_messaged_first: bool,
    /// Highest message sequence number.
    pub last_seq: u64,
    /// Dashboard revision.
    pub rev: u64,
}

impl Consultation {
    /// The patient, as a person of this consultation's clinic.
    pub fn patient(&self) -> super::PersonKey {
        super::PersonKey::new(&self.clinic_id, &self.patient_id)
    }

    /// The wire view sent to room members.
    pub fn view(&self) -> ConsultationView {
        ConsultationView {
            id: self.id.clone(),
            clinic_id: self.clinic_id.clone(),
            provider_id: self.provider_id.clone(),
            patient_id: self.patient_id.clone(),
            status: self.status,
            scheduled_at: self.scheduled_at,
            waiting_since: self.waiting_since,
            staff_messaged_first: self.staff_messaged_first,
            last_seq: Seq(self.last_seq),
            rev: self.rev,
        }
    }
}
