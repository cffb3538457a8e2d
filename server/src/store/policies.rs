//! Clinic escalation policies, stored per clinic over the hub's defaults,
//! and each clinic's message retention.

use super::StoreError;
use super::entities::clinic_policy;
use crate::domain::escalation::Policy;
use chrono::Utc;
use consult_protocol::ClinicId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use std::time::Duration;

/// The clinic's policy, or `None` when it uses the hub's defaults.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn find(
    db: &impl ConnectionTrait,
    clinic: &ClinicId,
) -> Result<Option<Policy>, StoreError> {
    Ok(clinic_policy::Entity::find_by_id(clinic.to_string())
        .one(db)
        .await?
        .map(|row| Policy {
            push_after: millis(row.push_after_ms),
            offline_grace: millis(row.offline_grace_ms),
            sms_after_unread: row.sms_after_unread_ms.map(millis),
            push_include_text: row.push_include_text,
        }))
}

/// The clinic's message retention in days; `None` keeps messages forever
/// (the default, and a clinic without a policy).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn retention_days(
    db: &impl ConnectionTrait,
    clinic: &ClinicId,
) -> Result<Option<u32>, StoreError> {
    Ok(clinic_policy::Entity::find_by_id(clinic.to_string())
        .one(db)
        .await?
        .and_then(|row| row.message_retention_days)
        .and_then(|days| u32::try_from(days).ok()))
}

/// Stores the clinic's policy and its message retention (`None`: forever).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn put(
    db: &impl ConnectionTrait,
    clinic: &ClinicId,
    policy: &Policy,
    retention_days: Option<u32>,
) -> Result<(), StoreError> {
    let row = clinic_policy::ActiveModel {
        clinic_id: Set(clinic.to_string()),
        push_after_ms: Set(whole_millis(policy.push_after)),
        offline_grace_ms: Set(whole_millis(policy.offline_grace)),
        sms_after_unread_ms: Set(policy.sms_after_unread.map(whole_millis)),
        push_include_text: Set(policy.push_include_text),
        updated_at: Set(Utc::now()),
        message_retention_days: Set(
            retention_days.map(|days| i32::try_from(days).unwrap_or(i32::MAX))
        ),
    };
    clinic_policy::Entity::insert(row)
        .on_conflict(
            OnConflict::column(clinic_policy::Column::ClinicId)
                .update_columns([
                    clinic_policy::Column::PushAfterMs,
                    clinic_policy::Column::OfflineGraceMs,
                    clinic_policy::Column::SmsAfterUnreadMs,
                    clinic_policy::Column::PushIncludeText,
                    clinic_policy::Column::UpdatedAt,
                    clinic_policy::Column::MessageRetentionDays,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn millis(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

fn whole_millis(value: Duration) -> i64 {
    i64::try_from(value.as_millis()).unwrap_or(i64::MAX)
}
