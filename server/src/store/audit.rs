//! The audit log: one row per status change, send and refusal worth
//! keeping. Rows hold ids and outcome codes, never message text.

use super::StoreError;
use super::entities::audit_log;
use crate::auth::Principal;
use chrono::{DateTime, Utc};
use consult_protocol::ConsultationId;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::Serialize;

/// Who acted: a person, the host platform, or the hub itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    /// The user id, `platform` or `hub`.
    pub id: &'a str,
    /// The role, or `system` for the hub.
    pub role: &'a str,
}

impl Actor<'static> {
    /// The hub itself (the outbox worker).
    pub const HUB: Self = Self {
        id: "hub",
        role: "system",
    };
}

impl<'a> From<&'a Principal> for Actor<'a> {
    fn from(principal: &'a Principal) -> Self {
        Self {
            id: principal.user.as_str(),
            role: principal.role.as_str(),
        }
    }
}

/// One audit entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who acted.
    pub actor: Actor<'a>,
    /// What they did, e.g. `status.enter`, `message.send`.
    pub action: &'a str,
    /// The consultation concerned.
    pub consultation: Option<&'a ConsultationId>,
    /// Ids and outcome, as JSON. Never message text.
    pub detail: serde_json::Value,
}

/// The audit entry of a message (an alert, a Quick Message), written by the
/// message writer in the transaction that stores the message, so a message
/// is never stored unaudited. Its detail gains the message's `seq` and the
/// ids of the notifications queued with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAudit {
    /// Who sent it.
    pub actor_id: String,
    /// Their role.
    pub actor_role: String,
    /// What, e.g. `alert.send`.
    pub action: String,
    /// Ids and outcome, as JSON. Never message text.
    pub detail: serde_json::Value,
}

impl MessageAudit {
    /// The detail as stored: with `seq` and the notification ids.
    pub fn detail_for<'a>(
        &self,
        seq: u64,
        notification_ids: impl IntoIterator<Item = &'a str>,
    ) -> serde_json::Value {
        let mut detail = self.detail.clone();
        if let Some(fields) = detail.as_object_mut() {
            fields.insert("seq".to_owned(), serde_json::json!(seq));
            fields.insert(
                "notifications".to_owned(),
                serde_json::json!(notification_ids.into_iter().collect::<Vec<_>>()),
            );
        }
        detail
    }
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor_id: String,
    /// Their role.
    pub actor_role: String,
    /// What.
    pub action: String,
    /// Which consultation.
    pub consultation_id: Option<String>,
    /// Ids and outcome.
    pub detail: serde_json::Value,
}

/// Appends an entry.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn record(db: &impl ConnectionTrait, entry: AuditEntry<'_>) -> Result<(), StoreError> {
    let row = audit_log::ActiveModel {
        id: NotSet,
        at: Set(Utc::now()),
        actor_id: Set(entry.actor.id.to_owned()),
        actor_role: Set(entry.actor.role.to_owned()),
        action: Set(entry.action.to_owned()),
        consultation_id: Set(entry.consultation.map(ToString::to_string)),
        detail: Set(entry.detail.to_string()),
    };
    audit_log::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A page of the audit trail of one consultation, oldest first: at most
/// `limit` entries after the entry `after`, and the last entry's position
/// when more follow.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn for_consultation(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    after: Option<i64>,
    limit: u64,
) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
    let mut condition =
        Condition::all().add(audit_log::Column::ConsultationId.eq(consultation.to_string()));
    if let Some(after) = after {
        condition = condition.add(audit_log::Column::Id.gt(after));
    }
    let mut rows = audit_log::Entity::find()
        .filter(condition)
        .order_by_asc(audit_log::Column::Id)
        .limit(limit.saturating_add(1))
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let last = more.then(|| rows.last().map(|row| row.id)).flatten();
    Ok((
        rows.into_iter()
            .map(|row| AuditRecord {
                at: row.at,
                actor_id: row.actor_id,
                actor_role: row.actor_role,
                action: row.action,
                consultation_id: row.consultation_id,
                detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
        last,
    ))
}
