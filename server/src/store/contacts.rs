//! How to reach a patient outside the app: push devices, SMS consent and
//! STOP opt-outs. Every record is keyed by clinic and user ([`PersonKey`]):
//! the same device token or user id under another clinic is another record.

use super::StoreError;
use super::entities::{device, participant, sms_preference};
use crate::domain::PersonKey;
use chrono::Utc;
use consult_protocol::DevicePlatform;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

/// Registers a device token for `person` (moving it from any previous owner
/// in the same clinic; another clinic's registration of the same token is a
/// record of its own and stays untouched).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn register_device(
    db: &impl ConnectionTrait,
    person: &PersonKey,
    platform: DevicePlatform,
    token: &str,
    notifications_enabled: bool,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let row = device::ActiveModel {
        clinic_id: Set(person.clinic.to_string()),
        token: Set(token.to_owned()),
        user_id: Set(person.user.to_string()),
        platform: Set(platform.as_str().to_owned()),
        notifications_enabled: Set(notifications_enabled),
        created_at: Set(now),
        updated_at: Set(now),
    };
    device::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([device::Column::ClinicId, device::Column::Token])
                .update_columns([
                    device::Column::UserId,
                    device::Column::Platform,
                    device::Column::NotificationsEnabled,
                    device::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Forgets `person`'s least recently registered devices beyond the newest
/// `keep`. Returns how many were forgotten.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn keep_newest_devices(
    db: &impl ConnectionTrait,
    person: &PersonKey,
    keep: u64,
) -> Result<u64, StoreError> {
    let stale: Vec<String> = device::Entity::find()
        .filter(device::Column::ClinicId.eq(person.clinic.as_str()))
        .filter(device::Column::UserId.eq(person.user.as_str()))
        .order_by_desc(device::Column::UpdatedAt)
        .order_by_desc(device::Column::Token)
        .all(db)
        .await?
        .into_iter()
        .skip(usize::try_from(keep).unwrap_or(usize::MAX))
        .map(|row| row.token)
        .collect();
    if stale.is_empty() {
        return Ok(0);
    }
    let removed = device::Entity::delete_many()
        .filter(device::Column::ClinicId.eq(person.clinic.as_str()))
        .filter(device::Column::UserId.eq(person.user.as_str()))
        .filter(device::Column::Token.is_in(stale))
        .exec(db)
        .await?;
    Ok(removed.rows_affected)
}

/// How a person can be reached outside the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// Devices with notifications on: platform and token.
    pub devices: Vec<(DevicePlatform, String)>,
    /// The phone number to text, when SMS consent is given and not revoked
    /// by a STOP.
    pub sms_phone: Option<String>,
}

/// `person`'s [`Contact`], through `db`.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn contact(db: &impl ConnectionTrait, person: &PersonKey) -> Result<Contact, StoreError> {
    Ok(Contact {
        devices: push_devices(db, person).await?,
        sms_phone: sms_phone(db, person).await?,
    })
}

/// `person`'s devices with notifications on.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn push_devices(
    db: &impl ConnectionTrait,
    person: &PersonKey,
) -> Result<Vec<(DevicePlatform, String)>, StoreError> {
    let rows = device::Entity::find()
        .filter(device::Column::ClinicId.eq(person.clinic.as_str()))
        .filter(device::Column::UserId.eq(person.user.as_str()))
        .filter(device::Column::NotificationsEnabled.eq(true))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.platform.parse().ok()?, row.token)))
        .collect())
}

/// Forgets `person`'s registration of a token the push provider reported
/// as no longer valid. Only that clinic's row: another clinic's
/// registration of the same token is its own record.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn remove_device(
    db: &impl ConnectionTrait,
    person: &PersonKey,
    token: &str,
) -> Result<(), StoreError> {
    device::Entity::delete_many()
        .filter(device::Column::ClinicId.eq(person.clinic.as_str()))
        .filter(device::Column::UserId.eq(person.user.as_str()))
        .filter(device::Column::Token.eq(token))
        .exec(db)
        .await?;
    Ok(())
}

/// Records `person`'s SMS consent. Giving consent also clears a STOP
/// opt-out.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn set_sms_consent(
    db: &impl ConnectionTrait,
    person: &PersonKey,
    consent: bool,
) -> Result<(), StoreError> {
    let row = sms_preference::ActiveModel {
        clinic_id: Set(person.clinic.to_string()),
        user_id: Set(person.user.to_string()),
        consent: Set(consent),
        opted_out: Set(false),
        updated_at: Set(Utc::now()),
    };
    let mut update = OnConflict::columns([
        sms_preference::Column::ClinicId,
        sms_preference::Column::UserId,
    ]);
    update.update_columns([
        sms_preference::Column::Consent,
        sms_preference::Column::UpdatedAt,
    ]);
    if consent {
        update.update_column(sms_preference::Column::OptedOut);
    }
    sms_preference::Entity::insert(row)
        .on_conflict(update.to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Marks every participant with this phone number, in every clinic, as
/// opted out (STOP) or back in (START): the keyword answers the number, not
/// one clinic. Returns how many participants matched.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn set_opt_out_by_phone(
    db: &impl ConnectionTrait,
    phone: &str,
    opted_out: bool,
) -> Result<usize, StoreError> {
    let people = participant::Entity::find()
        .filter(participant::Column::Phone.eq(phone))
        .all(db)
        .await?;
    for person in &people {
        let row = sms_preference::ActiveModel {
            clinic_id: Set(person.clinic_id.clone()),
            user_id: Set(person.id.clone()),
            consent: Set(false),
            opted_out: Set(opted_out),
            updated_at: Set(Utc::now()),
        };
        sms_preference::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    sms_preference::Column::ClinicId,
                    sms_preference::Column::UserId,
                ])
                .update_columns([
                    sms_preference::Column::OptedOut,
                    sms_preference::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(people.len())
}

/// `person`'s phone number if it may receive SMS: a number on file for this
/// participant of this clinic, consent given, and no STOP.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn sms_phone(
    db: &impl ConnectionTrait,
    person: &PersonKey,
) -> Result<Option<String>, StoreError> {
    let (consent, opted_out) = sms_preference(db, person).await?;
    if !consent || opted_out {
        return Ok(None);
    }
    Ok(participant::Entity::find_by_id(person.user.to_string())
        .filter(participant::Column::ClinicId.eq(person.clinic.as_str()))
        .one(db)
        .await?
        .and_then(|participant| participant.phone))
}

/// `(consent, opted_out)` for `person`; `(false, false)` when never set.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn sms_preference(
    db: &impl ConnectionTrait,
    person: &PersonKey,
) -> Result<(bool, bool), StoreError> {
    Ok(
        sms_preference::Entity::find_by_id((person.clinic.to_string(), person.user.to_string()))
            .one(db)
            .await?
            .map_or((false, false), |row| (row.consent, row.opted_out)),
    )
}
