//! A patient's push devices and SMS consent, and the STOP/START keywords of
//! inbound SMS.

use super::ServiceError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::PersonKey;
use crate::store::audit::{self, Actor, AuditEntry};
use crate::store::contacts;
use consult_protocol::{DevicePlatform, ErrorCode, Role};

/// Longest device token accepted, in bytes.
pub const MAX_DEVICE_TOKEN_BYTES: usize = 512;

fn patient_only(principal: &Principal) -> Result<(), ServiceError> {
    if principal.role == Role::Patient {
        Ok(())
    } else {
        Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "only the patient's app registers devices and SMS consent",
        ))
    }
}

/// Registers or updates a push token for the patient.
///
/// # Errors
///
/// `forbidden` for staff, `invalid_value` for a malformed token,
/// `rate_limited` past `notify.device_registration_limit`; a store failure.
/// Only the newest `notify.max_devices_per_patient` devices are kept.
pub async fn register_device(
    state: &AppState,
    principal: &Principal,
    platform: DevicePlatform,
    token: &str,
    notifications_enabled: bool,
) -> Result<(), ServiceError> {
    patient_only(principal)?;
    if token.is_empty()
        || token.len() > MAX_DEVICE_TOKEN_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ServiceError::refused(
            ErrorCode::InvalidValue,
            format!("token must be 1 to {MAX_DEVICE_TOKEN_BYTES} visible ASCII characters"),
        ));
    }
    let person = PersonKey::of(principal);
    let notify = &state.config.notify;
    if !state
        .device_registrations
        .try_register(&person, notify.device_registration_limit)
    {
        return Err(ServiceError::refused(
            ErrorCode::RateLimited,
            format!(
                "at most {} device registrations per {} minutes",
                notify.device_registration_limit.max,
                notify.device_registration_limit.window_secs.div_ceil(60)
            ),
        ));
    }
    let db = state.store.connection();
    contacts::register_device(db, &person, platform, token, notifications_enabled).await?;
    contacts::keep_newest_devices(db, &person, u64::from(notify.max_devices_per_patient)).await?;
    state.reach.forget_person(&person);
    Ok(())
}

/// Records the patient's SMS consent.
///
/// # Errors
///
/// `forbidden` for staff; a store failure.
pub async fn set_sms_consent(
    state: &AppState,
    principal: &Principal,
    consent: bool,
) -> Result<(), ServiceError> {
    patient_only(principal)?;
    let db = state.store.connection();
    contacts::set_sms_consent(db, &PersonKey::of(principal), consent).await?;
    state.reach.forget_person(&PersonKey::of(principal));
    audit::record(
        db,
        AuditEntry {
            actor: principal.into(),
            action: if consent {
                "sms.consent"
            } else {
                "sms.withdraw"
            },
            consultation: None,
            detail: serde_json::json!({}),
        },
    )
    .await?;
    Ok(())
}

/// What an inbound SMS asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, UNSUBSCRIBE, CANCEL, END, QUIT, STOPALL.
    Stop,
    /// START, UNSTOP, YES.
    Start,
}

impl Keyword {
    /// The `keyword` label of `consult_sms_keywords_total`.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
        }
    }
}

/// Reads the carrier keywords of an inbound SMS body.
pub fn keyword(body: &str) -> Option<Keyword> {
    match body.trim().to_ascii_uppercase().as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => Some(Keyword::Stop),
        "START" | "UNSTOP" | "YES" => Some(Keyword::Start),
        _ => None,
    }
}

/// Applies STOP or START from `phone`. Returns how many participants it
/// matched.
///
/// # Errors
///
/// A store failure.
pub async fn apply_keyword(
    state: &AppState,
    phone: &str,
    keyword: Keyword,
) -> Result<usize, ServiceError> {
    let db = state.store.connection();
    let matched = contacts::set_opt_out_by_phone(db, phone, keyword == Keyword::Stop).await?;
    state.reach.forget_all_users();
    metrics::counter!("consult_sms_keywords_total", "keyword" => keyword.as_label()).increment(1);
    audit::record(
        db,
        AuditEntry {
            actor: Actor::HUB,
            action: match keyword {
                Keyword::Stop => "sms.stop",
                Keyword::Start => "sms.start",
            },
            consultation: None,
            detail: serde_json::json!({ "participants": matched }),
        },
    )
    .await?;
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_keywords_are_recognised_case_insensitively() {
        assert_eq!(keyword(" stop "), Some(Keyword::Stop));
        assert_eq!(keyword("Unsubscribe"), Some(Keyword::Stop));
        assert_eq!(keyword("START"), Some(Keyword::Start));
        assert_eq!(keyword("stop please"), None);
    }
}
