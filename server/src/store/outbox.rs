//! The notification outbox. Rows are written in the same transaction as the
//! message that caused them; the outbox worker claims due rows with a lease
//! (so two nodes never send the same row at once, and a crashed sender's row
//! is retried after its lease), sends them, and records the outcome.

use super::entities::outbox;
use super::{StoreError, to_i64, to_u64};
use crate::domain::escalation::CancelRule;
use chrono::{DateTime, Utc};
use consult_protocol::{
    AlertChannel, ConsultationId, NotificationReason, NotificationStatus, NotificationView, Seq,
    UserId,
};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use std::time::Duration;

/// A notification to queue for a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The patient.
    pub recipient: UserId,
    /// Push or SMS.
    pub channel: AlertChannel,
    /// `fcm`, `apns`, `twilio`, `webhook` or `log`.
    pub provider: String,
    /// Device token or phone number.
    pub target: String,
    /// Push title (empty for SMS).
    pub title: String,
    /// The text to send.
    pub body: String,
    /// Why.
    pub reason: NotificationReason,
    /// What cancels it.
    pub cancel: CancelRule,
    /// Time from the message until it is due.
    pub delay: Duration,
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Its id.
    pub id: String,
    /// Sent to the provider so a retry never sends twice.
    pub idempotency_key: String,
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The message that caused it.
    pub message_seq: Option<u64>,
    /// The patient.
    pub recipient: UserId,
    /// Push or SMS.
    pub channel: AlertChannel,
    /// Which provider sends it.
    pub provider: String,
    /// Device token or phone number.
    pub target: String,
    /// Push title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Why.
    pub reason: NotificationReason,
    /// What cancels it.
    pub cancel: CancelRule,
    /// Where it stands.
    pub status: NotificationStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// When it fell due.
    pub due_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was queued (with the idempotency key, its place in a
    /// consultation's listing).
    pub created_at: DateTime<Utc>,
    /// Last failure code.
    pub last_error: Option<String>,
}

impl OutboxRow {
    /// The view staff see: no text, no token, no phone number.
    pub fn view(&self) -> NotificationView {
        NotificationView {
            id: self.id.clone(),
            consultation_id: self.consultation_id.clone(),
            recipient: self.recipient.clone(),
            channel: self.channel,
            provider: self.provider.clone(),
            reason: self.reason,
            status: self.status,
            attempts: self.attempts,
            message_seq: self.message_seq.map(Seq),
            due_at: self.due_at,
            updated_at: self.updated_at,
            error: self.last_error.clone(),
        }
    }
}

/// How a send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The provider accepted it.
    Sent {
        /// The provider's id for it.
        provider_message_id: String,
    },
    /// Not needed any more.
    Cancelled {
        /// Why, as a short code.
        reason: String,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// Why the attempt failed, as a short code.
        error: String,
    },
    /// Given up.
    Failed {
        /// Why, as a short code.
        error: String,
    },
}

/// Writes the notifications for message `seq` (inside the message's
/// transaction). Idempotency keys are `{consultation}:{seq}:{index}`.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn insert_for_message(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    seq: u64,
    notifications: &[NewNotification],
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut rows = Vec::with_capacity(notifications.len());
    for row in new_rows(consultation, seq, notifications, Utc::now()) {
        let inserted = outbox::Entity::insert(row.into_active_model())
            .exec_with_returning(db)
            .await?;
        rows.push(from_row(inserted)?);
    }
    Ok(rows)
}

/// The rows to insert for message `seq`'s notifications, queued at `now`.
pub(super) fn new_rows(
    consultation: &ConsultationId,
    seq: u64,
    notifications: &[NewNotification],
    now: DateTime<Utc>,
) -> Vec<outbox::Model> {
    notifications
        .iter()
        .enumerate()
        .map(|(index, notification)| {
            let due_at = now
                + chrono::Duration::from_std(notification.delay)
                    .unwrap_or(chrono::Duration::zero());
            outbox::Model {
                id: uuid::Uuid::new_v4().to_string(),
                idempotency_key: format!("{consultation}:{seq}:{index}"),
                consultation_id: consultation.to_string(),
                message_seq: Some(to_i64(seq)),
                recipient_id: notification.recipient.to_string(),
                channel: notification.channel.as_str().to_owned(),
                provider: notification.provider.clone(),
                target: notification.target.clone(),
                title: notification.title.clone(),
                body: notification.body.clone(),
                reason: notification.reason.as_str().to_owned(),
                cancel_rule: notification.cancel.as_str().to_owned(),
                status: NotificationStatus::Pending.as_str().to_owned(),
                attempts: 0,
                due_at,
                next_attempt_at: due_at,
                lease_until: None,
                last_error: None,
                provider_message_id: None,
                created_at: now,
                updated_at: now,
            }
        })
        .collect()
}

/// Rows ready to send at `now`: pending and due, or stuck in `sending` past
/// their lease (their sender died).
fn ready_at(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(outbox::Column::Status.eq(NotificationStatus::Pending.as_str()))
                .add(outbox::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(outbox::Column::Status.eq(NotificationStatus::Sending.as_str()))
                .add(outbox::Column::LeaseUntil.lt(now)),
        )
}

/// Rows ready to send at `now` (see `ready_at`), fairly across
/// consultations: of the `consultations` consultations whose oldest ready
/// row is oldest, at most `per_consultation` rows each, oldest first, one
/// list per consultation. A consultation with a long backlog gets no more
/// of a pass than any other.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn due_by_consultation(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    consultations: u64,
    per_consultation: u64,
) -> Result<Vec<Vec<OutboxRow>>, StoreError> {
    let ids: Vec<String> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::ConsultationId)
        .filter(ready_at(now))
        .group_by(outbox::Column::ConsultationId)
        .order_by(
            sea_orm::sea_query::SimpleExpr::from(Func::min(Expr::col(
                outbox::Column::NextAttemptAt,
            ))),
            Order::Asc,
        )
        .limit(consultations)
        .into_tuple()
        .all(db)
        .await?;
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        let rows = outbox::Entity::find()
            .filter(outbox::Column::ConsultationId.eq(id))
            .filter(ready_at(now))
            .order_by_asc(outbox::Column::NextAttemptAt)
            .order_by_asc(outbox::Column::Id)
            .limit(per_consultation)
            .all(db)
            .await?
            .into_iter()
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if !rows.is_empty() {
            due.push(rows);
        }
    }
    Ok(due)
}

/// When the next pending row falls due, if any.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn next_due_at(db: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::Status.eq(NotificationStatus::Pending.as_str()))
        .order_by_asc(outbox::Column::NextAttemptAt)
        .one(db)
        .await?
        .map(|row| row.next_attempt_at))
}

/// The backlog: pending rows due by `now` (none of them claimed), and when
/// the oldest of them fell due.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn backlog(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
    let due = outbox::Entity::find()
        .filter(outbox::Column::Status.eq(NotificationStatus::Pending.as_str()))
        .filter(outbox::Column::NextAttemptAt.lte(now));
    let count = due.clone().count(db).await?;
    let oldest = due
        .order_by_asc(outbox::Column::NextAttemptAt)
        .one(db)
        .await?
        .map(|row| row.next_attempt_at);
    Ok((count, oldest))
}

/// A worker's claim on one row: the row and the attempt it counted. Every
/// claim counts an attempt, so `(id, attempts)` names one claim; an outcome
/// is written only while the row still carries it (see [`finish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The row.
    pub id: String,
    /// The attempt this claim counted.
    pub attempts: u32,
}

/// Gives a claimed row back (`pending`, due `now`) when its send was cut
/// short by shutdown, so that another node, or this one after a restart,
/// sends it at once rather than after the lease. The attempt stays counted:
/// the provider may have received it. False when the claim no longer holds.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn release(
    db: &impl ConnectionTrait,
    claim: &Claim,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::Status,
            Expr::value(NotificationStatus::Pending.as_str()),
        )
        .col_expr(
            outbox::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(now))
        .col_expr(outbox::Column::UpdatedAt, Expr::value(now))
        .filter(outbox::Column::Id.eq(claim.id.clone()))
        .filter(outbox::Column::Status.eq(NotificationStatus::Sending.as_str()))
        .filter(outbox::Column::Attempts.eq(i32::try_from(claim.attempts).unwrap_or(i32::MAX)))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Claims a row for sending until `lease_until`, counting the attempt.
/// `None` when another worker got it first.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn claim(
    db: &impl ConnectionTrait,
    row: &OutboxRow,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Option<Claim>, StoreError> {
    let result = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::Status,
            Expr::value(NotificationStatus::Sending.as_str()),
        )
        .col_expr(outbox::Column::LeaseUntil, Expr::value(lease_until))
        .col_expr(
            outbox::Column::Attempts,
            Expr::col(outbox::Column::Attempts).add(1),
        )
        .col_expr(outbox::Column::UpdatedAt, Expr::value(now))
        .filter(outbox::Column::Id.eq(row.id.clone()))
        .filter(outbox::Column::Status.eq(row.status.as_str()))
        .filter(outbox::Column::Attempts.eq(i32::try_from(row.attempts).unwrap_or(i32::MAX)))
        .exec(db)
        .await?;
    Ok((result.rows_affected == 1).then(|| Claim {
        id: row.id.clone(),
        attempts: row.attempts.saturating_add(1),
    }))
}

/// The longest provider message id stored (the column's size).
pub const MAX_PROVIDER_MESSAGE_ID_LEN: usize = 200;

/// A provider's message id as stored: visible ASCII of at most
/// [`MAX_PROVIDER_MESSAGE_ID_LEN`] bytes, or `None` for anything else (the
/// send still counts; only the reference is not kept).
pub fn bounded_provider_id(id: String) -> Option<String> {
    Some(id).filter(|id| {
        !id.is_empty()
            && id.len() <= MAX_PROVIDER_MESSAGE_ID_LEN
            && id.bytes().all(|b| b.is_ascii_graphic())
    })
}

/// Records how the attempt of `claim` ended and returns the row as it is
/// now; `None` when the row no longer carries that claim (its lease ran out
/// and another worker reclaimed it), in which case nothing is written.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn finish(
    db: &impl ConnectionTrait,
    claim: &Claim,
    finish: Finish,
) -> Result<Option<OutboxRow>, StoreError> {
    let now = Utc::now();
    let mut update = outbox::Entity::update_many()
        .col_expr(outbox::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            outbox::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    update = match finish {
        Finish::Sent {
            provider_message_id,
        } => update
            .col_expr(
                outbox::Column::Status,
                Expr::value(NotificationStatus::Sent.as_str()),
            )
            .col_expr(
                outbox::Column::ProviderMessageId,
                Expr::value(bounded_provider_id(provider_message_id)),
            )
            .col_expr(
                outbox::Column::LastError,
                Expr::value(Option::<String>::None),
            ),
        // The claim counted an attempt; a cancelled row was never sent.
        Finish::Cancelled { reason } => update
            .col_expr(
                outbox::Column::Status,
                Expr::value(NotificationStatus::Cancelled.as_str()),
            )
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).sub(1),
            )
            .col_expr(outbox::Column::LastError, Expr::value(reason)),
        Finish::Retry { at, error } => update
            .col_expr(
                outbox::Column::Status,
                Expr::value(NotificationStatus::Pending.as_str()),
            )
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(at))
            .col_expr(outbox::Column::LastError, Expr::value(error)),
        Finish::Failed { error } => update
            .col_expr(
                outbox::Column::Status,
                Expr::value(NotificationStatus::Failed.as_str()),
            )
            .col_expr(outbox::Column::LastError, Expr::value(error)),
    };
    let result = update
        .filter(outbox::Column::Id.eq(claim.id.as_str()))
        .filter(outbox::Column::Status.eq(NotificationStatus::Sending.as_str()))
        .filter(outbox::Column::Attempts.eq(i32::try_from(claim.attempts).unwrap_or(i32::MAX)))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    find(db, &claim.id).await
}

/// One row.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<OutboxRow>, StoreError> {
    outbox::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// The consultation's newest `limit` notifications (older than `before`, a
/// row's creation time and idempotency key, when given), oldest first, and
/// whether older ones remain.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn latest_for_consultation(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    before: Option<&(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<(Vec<OutboxRow>, bool), StoreError> {
    let mut condition =
        Condition::all().add(outbox::Column::ConsultationId.eq(consultation.to_string()));
    if let Some((created_at, key)) = before {
        condition = condition.add(
            Condition::any()
                .add(outbox::Column::CreatedAt.lt(*created_at))
                .add(
                    Condition::all()
                        .add(outbox::Column::CreatedAt.eq(*created_at))
                        .add(outbox::Column::IdempotencyKey.lt(key.as_str())),
                ),
        );
    }
    let mut rows = outbox::Entity::find()
        .filter(condition)
        .order_by_desc(outbox::Column::CreatedAt)
        .order_by_desc(outbox::Column::IdempotencyKey)
        .limit(limit.saturating_add(1))
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    rows.reverse();
    Ok((
        rows.into_iter().map(from_row).collect::<Result<_, _>>()?,
        more,
    ))
}

/// Notifications of `reason` on `channel` queued for the consultation since
/// `since` (one per message: rows of the same message count once).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn count_since(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    channel: AlertChannel,
    reason: NotificationReason,
    since: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let messages: Vec<Option<i64>> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::MessageSeq)
        .distinct()
        .filter(outbox::Column::ConsultationId.eq(consultation.to_string()))
        .filter(outbox::Column::Channel.eq(channel.as_str()))
        .filter(outbox::Column::Reason.eq(reason.as_str()))
        .filter(outbox::Column::CreatedAt.gte(since))
        .into_tuple()
        .all(db)
        .await?;
    Ok(messages.len() as u64)
}

pub(super) fn from_row(row: outbox::Model) -> Result<OutboxRow, StoreError> {
    let corrupt = |what: &str, value: &str| StoreError::Corrupt(format!("outbox {what} {value}"));
    Ok(OutboxRow {
        channel: row
            .channel
            .parse()
            .map_err(|_| corrupt("channel", &row.channel))?,
        reason: row
            .reason
            .parse()
            .map_err(|_| corrupt("reason", &row.reason))?,
        status: row
            .status
            .parse()
            .map_err(|_| corrupt("status", &row.status))?,
        cancel: CancelRule::parse(&row.cancel_rule),
        id: row.id,
        idempotency_key: row.idempotency_key,
        consultation_id: ConsultationId(row.consultation_id),
        message_seq: row.message_seq.map(to_u64),
        recipient: UserId(row.recipient_id),
        provider: row.provider,
        target: row.target,
        title: row.title,
        body: row.body,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        due_at: row.due_at,
        updated_at: row.updated_at,
        created_at: row.created_at,
        last_error: row.last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_are_kept_only_when_they_fit_the_column() {
        assert_eq!(
            bounded_provider_id("SM123".to_owned()).as_deref(),
            Some("SM123")
        );
        let longest = "m".repeat(MAX_PROVIDER_MESSAGE_ID_LEN);
        assert_eq!(bounded_provider_id(longest.clone()), Some(longest));
        for bad in [
            String::new(),
            "m".repeat(MAX_PROVIDER_MESSAGE_ID_LEN + 1),
            "has space".to_owned(),
            "caf\u{e9}".to_owned(),
        ] {
            assert_eq!(bounded_provider_id(bad.clone()), None, "{bad:?}");
        }
    }
}
