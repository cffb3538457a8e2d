//! How to reach a patient, and under which policy: presence, devices with
//! notifications on, SMS consent and the clinic's escalation policy. Every
//! staff message asks, so devices, consent and policies are cached for
//! `notify.reach_cache_ms` and read again in the background before they
//! expire ([`RefreshAhead`]): a send waits for the store only the first
//! time a patient (or clinic) is asked for, or after a pause longer than
//! the cache's life, never for a refresh. This node's own changes
//! invalidate the cache at once.

use super::ServiceError;
use super::refresh_ahead::RefreshAhead;
use crate::app::AppState;
use crate::config::NotifyConfig;
use crate::domain::escalation::{Policy, Reach};
use crate::domain::{Consultation, PersonKey};
use crate::store::contacts::Contact;
use crate::store::policies;
use consult_protocol::ClinicId;
use std::sync::Arc;
use std::time::Duration;

/// Short-lived caches of contacts and clinic policies.
#[derive(Debug, Default)]
pub struct ReachCache {
    contacts: RefreshAhead<PersonKey, Contact>,
    policies: RefreshAhead<ClinicId, Policy>,
}

impl ReachCache {
    /// Forgets what is cached for `person` (after it changed a device or
    /// its SMS consent).
    pub fn forget_person(&self, person: &PersonKey) {
        self.contacts.forget(person);
    }

    /// Forgets every cached contact (after a STOP, which names a phone).
    pub fn forget_all_users(&self) {
        self.contacts.forget_all();
    }

    /// True when how `person` is reached was read less than `ttl` ago.
    pub fn holds_contact(&self, person: &PersonKey, ttl: Duration) -> bool {
        self.contacts.is_fresh(person, ttl)
    }

    /// Forgets a clinic's cached policy.
    pub fn forget_clinic(&self, clinic: &ClinicId) {
        self.policies.forget(clinic);
    }
}

/// The hub's default policy from configuration.
pub fn default_policy(config: &NotifyConfig) -> Policy {
    Policy {
        push_after: Duration::from_millis(config.push_after_ms),
        offline_grace: Duration::from_millis(config.offline_grace_ms),
        sms_after_unread: config.sms_after_unread_ms.map(Duration::from_millis),
        push_include_text: config.push_include_text,
    }
}

/// How `patient` (a user of one clinic) can be reached right now.
///
/// # Errors
///
/// A store failure.
pub async fn reach(state: &AppState, patient: &PersonKey) -> Result<Reach, ServiceError> {
    let contact = contact(state, patient).await?;
    let presence = state.presence.status(patient).await;
    let mut devices = contact.devices;
    // A platform without configured credentials cannot be reached.
    devices.retain(|(platform, _)| state.notifier.push_provider(*platform) != "unavailable");
    Ok(Reach {
        online: presence.online,
        foreground: presence.foreground,
        devices,
        sms_phone: contact.sms_phone,
    })
}

/// `patient`'s devices and SMS phone, cached.
async fn contact(state: &AppState, patient: &PersonKey) -> Result<Contact, ServiceError> {
    let ttl = Duration::from_millis(state.config.notify.reach_cache_ms);
    let store = state.store.clone();
    let person = patient.clone();
    Ok(state
        .reach
        .contacts
        .get(patient, ttl, || async move { store.contact(&person).await })
        .await?)
}

/// Reads, in the background, how `consultation`'s patient is reached and
/// its clinic's policy, unless both are cached: staff who enter a
/// consultation are about to message its patient, and the first message
/// then finds them cached instead of waiting for the store.
pub fn warm(state: &Arc<AppState>, consultation: &Consultation) {
    let ttl = Duration::from_millis(state.config.notify.reach_cache_ms);
    let patient = consultation.patient();
    if state.reach.contacts.is_fresh(&patient, ttl)
        && state.reach.policies.is_fresh(&consultation.clinic_id, ttl)
    {
        return;
    }
    let state = Arc::clone(state);
    let clinic = consultation.clinic_id.clone();
    tokio::spawn(async move {
        let read = match contact(&state, &patient).await {
            Ok(_) => policy(&state, &clinic).await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = read {
            // The first message reads them again, and says what failed.
            tracing::debug!(error = %error, "reading a patient's reach ahead failed");
        }
    });
}

/// The clinic's escalation policy (its own, or the hub's default).
///
/// # Errors
///
/// A store failure.
pub async fn policy(state: &AppState, clinic: &ClinicId) -> Result<Policy, ServiceError> {
    let ttl = Duration::from_millis(state.config.notify.reach_cache_ms);
    let db = state.store.connection().clone();
    let default = default_policy(&state.config.notify);
    let of = clinic.clone();
    let policy = state
        .reach
        .policies
        .get(clinic, ttl, || async move {
            Ok::<_, crate::store::StoreError>(policies::find(&db, &of).await?.unwrap_or(default))
        })
        .await?;
    Ok(policy)
}
