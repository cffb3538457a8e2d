//! One message appended on the writer's own SQLite connection, with cached
//! prepared statements: the same steps and outcomes as
//! [`messages::append`](super::super::messages::append), without a thread
//! hop per statement.

use super::super::entities::{message, outbox};
use super::super::messages::{AppendOutcome, DashboardRow, NewMessage, StoredMessage, from_row};
use super::super::sqlite_rows::{ConsultationColumns, parse_timestamp, timestamp};
use super::super::{StoreError, outbox as outbox_store, to_u64};
use super::super::{batch_append, consultations};
use super::sent_keys::SentKeys;
use super::unread::UnreadMemo;
use chrono::Utc;
use consult_protocol::{ConsultationId, ConsultationStatus, Role};
use rusqlite::{OptionalExtension, Transaction, params};
use std::sync::LazyLock;

const FIND_SENT: &str = "SELECT id, consultation_id, seq, sender_id, sender_role, kind, body, \
     client_msg_id, created_at FROM messages \
     WHERE consultation_id = ?1 AND sender_id = ?2 AND client_msg_id = ?3 LIMIT 1";

/// The consultation's position and state, read before its `last_seq` moves.
/// No `UPDATE … RETURNING`: SQLite keeps a RETURNING statement's rows in a
/// temporary table and runs it as a trigger, which costs a temporary b-tree
/// and a statement journal per message.
const POSITION: &str = "SELECT rowid, last_seq, status, staff_messaged_first \
     FROM consultations WHERE id = ?1";

const NEXT_SEQ: &str = "UPDATE consultations SET last_seq = ?2, rev = rev + ?3, \
     staff_messaged_first = staff_messaged_first OR ?4 WHERE rowid = ?1";

/// Inserts a message whose `client_msg_id` the memo found unused (a clash
/// of `seq` is an error).
const INSERT_MESSAGE: &str = "INSERT INTO messages \
     (consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const INSERT_OUTBOX: &str = "INSERT INTO outbox \
     (id, idempotency_key, consultation_id, message_seq, recipient_id, channel, provider, \
      target, title, body, reason, cancel_rule, status, attempts, due_at, next_attempt_at, \
      lease_until, last_error, provider_message_id, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
      ?19, ?20, ?21)";

/// A consultation's dashboard row with the provider's `read_seq` instead of
/// `unread` (the memo counts that), the consultation at `?1`.
static DASHBOARD_ROW: LazyLock<String> =
    LazyLock::new(|| consultations::dashboard_row_read_seq_sql("?1"));

const INSERT_AUDIT: &str = "INSERT INTO audit_log \
     (at, actor_id, actor_role, action, consultation_id, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Appends `new` inside `txn`.
///
/// # Errors
///
/// [`StoreError::Sqlite`] on database failure, [`StoreError::Corrupt`] when
/// an earlier row cannot be read back.
pub(super) fn append(
    txn: &Transaction<'_>,
    new: &NewMessage,
    unread: &mut UnreadMemo,
    sent: &mut SentKeys,
) -> Result<AppendOutcome, StoreError> {
    let consultation = new.consultation_id.as_str();
    let sender = new.sender.as_str();
    let position = txn
        .prepare_cached(POSITION)?
        .query_row(params![consultation], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, bool>(3)?,
            ))
        })
        .optional()?;
    let Some((rowid, last_seq, status, staff_messaged_first)) = position else {
        return Ok(AppendOutcome::NotFound);
    };
    if status == ConsultationStatus::Ended.as_str()
        || status == ConsultationStatus::Cancelled.as_str()
    {
        // A retry of a message stored before the close still gets its `ok`.
        return Ok(earlier_send(txn, new)?.unwrap_or(AppendOutcome::Closed));
    }
    let patient_not_ready = status == ConsultationStatus::Scheduled.as_str()
        || status == ConsultationStatus::WaitingForPatient.as_str();
    let staff_first = new.sender_role.is_staff() && patient_not_ready && !staff_messaged_first;
    let client_msg_id = new.client_msg_id.as_deref();
    if sent.maybe_used(txn, consultation, last_seq, sender, client_msg_id)? {
        // A retry, or a reuse; or another key with the same hash, or a
        // message since removed: then it is new after all.
        if let Some(outcome) = earlier_send(txn, new)? {
            return Ok(outcome);
        }
    }
    let seq = last_seq + 1;
    let sent_at = Utc::now();
    let row = message::Model {
        id: 0,
        consultation_id: consultation.to_owned(),
        seq,
        sender_id: sender.to_owned(),
        sender_role: new.sender_role.as_str().to_owned(),
        kind: new.kind.as_str().to_owned(),
        body: new.body.clone(),
        client_msg_id: new.client_msg_id.clone(),
        created_at: sent_at,
    };
    txn.prepare_cached(INSERT_MESSAGE)?.execute(params![
        row.consultation_id,
        row.seq,
        row.sender_id,
        row.sender_role,
        row.kind,
        row.body,
        row.client_msg_id,
        timestamp(row.created_at)
    ])?;
    sent.stored(consultation, seq, sender, client_msg_id);
    txn.prepare_cached(NEXT_SEQ)?.execute(params![
        rowid,
        seq,
        i64::from(new.sender_role == Role::Patient),
        staff_first
    ])?;
    let mut notifications = Vec::with_capacity(new.notifications.len());
    for queued in outbox_store::new_rows(
        &new.consultation_id,
        to_u64(seq),
        &new.notifications,
        sent_at,
    ) {
        insert_outbox(txn, &queued)?;
        notifications.push(outbox_store::from_row(queued)?);
    }
    if let Some(entry) = &new.audit {
        let detail = entry.detail_for(
            to_u64(seq),
            notifications
                .iter()
                .map(|row: &outbox_store::OutboxRow| row.id.as_str()),
        );
        txn.prepare_cached(INSERT_AUDIT)?.execute(params![
            timestamp(sent_at),
            entry.actor_id,
            entry.actor_role,
            entry.action,
            consultation,
            detail.to_string()
        ])?;
    }
    let dashboard = if new.sender_role == Role::Patient {
        dashboard_row(txn, &new.consultation_id, seq, unread)?.map(Box::new)
    } else {
        unread.after_staff_message(consultation, seq);
        None
    };
    Ok(AppendOutcome::Stored(StoredMessage {
        message: from_row(row)?,
        notifications,
        dashboard,
    }))
}

/// The consultation's dashboard row as this transaction sees it, with the
/// patient message at `seq` just inserted: what
/// `consultations::dashboard_entry_of` reads, on the writer's own connection
/// instead of a pool round trip, `unread` kept by the writer's memo.
fn dashboard_row(
    txn: &Transaction<'_>,
    consultation: &ConsultationId,
    seq: i64,
    unread: &mut UnreadMemo,
) -> Result<Option<DashboardRow>, StoreError> {
    let row = txn
        .prepare_cached(&DASHBOARD_ROW)?
        .query_row(params![consultation.as_str()], |row| {
            Ok((
                ConsultationColumns::read(row)?,
                row.get::<_, String>("patient_name")?,
                row.get::<_, i64>("read_seq")?,
            ))
        })
        .optional()?;
    let Some((columns, name, read_seq)) = row else {
        return Ok(None);
    };
    let count = unread.after_patient_message(txn, consultation.as_str(), seq, read_seq)?;
    let consultation = columns.parse()?;
    let clinic_id = consultation.clinic_id.clone();
    Ok(Some(DashboardRow {
        clinic_id,
        entry: consultations::entry(&consultation, name, to_u64(count)),
    }))
}

/// The outcome for `new` if its sender already used its `client_msg_id` in
/// the consultation: the earlier message when kind and body are the same,
/// a conflict otherwise; `None` when it was not used (or there is none).
fn earlier_send(
    txn: &Transaction<'_>,
    new: &NewMessage,
) -> Result<Option<AppendOutcome>, StoreError> {
    let Some(client_msg_id) = &new.client_msg_id else {
        return Ok(None);
    };
    let earlier = find_sent(
        txn,
        new.consultation_id.as_str(),
        new.sender.as_str(),
        client_msg_id,
    )?;
    Ok(earlier.map(|earlier| batch_append::retry_outcome(&earlier, new)))
}

fn find_sent(
    txn: &Transaction<'_>,
    consultation: &str,
    sender: &str,
    client_msg_id: &str,
) -> Result<Option<consult_protocol::ChatMessage>, StoreError> {
    let row = txn
        .prepare_cached(FIND_SENT)?
        .query_row(params![consultation, sender, client_msg_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, String>(8)?,
            ))
        })
        .optional()?;
    let Some((id, consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, at)) =
        row
    else {
        return Ok(None);
    };
    from_row(message::Model {
        id,
        consultation_id,
        seq,
        sender_id,
        sender_role,
        kind,
        body,
        client_msg_id,
        created_at: parse_timestamp(&at)?,
    })
    .map(Some)
}

fn insert_outbox(txn: &Transaction<'_>, row: &outbox::Model) -> Result<(), StoreError> {
    txn.prepare_cached(INSERT_OUTBOX)?.execute(params![
        row.id,
        row.idempotency_key,
        row.consultation_id,
        row.message_seq,
        row.recipient_id,
        row.channel,
        row.provider,
        row.target,
        row.title,
        row.body,
        row.reason,
        row.cancel_rule,
        row.status,
        row.attempts,
        timestamp(row.due_at),
        timestamp(row.next_attempt_at),
        row.lease_until.map(timestamp),
        row.last_error,
        row.provider_message_id,
        timestamp(row.created_at),
        timestamp(row.updated_at)
    ])?;
    Ok(())
}
