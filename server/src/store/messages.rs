//! Messages: appending with a database-assigned sequence number and an
//! idempotency check, and reading history.

use super::audit::{self, Actor, AuditEntry, MessageAudit};
use super::entities::{consultation, message};
use super::message_insert::{self, MessageRow, month_of};
use super::outbox::{self, NewNotification, OutboxRow};
use super::{StoreError, to_i64, to_u64};
use chrono::{NaiveDate, Utc};
use consult_protocol::{
    ChatMessage, ClinicId, ConsultationId, ConsultationStatus, DashboardEntry, MessageKind, Role,
    Seq, UserId,
};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The sender.
    pub sender: UserId,
    /// The sender's role.
    pub sender_role: Role,
    /// Chat, quick, alert or system.
    pub kind: MessageKind,
    /// The text.
    pub body: String,
    /// The sender's idempotency key.
    pub client_msg_id: Option<String>,
    /// Push and SMS notifications to queue with it, in the same transaction.
    pub notifications: Vec<NewNotification>,
    /// Its audit entry, written in the same transaction (none for chat).
    pub audit: Option<Box<MessageAudit>>,
}

/// A message as stored, with the notifications queued for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message.
    pub message: ChatMessage,
    /// Its outbox rows.
    pub notifications: Vec<OutboxRow>,
    /// After a patient's message, the consultation's dashboard row (its
    /// unread count changed) when the writer read it in the message's own
    /// transaction, as the SQLite writer does; `None` leaves the row to the
    /// dashboard refresher.
    pub dashboard: Option<Box<DashboardRow>>,
}

/// A consultation's dashboard row and the clinic whose feeds show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardRow {
    /// The consultation's clinic.
    pub clinic_id: ClinicId,
    /// The row.
    pub entry: DashboardEntry,
}

/// What appending did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored with a new sequence number.
    Stored(StoredMessage),
    /// This `client_msg_id` was stored before with the same text; nothing new
    /// was written.
    Duplicate(ChatMessage),
    /// This `client_msg_id` was stored before with different text.
    ConflictingDuplicate,
    /// No such consultation.
    NotFound,
    /// The consultation is ended or cancelled.
    Closed,
}

/// Appends one message inside the caller's transaction.
///
/// The sequence number comes from an `UPDATE … RETURNING` on the
/// consultation row, which serializes concurrent writers (on PostgreSQL
/// across nodes too) and leaves no gaps.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn append(
    db: &impl ConnectionTrait,
    new: &NewMessage,
) -> Result<AppendOutcome, StoreError> {
    if let Some(client_msg_id) = &new.client_msg_id {
        if let Some(existing) = find_by_client_msg_id(db, new, client_msg_id).await? {
            return Ok(super::batch_append::retry_outcome(&existing, new));
        }
    }
    let Some(position) = next_seq(db, new).await? else {
        return Ok(
            match super::consultations::find(db, &new.consultation_id).await? {
                None => AppendOutcome::NotFound,
                Some(_) => AppendOutcome::Closed,
            },
        );
    };
    if new.sender_role.is_staff() && position.patient_not_ready && !position.staff_messaged_first {
        super::consultations::mark_staff_messaged_first(db, &new.consultation_id).await?;
    }
    let sent_at = Utc::now();
    message_insert::insert(
        db,
        &[MessageRow {
            consultation_id: new.consultation_id.to_string(),
            seq: to_i64(position.seq),
            sender_id: new.sender.to_string(),
            sender_role: new.sender_role.as_str().to_owned(),
            kind: new.kind.as_str().to_owned(),
            body: new.body.clone(),
            client_msg_id: new.client_msg_id.clone(),
            created_at: sent_at,
            consultation_month: position.consultation_month,
        }],
    )
    .await?;
    let notifications =
        outbox::insert_for_message(db, &new.consultation_id, position.seq, &new.notifications)
            .await?;
    record_audit(db, new, position.seq, &notifications).await?;
    let message = ChatMessage {
        consultation_id: new.consultation_id.clone(),
        seq: Seq(position.seq),
        sender: new.sender.clone(),
        sender_role: new.sender_role,
        kind: new.kind,
        body: new.body.clone(),
        client_msg_id: new.client_msg_id.clone(),
        sent_at,
    };
    Ok(AppendOutcome::Stored(StoredMessage {
        message,
        notifications,
        dashboard: None,
    }))
}

struct Position {
    seq: u64,
    patient_not_ready: bool,
    staff_messaged_first: bool,
    /// The partition key of the consultation's messages (PostgreSQL).
    consultation_month: NaiveDate,
}

async fn next_seq(
    db: &impl ConnectionTrait,
    new: &NewMessage,
) -> Result<Option<Position>, StoreError> {
    use consultation::Column;
    let rev_step = i64::from(new.sender_role == Role::Patient);
    let update = Query::update()
        .table(consultation::Entity)
        .value(Column::LastSeq, Expr::col(Column::LastSeq).add(1))
        .value(Column::Rev, Expr::col(Column::Rev).add(rev_step))
        .and_where(Expr::col(Column::Id).eq(new.consultation_id.to_string()))
        .and_where(Expr::col(Column::Status).is_not_in([
            ConsultationStatus::Ended.as_str(),
            ConsultationStatus::Cancelled.as_str(),
        ]))
        .returning(Query::returning().columns([
            Column::LastSeq,
            Column::Status,
            Column::StaffMessagedFirst,
            Column::CreatedAt,
        ]))
        .to_owned();
    let backend = db.get_database_backend();
    let statement = backend.build(&update);
    let Some(row) = db.query_one(statement).await? else {
        return Ok(None);
    };
    // Only PostgreSQL partitions messages; SQLite's text timestamps are
    // not read for nothing.
    let consultation_month = if backend == DatabaseBackend::Postgres {
        month_of(row.try_get("", "created_at")?)
    } else {
        NaiveDate::MIN
    };
    let seq: i64 = row.try_get("", "last_seq")?;
    let status: String = row.try_get("", "status")?;
    let staff_messaged_first: bool = row.try_get("", "staff_messaged_first")?;
    Ok(Some(Position {
        seq: to_u64(seq),
        patient_not_ready: status == ConsultationStatus::Scheduled.as_str()
            || status == ConsultationStatus::WaitingForPatient.as_str(),
        staff_messaged_first,
        consultation_month,
    }))
}

async fn find_by_client_msg_id(
    db: &impl ConnectionTrait,
    new: &NewMessage,
    client_msg_id: &str,
) -> Result<Option<ChatMessage>, StoreError> {
    message::Entity::find()
        .filter(message::Column::ConsultationId.eq(new.consultation_id.to_string()))
        .filter(message::Column::SenderId.eq(new.sender.to_string()))
        .filter(message::Column::ClientMsgId.eq(client_msg_id))
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// The message `sender` stored earlier under `client_msg_id`, if any.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn find_sent(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    sender: &UserId,
    client_msg_id: &str,
) -> Result<Option<ChatMessage>, StoreError> {
    message::Entity::find()
        .filter(message::Column::ConsultationId.eq(consultation.to_string()))
        .filter(message::Column::SenderId.eq(sender.to_string()))
        .filter(message::Column::ClientMsgId.eq(client_msg_id))
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Messages with a sequence number above `after`, oldest first, at most
/// `limit`.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn after(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    after: u64,
    limit: u64,
) -> Result<Vec<ChatMessage>, StoreError> {
    message::Entity::find()
        .filter(message::Column::ConsultationId.eq(consultation.to_string()))
        .filter(message::Column::Seq.gt(to_i64(after)))
        .order_by_asc(message::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

/// The newest `limit` messages below `before` (all when `None`), returned
/// oldest first, and whether older ones remain.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn page_before(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    before: Option<u64>,
    limit: u64,
) -> Result<(Vec<ChatMessage>, bool), StoreError> {
    let mut query = message::Entity::find()
        .filter(message::Column::ConsultationId.eq(consultation.to_string()));
    if let Some(before) = before {
        query = query.filter(message::Column::Seq.lt(to_i64(before)));
    }
    let mut rows = query
        .order_by_desc(message::Column::Seq)
        .limit(limit + 1)
        .all(db)
        .await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    rows.reverse();
    let messages = rows.into_iter().map(from_row).collect::<Result<_, _>>()?;
    Ok((messages, has_more))
}

pub(super) fn from_row(row: message::Model) -> Result<ChatMessage, StoreError> {
    Ok(ChatMessage {
        sender_role: row
            .sender_role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("sender role {}", row.sender_role)))?,
        kind: row
            .kind
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("message kind {}", row.kind)))?,
        consultation_id: ConsultationId(row.consultation_id),
        seq: Seq(to_u64(row.seq)),
        sender: UserId(row.sender_id),
        body: row.body,
        client_msg_id: row.client_msg_id,
        sent_at: row.created_at,
    })
}

/// Writes `new`'s audit entry, if it carries one, with its `seq` and the
/// ids of the notifications queued with it, in the caller's transaction: a
/// message that needs an entry is never stored without it.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub(super) async fn record_audit(
    db: &impl ConnectionTrait,
    new: &NewMessage,
    seq: u64,
    notifications: &[OutboxRow],
) -> Result<(), StoreError> {
    let Some(entry) = &new.audit else {
        return Ok(());
    };
    audit::record(
        db,
        AuditEntry {
            actor: Actor {
                id: &entry.actor_id,
                role: &entry.actor_role,
            },
            action: &entry.action,
            consultation: Some(&new.consultation_id),
            detail: entry.detail_for(seq, notifications.iter().map(|row| row.id.as_str())),
        },
    )
    .await?;
    Ok(())
}
