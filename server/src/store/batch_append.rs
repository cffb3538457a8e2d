//! Appending a whole batch of messages with a fixed number of statements:
//! one look-up of earlier sends, one `UPDATE … RETURNING` that reserves the
//! sequence numbers of every consultation in the batch, one multi-row
//! `INSERT` — instead of three statements per message. Semantics are those of
//! [`messages::append`](super::messages::append) applied in batch order.

use super::entities::{consultation, message};
use super::message_insert::{self, MessageRow, month_of};
use super::messages::{self, AppendOutcome, NewMessage, StoredMessage, from_row};
use super::{StoreError, consultations, outbox, to_i64, to_u64};
use chrono::{NaiveDate, Utc};
use consult_protocol::{ChatMessage, ConsultationId, ConsultationStatus, Role, Seq};
use sea_orm::sea_query::{CaseStatement, Expr, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter};
use std::collections::{BTreeMap, HashMap};

/// (consultation, sender, client message id): what makes a send a retry.
pub(super) type Key = (String, String, String);

pub(super) fn key_of(message: &NewMessage) -> Option<Key> {
    message.client_msg_id.as_ref().map(|id| {
        (
            message.consultation_id.to_string(),
            message.sender.to_string(),
            id.clone(),
        )
    })
}

/// The answer to a message whose sender already used its `client_msg_id`
/// for `earlier`: that message when kind and body are the same, a conflict
/// otherwise. Every writer answers a retry through this.
pub(super) fn retry_outcome(earlier: &ChatMessage, message: &NewMessage) -> AppendOutcome {
    if earlier.body == message.body && earlier.kind == message.kind {
        AppendOutcome::Duplicate(earlier.clone())
    } else {
        AppendOutcome::ConflictingDuplicate
    }
}

/// Where one consultation's sequence numbers stand after the reservation.
struct Reserved {
    next: u64,
    patient_not_ready: bool,
    staff_messaged_first: bool,
    /// The partition key of the consultation's messages (PostgreSQL).
    consultation_month: NaiveDate,
}

/// Appends `batch` inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn append_batch(
    db: &impl ConnectionTrait,
    batch: &[&NewMessage],
) -> Result<Vec<AppendOutcome>, StoreError> {
    let earlier = earlier_sends(db, batch).await?;
    let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
    let mut first_of: HashMap<Key, usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut fresh: Vec<usize> = Vec::new();
    for (index, message) in batch.iter().enumerate() {
        if let Some(key) = key_of(message) {
            if let Some(found) = earlier.get(&key) {
                outcomes[index] = Some(retry_outcome(found, message));
                continue;
            }
            if let Some(&first) = first_of.get(&key) {
                repeats.push((index, first));
                continue;
            }
            first_of.insert(key, index);
        }
        fresh.push(index);
    }
    let mut reserved = reserve(db, batch, &fresh).await?;
    let sent_at = Utc::now();
    let mut rows = Vec::with_capacity(fresh.len());
    for &index in &fresh {
        let message = batch[index];
        let Some(position) = reserved.get_mut(message.consultation_id.as_str()) else {
            outcomes[index] = Some(missing(db, &message.consultation_id).await?);
            continue;
        };
        let seq = position.next;
        position.next += 1;
        if message.sender_role.is_staff()
            && position.patient_not_ready
            && !position.staff_messaged_first
        {
            consultations::mark_staff_messaged_first(db, &message.consultation_id).await?;
            position.staff_messaged_first = true;
        }
        rows.push(MessageRow {
            consultation_id: message.consultation_id.to_string(),
            seq: to_i64(seq),
            sender_id: message.sender.to_string(),
            sender_role: message.sender_role.as_str().to_owned(),
            kind: message.kind.as_str().to_owned(),
            body: message.body.clone(),
            client_msg_id: message.client_msg_id.clone(),
            created_at: sent_at,
            consultation_month: position.consultation_month,
        });
        let notifications =
            outbox::insert_for_message(db, &message.consultation_id, seq, &message.notifications)
                .await?;
        messages::record_audit(db, message, seq, &notifications).await?;
        outcomes[index] = Some(AppendOutcome::Stored(StoredMessage {
            message: ChatMessage {
                consultation_id: message.consultation_id.clone(),
                seq: Seq(seq),
                sender: message.sender.clone(),
                sender_role: message.sender_role,
                kind: message.kind,
                body: message.body.clone(),
                client_msg_id: message.client_msg_id.clone(),
                sent_at,
            },
            notifications,
            dashboard: None,
        }));
    }
    message_insert::insert(db, &rows).await?;
    for (index, first) in repeats {
        outcomes[index] = Some(match &outcomes[first] {
            Some(AppendOutcome::Stored(stored)) => retry_outcome(&stored.message, batch[index]),
            Some(other) => other.clone(),
            None => AppendOutcome::NotFound,
        });
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(AppendOutcome::NotFound))
        .collect())
}

/// Messages stored before under the batch's client message ids.
async fn earlier_sends(
    db: &impl ConnectionTrait,
    batch: &[&NewMessage],
) -> Result<HashMap<Key, ChatMessage>, StoreError> {
    let keys: Vec<Key> = batch.iter().filter_map(|m| key_of(m)).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // One indexed seek per key: an OR of exact (consultation, sender, id)
    // triples. IN-lists on each column would make the planner walk their
    // cross product.
    let mut any = Condition::any();
    for (consultation, sender, client_msg_id) in &keys {
        any = any.add(
            Condition::all()
                .add(message::Column::ConsultationId.eq(consultation.as_str()))
                .add(message::Column::SenderId.eq(sender.as_str()))
                .add(message::Column::ClientMsgId.eq(client_msg_id.as_str())),
        );
    }
    let rows = message::Entity::find().filter(any).all(db).await?;
    let mut found = HashMap::new();
    for row in rows {
        let Some(client_msg_id) = row.client_msg_id.clone() else {
            continue;
        };
        let key = (
            row.consultation_id.clone(),
            row.sender_id.clone(),
            client_msg_id,
        );
        if keys.contains(&key) {
            found.insert(key, from_row(row)?);
        }
    }
    Ok(found)
}

/// Reserves, per consultation, as many sequence numbers as it has fresh
/// messages in the batch, in one `UPDATE … RETURNING` (row locks serialize
/// concurrent writers on PostgreSQL). Closed or unknown consultations are
/// absent from the result.
async fn reserve(
    db: &impl ConnectionTrait,
    batch: &[&NewMessage],
    fresh: &[usize],
) -> Result<HashMap<String, Reserved>, StoreError> {
    use consultation::Column;
    let mut counts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for &index in fresh {
        let message = batch[index];
        let entry = counts
            .entry(message.consultation_id.as_str())
            .or_insert((0, 0));
        entry.0 += 1;
        entry.1 += i64::from(message.sender_role == Role::Patient);
    }
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    let mut seq_step = CaseStatement::new();
    let mut rev_step = CaseStatement::new();
    for (id, (messages, from_patient)) in &counts {
        seq_step = seq_step.case(Expr::col(Column::Id).eq(*id), Expr::val(*messages));
        rev_step = rev_step.case(Expr::col(Column::Id).eq(*id), Expr::val(*from_patient));
    }
    let update = Query::update()
        .table(consultation::Entity)
        .value(
            Column::LastSeq,
            Expr::col(Column::LastSeq).add(seq_step.finally(Expr::val(0_i64))),
        )
        .value(
            Column::Rev,
            Expr::col(Column::Rev).add(rev_step.finally(Expr::val(0_i64))),
        )
        .and_where(Expr::col(Column::Id).is_in(counts.keys().copied()))
        .and_where(Expr::col(Column::Status).is_not_in([
            ConsultationStatus::Ended.as_str(),
            ConsultationStatus::Cancelled.as_str(),
        ]))
        .returning(Query::returning().columns([
            Column::Id,
            Column::LastSeq,
            Column::Status,
            Column::StaffMessagedFirst,
            Column::CreatedAt,
        ]))
        .to_owned();
    let backend = db.get_database_backend();
    let statement = backend.build(&update);
    let mut reserved = HashMap::new();
    for row in db.query_all(statement).await? {
        let id: String = row.try_get("", "id")?;
        let last_seq: i64 = row.try_get("", "last_seq")?;
        let status: String = row.try_get("", "status")?;
        let staff_messaged_first: bool = row.try_get("", "staff_messaged_first")?;
        let count = counts.get(id.as_str()).map_or(0, |(messages, _)| *messages);
        // Only PostgreSQL partitions messages.
        let consultation_month = if backend == DatabaseBackend::Postgres {
            month_of(row.try_get("", "created_at")?)
        } else {
            NaiveDate::MIN
        };
        reserved.insert(
            id,
            Reserved {
                next: to_u64(last_seq - count + 1),
                patient_not_ready: status == ConsultationStatus::Scheduled.as_str()
                    || status == ConsultationStatus::WaitingForPatient.as_str(),
                staff_messaged_first,
                consultation_month,
            },
        );
    }
    Ok(reserved)
}

/// Not found or closed: why a message got no sequence number.
pub(super) async fn missing(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
) -> Result<AppendOutcome, StoreError> {
    Ok(match consultations::find(db, consultation).await? {
        None => AppendOutcome::NotFound,
        Some(_) => AppendOutcome::Closed,
    })
}
