//! Demo data for the embedded default: one clinic, a provider, a clinic
//! admin, three patients (two with SMS consent, one with a push device) and
//! consultations in several statuses, plus tokens to try them with. Seeding
//! is idempotent.

use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::PersonKey;
use crate::store::consultations::{self, ListFilter, NewConsultation};
use crate::store::participants::{self, Participant};
use crate::store::{StoreError, contacts};
use chrono::{Duration, Utc};
use consult_protocol::{
    ClinicId, ConsultationId, ConsultationStatus, DevicePlatform, Role, UserId,
};

/// The demo clinic's id.
pub const CLINIC: &str = "riverside";
/// Token lifetime for demo tokens: 12 hours.
pub const TOKEN_TTL_SECS: u64 = 12 * 60 * 60;

const PEOPLE: &[(&str, Role, &str, Option<&str>)] = &[
    ("dr-lee", Role::Provider, "Dr. Morgan Lee", None),
    ("admin-kim", Role::Admin, "Kim Park (clinic admin)", None),
    (
        "pat-alex",
        Role::Patient,
        "Alex Rivera",
        Some("+15550100001"),
    ),
    ("pat-sam", Role::Patient, "Sam Okafor", Some("+15550100002")),
    (
        "pat-jo",
        Role::Patient,
        "Jo Lindqvist",
        Some("+15550100003"),
    ),
];

/// What the demo created, for printing.
#[derive(Debug, Clone)]
pub struct DemoInfo {
    /// `(user, role, display name, token)` for each demo person.
    pub people: Vec<(UserId, Role, String, String)>,
    /// `(consultation, patient, status)`.
    pub consultations: Vec<(ConsultationId, UserId, ConsultationStatus)>,
}

/// Seeds the demo clinic if it has no consultations yet, and issues tokens.
///
/// # Errors
///
/// A store failure, or a token signing failure (reported as corrupt).
pub async fn seed(state: &AppState) -> Result<DemoInfo, StoreError> {
    let db = state.store.connection();
    let clinic = ClinicId::from(CLINIC);
    participants::upsert_clinic(db, &clinic, Some("Riverside Family Clinic")).await?;
    let mut people = Vec::new();
    for (id, role, name, phone) in PEOPLE {
        let person = Participant {
            id: UserId::from(*id),
            clinic_id: clinic.clone(),
            role: *role,
            display_name: (*name).to_owned(),
            phone: phone.map(str::to_owned),
            preferred_name: None,
        };
        if participants::upsert(db, &person).await? == participants::Upserted::OtherClinic {
            return Err(StoreError::Corrupt(format!(
                "demo user {} is registered in another clinic",
                person.id
            )));
        }
        let token = state
            .auth
            .issue(
                &Principal {
                    user: person.id.clone(),
                    role: *role,
                    clinic: clinic.clone(),
                },
                TOKEN_TTL_SECS,
            )
            .map_err(|error| StoreError::Corrupt(format!("token signing failed: {error}")))?;
        people.push((person.id, *role, person.display_name, token));
    }
    // Alex and Sam can be reached outside the app, so "Alert Patient" works
    // in the demo (the log provider records what would be sent).
    for patient in ["pat-alex", "pat-sam"] {
        contacts::set_sms_consent(db, &PersonKey::new(&clinic, &UserId::from(patient)), true)
            .await?;
    }
    contacts::register_device(
        db,
        &PersonKey::new(&clinic, &UserId::from("pat-alex")),
        DevicePlatform::Fcm,
        "demo-device-pat-alex",
        true,
    )
    .await?;
    let filter = ListFilter {
        after: None,
        clinic_id: Some(clinic.clone()),
        limit: 100,
        ..ListFilter::default()
    };
    let mut existing = consultations::list(db, &filter).await?;
    if existing.is_empty() {
        let now = Utc::now();
        for (patient, status, offset_minutes) in [
            ("pat-alex", ConsultationStatus::WaitingForPatient, -5),
            ("pat-sam", ConsultationStatus::Scheduled, 0),
            ("pat-jo", ConsultationStatus::Scheduled, 30),
        ] {
            consultations::create(
                db,
                NewConsultation {
                    clinic_id: clinic.clone(),
                    provider_id: UserId::from("dr-lee"),
                    patient_id: UserId::from(patient),
                    scheduled_at: now + Duration::minutes(offset_minutes),
                    status,
                },
            )
            .await?;
        }
        // Sam has already tapped "I'm Ready".
        existing = consultations::list(db, &filter).await?;
        if let Some(sam) = existing.iter().find(|c| c.patient_id.as_str() == "pat-sam") {
            consultations::transition(
                db,
                &sam.id,
                ConsultationStatus::Scheduled,
                ConsultationStatus::PatientReady,
            )
            .await?;
        }
        existing = consultations::list(db, &filter).await?;
    }
    Ok(DemoInfo {
        people,
        consultations: existing
            .into_iter()
            .map(|c| (c.id, c.patient_id, c.status))
            .collect(),
    })
}
