//! How to reach a patient outside the app: push devices, SMS consent and
//! STOP opt-outs. Every record is keyed by clinic and user ([`PersonKey`]):
//! the same device token or user id under another clinic is another record.

use super::StoreError;
use super::entities::{device, participant, sms_preference};
use crate::domain::PersonKey;
use chrono::Utc;
use consult_protocol::DevicePlatform;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Set,
    Statement,
};
use std::sync::LazyLock;

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

/// `person`'s [`Contact`], through `db`, in one query (the notification
/// planner's reach cache reads each patient's every few seconds).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn contact(db: &impl ConnectionTrait, person: &PersonKey) -> Result<Contact, StoreError> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        contact_sql(backend),
        [person.clinic.as_str().into(), person.user.as_str().into()],
    );
    let mut contact = Contact::default();
    for row in db.query_all(statement).await? {
        let platform: Option<String> = row.try_get("", "platform")?;
        let token: Option<String> = row.try_get("", "token")?;
        let phone: Option<String> = row.try_get("", "phone")?;
        contact.add(platform.as_deref(), token, phone);
    }
    Ok(contact)
}

impl Contact {
    /// Adds one row of [`contact_sql`]'s answer: a device (its platform and
    /// token) or the phone to text. A platform this build does not know is
    /// not reachable.
    pub(super) fn add(
        &mut self,
        platform: Option<&str>,
        token: Option<String>,
        phone: Option<String>,
    ) {
        if let (Some(platform), Some(token)) = (platform, token)
            && let Ok(platform) = platform.parse::<DevicePlatform>()
        {
            self.devices.push((platform, token));
        }
        if phone.is_some() {
            self.sms_phone = phone;
        }
    }
}

/// The query of a person's [`Contact`] on `backend` (the clinic at `$1`/`?1`,
/// the user at `$2`/`?2`): a row (`platform`, `token`) for each device with
/// notifications on, and a row (`phone`) when SMS consent is given and no
/// STOP revoked it and the person has a phone.
pub(super) fn contact_sql(backend: DatabaseBackend) -> &'static str {
    static POSTGRES: LazyLock<String> = LazyLock::new(|| build_contact_sql(true));
    static SQLITE: LazyLock<String> = LazyLock::new(|| build_contact_sql(false));
    if backend == DatabaseBackend::Postgres {
        POSTGRES.as_str()
    } else {
        SQLITE.as_str()
    }
}

/// [`contact_sql`]'s text, for PostgreSQL or for SQLite.
fn build_contact_sql(postgres: bool) -> String {
    let (clinic, user, on, consent) = if postgres {
        ("$1", "$2", "TRUE", "s.consent AND NOT s.opted_out")
    } else {
        ("?1", "?2", "1", "s.consent <> 0 AND s.opted_out = 0")
    };
    format!(
        "SELECT d.platform AS platform, d.token AS token, NULL AS phone FROM devices d \
         WHERE d.clinic_id = {clinic} AND d.user_id = {user} AND d.notifications_enabled = {on} \
         UNION ALL \
         SELECT NULL, NULL, p.phone FROM sms_preferences s \
           JOIN participants p ON p.id = s.user_id AND p.clinic_id = s.clinic_id \
         WHERE s.clinic_id = {clinic} AND s.user_id = {user} AND {consent} \
           AND p.phone IS NOT NULL"
    )
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
