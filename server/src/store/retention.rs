//! Message retention in the database: which consultations' messages are due
//! for deletion (their clinic set `message_retention_days`, and they ended,
//! or were cancelled, longer ago than that), claiming one, and deleting its
//! messages and notification rows (which may hold message text). The
//! consultation row, its receipts (positions only) and the audit log stay;
//! `consultations.messages_purged_at` records the deletion, so a
//! consultation is handled once. The use case around it (export, audit,
//! the worker) is `service::retention`.

use super::StoreError;
use super::entities::{clinic_policy, consultation, message, outbox};
use chrono::{DateTime, Utc};
use consult_protocol::{ClinicId, ConsultationId, ConsultationStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Clinics that set a retention, with their number of days.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn clinics(db: &impl ConnectionTrait) -> Result<Vec<(ClinicId, u32)>, StoreError> {
    Ok(clinic_policy::Entity::find()
        .filter(clinic_policy::Column::MessageRetentionDays.is_not_null())
        .order_by_asc(clinic_policy::Column::ClinicId)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|row| {
            let days = u32::try_from(row.message_retention_days?).ok()?;
            Some((ClinicId(row.clinic_id), days))
        })
        .collect())
}

/// Up to `limit` consultations of `clinic` that ended before `cutoff` and
/// still hold their messages.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn expired(
    db: &impl ConnectionTrait,
    clinic: &ClinicId,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<ConsultationId>, StoreError> {
    use consultation::Column;
    Ok(consultation::Entity::find()
        .filter(Column::ClinicId.eq(clinic.as_str()))
        .filter(Column::Status.is_in([
            ConsultationStatus::Ended.as_str(),
            ConsultationStatus::Cancelled.as_str(),
        ]))
        .filter(Column::EndedAt.lt(cutoff))
        .filter(Column::MessagesPurgedAt.is_null())
        .order_by_asc(Column::EndedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| ConsultationId(row.id))
        .collect())
}

/// Marks the consultation's messages deleted, inside the caller's
/// transaction, unless that was done already: `true` when this caller took
/// it. The row stays locked (PostgreSQL) or the file write-locked (SQLite)
/// until the transaction ends, so two nodes never handle one consultation.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn claim(
    db: &impl ConnectionTrait,
    id: &ConsultationId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = consultation::Entity::update_many()
        .col_expr(consultation::Column::MessagesPurgedAt, Expr::value(now))
        .filter(consultation::Column::Id.eq(id.as_str()))
        .filter(consultation::Column::MessagesPurgedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// What [`delete`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Message rows.
    pub messages: u64,
    /// Outbox rows (push and SMS texts).
    pub notifications: u64,
}

/// Deletes the consultation's messages and outbox rows.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn delete(db: &impl ConnectionTrait, id: &ConsultationId) -> Result<Deleted, StoreError> {
    let messages = message::Entity::delete_many()
        .filter(message::Column::ConsultationId.eq(id.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    let notifications = outbox::Entity::delete_many()
        .filter(outbox::Column::ConsultationId.eq(id.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    Ok(Deleted {
        messages,
        notifications,
    })
}
