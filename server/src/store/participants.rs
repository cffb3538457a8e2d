//! Clinics and participants (patients, providers, admins) as the host
//! platform registers them. A user id names one person of one clinic: once
//! registered, it cannot be registered again under another clinic (see
//! docs/security.md, "Identity").

use super::StoreError;
use super::entities::{clinic, participant};
use chrono::Utc;
use consult_protocol::{ClinicId, Role, UserId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A participant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Participant {
    /// The user id.
    pub id: UserId,
    /// The clinic.
    pub clinic_id: ClinicId,
    /// Its role.
    pub role: Role,
    /// Name shown to staff.
    pub display_name: String,
    /// Phone number for SMS, E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^\+[0-9]{8,15}$")]
    pub phone: Option<String>,
    /// The name the patient goes by, when the host platform gives one
    /// (refused by the privacy check like the display name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_name: Option<String>,
}

/// Creates the clinic if missing. With a `name`, an existing clinic is
/// renamed; without one, a new clinic is named after its id and an existing
/// one keeps its name.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn upsert_clinic(
    db: &impl ConnectionTrait,
    id: &ClinicId,
    name: Option<&str>,
) -> Result<(), StoreError> {
    let row = clinic::ActiveModel {
        id: Set(id.to_string()),
        name: Set(name.unwrap_or(id.as_str()).to_owned()),
        created_at: Set(Utc::now()),
    };
    let mut on_conflict = OnConflict::column(clinic::Column::Id);
    if name.is_some() {
        on_conflict.update_column(clinic::Column::Name);
    } else {
        on_conflict.do_nothing();
    }
    clinic::Entity::insert(row)
        .on_conflict(on_conflict.to_owned())
        .do_nothing()
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// What [`upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The participant was created, or updated within its own clinic.
    Written,
    /// The id belongs to a participant of another clinic: nothing changed.
    OtherClinic,
}

/// Creates or updates a participant. A user id belongs to one clinic: an
/// existing participant of another clinic is left untouched (the update is
/// conditional on the stored clinic, in the same statement, so two clinics
/// racing for one id cannot both win).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn upsert(
    db: &impl ConnectionTrait,
    person: &Participant,
) -> Result<Upserted, StoreError> {
    let now = Utc::now();
    let row = participant::ActiveModel {
        id: Set(person.id.to_string()),
        clinic_id: Set(person.clinic_id.to_string()),
        role: Set(person.role.as_str().to_owned()),
        display_name: Set(person.display_name.clone()),
        phone: Set(person.phone.clone()),
        preferred_name: Set(person.preferred_name.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let written = participant::Entity::insert(row)
        .on_conflict(
            OnConflict::column(participant::Column::Id)
                .update_columns([
                    participant::Column::Role,
                    participant::Column::DisplayName,
                    participant::Column::Phone,
                    participant::Column::PreferredName,
                    participant::Column::UpdatedAt,
                ])
                .action_and_where(
                    Expr::col((participant::Entity, participant::Column::ClinicId))
                        .eq(person.clinic_id.as_str()),
                )
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(if written == 0 {
        Upserted::OtherClinic
    } else {
        Upserted::Written
    })
}

/// The clinic `id` is registered in, if it is registered.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn clinic_of(
    db: &impl ConnectionTrait,
    id: &UserId,
) -> Result<Option<ClinicId>, StoreError> {
    Ok(participant::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(|row| ClinicId(row.clinic_id)))
}

/// Looks a participant up.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure; [`StoreError::Corrupt`] for an
/// unknown stored role.
pub async fn find(
    db: &impl ConnectionTrait,
    id: &UserId,
) -> Result<Option<Participant>, StoreError> {
    participant::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Display names of the given users; unknown ids are absent from the map.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn display_names(
    db: &impl ConnectionTrait,
    ids: &[UserId],
) -> Result<HashMap<UserId, String>, StoreError> {
    Ok(rows_of(db, ids)
        .await?
        .into_iter()
        .map(|row| (UserId(row.id), row.display_name))
        .collect())
}

/// The stored rows of the given users (none for an empty list).
async fn rows_of(
    db: &impl ConnectionTrait,
    ids: &[UserId],
) -> Result<Vec<participant::Model>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(participant::Entity::find()
        .filter(participant::Column::Id.is_in(ids.iter().map(ToString::to_string)))
        .all(db)
        .await?)
}

/// Every name the given users go by (display and preferred names), for the
/// privacy check.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn names_of(
    db: &impl ConnectionTrait,
    ids: &[UserId],
) -> Result<Vec<String>, StoreError> {
    Ok(rows_of(db, ids)
        .await?
        .into_iter()
        .flat_map(|row| std::iter::once(row.display_name).chain(row.preferred_name))
        .collect())
}

fn from_row(row: participant::Model) -> Result<Participant, StoreError> {
    Ok(Participant {
        role: row
            .role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("participant role {}", row.role)))?,
        id: UserId(row.id),
        clinic_id: ClinicId(row.clinic_id),
        display_name: row.display_name,
        phone: row.phone,
        preferred_name: row.preferred_name,
    })
}
