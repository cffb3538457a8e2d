//! How to reach a patient, and under which policy: presence, devices with
//! notifications on, SMS consent and the clinic's escalation policy. Devices,
//! consent and policies are cached briefly, since every staff message asks;
//! this node's own changes invalidate the cache at once.

use super::ServiceError;
use crate::app::AppState;
use crate::config::NotifyConfig;
use crate::domain::PersonKey;
use crate::domain::escalation::{Policy, Reach};
use crate::store::contacts::Contact;
use crate::store::policies;
use consult_protocol::ClinicId;
use dashmap::DashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Short-lived caches of contacts and clinic policies.
#[derive(Debug, Default)]
pub struct ReachCache {
    contacts: DashMap<PersonKey, (Contact, Instant)>,
    policies: DashMap<ClinicId, (Policy, Instant)>,
}

impl ReachCache {
    /// Forgets what is cached for `person` (after it changed a device or
    /// its SMS consent).
    pub fn forget_person(&self, person: &PersonKey) {
        self.contacts.remove(person);
    }

    /// Forgets every cached contact (after a STOP, which names a phone).
    pub fn forget_all_users(&self) {
        self.contacts.clear();
    }

    /// Forgets a clinic's cached policy.
    pub fn forget_clinic(&self, clinic: &ClinicId) {
        self.policies.remove(clinic);
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
    let ttl = Duration::from_millis(state.config.notify.reach_cache_ms);
    let cached = state
        .reach
        .contacts
        .get(patient)
        .filter(|entry| entry.1.elapsed() < ttl)
        .map(|entry| entry.0.clone());
    let contact = match cached {
        Some(contact) => contact,
        None => {
            let contact = state.store.contact(patient).await?;
            state
                .reach
                .contacts
                .insert(patient.clone(), (contact.clone(), Instant::now()));
            contact
        }
    };
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

/// The clinic's escalation policy (its own, or the hub's default).
///
/// # Errors
///
/// A store failure.
pub async fn policy(state: &AppState, clinic: &ClinicId) -> Result<Policy, ServiceError> {
    let ttl = Duration::from_millis(state.config.notify.reach_cache_ms);
    if let Some(entry) = state.reach.policies.get(clinic) {
        if entry.1.elapsed() < ttl {
            return Ok(entry.0);
        }
    }
    let policy = policies::find(state.store.connection(), clinic)
        .await?
        .unwrap_or_else(|| default_policy(&state.config.notify));
    state
        .reach
        .policies
        .insert(clinic.clone(), (policy, Instant::now()));
    Ok(policy)
}
