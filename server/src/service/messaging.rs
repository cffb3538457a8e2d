//! Sending, reading and acknowledging messages, and typing indicators.

use super::{ServiceError, access, events, notifications};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::Consultation;
use crate::domain::escalation::Trigger;
use crate::domain::text;
use crate::hub::topics;
use crate::store::audit::MessageAudit;
use crate::store::messages;
use crate::store::messages::{AppendOutcome, NewMessage, StoredMessage};
use crate::store::outbox::NewNotification;
use crate::store::receipt_batch::{NewReceipt, ReceiptBatcher, ReceiptOutcome};
use chrono::{DateTime, Utc};
use consult_protocol::{
    ChatMessage, ConsultationId, ErrorCode, MessageKind, NotificationView, ReceiptKind, Role, Seq,
    ServerFrame,
};

/// Largest history page.
pub const MAX_HISTORY_LIMIT: u32 = 200;
/// History page when the client names none.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// Chat, quick or alert.
    pub kind: MessageKind,
    /// The text.
    pub body: String,
    /// The sender's idempotency key.
    pub client_msg_id: Option<String>,
    /// Notifications to queue with it. For staff chat messages, `send`
    /// plans them itself.
    pub notifications: Vec<NewNotification>,
    /// The audit entry to store with it (see [`send_audited`]).
    pub audit: Option<Box<MessageAudit>>,
}

/// The result of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its sequence number.
    pub seq: Seq,
    /// True when it had been stored before.
    pub duplicate: bool,
    /// When it was stored.
    pub sent_at: DateTime<Utc>,
    /// The stored message.
    pub message: ChatMessage,
    /// Notifications queued with it (none for a duplicate).
    pub notifications: Vec<NotificationView>,
}

/// Validates, authorizes and stores a message; the publisher fans it out.
/// `known` is the consultation when the caller already checked membership
/// (a joined room), which skips the look-up. A staff chat message also
/// queues the notifications the escalation policy asks for.
///
/// # Errors
///
/// `invalid_value`, `forbidden`, `not_found`, `consultation_closed`,
/// `duplicate_client_msg_id`, or a store failure.
pub async fn send(
    state: &AppState,
    principal: &Principal,
    mut outgoing: Outgoing,
    known: Option<&Consultation>,
) -> Result<Sent, ServiceError> {
    text::check_body(&outgoing.body, state.config.session.max_body_chars)?;
    if let Some(client_msg_id) = &outgoing.client_msg_id {
        text::check_client_msg_id(client_msg_id)?;
    }
    let loaded;
    let consultation = match known {
        Some(consultation) => consultation,
        None => {
            loaded = access::authorized_consultation(state, principal, &outgoing.consultation_id)
                .await?;
            &loaded
        }
    };
    // A closed consultation is refused by the writer, after its duplicate
    // check, so that a retry of a stored message still gets its `ok`.
    // Staff chat, and the platform's system messages, reach an absent
    // patient by the same rules.
    if principal.role.is_staff() && matches!(outgoing.kind, MessageKind::Chat | MessageKind::System)
    {
        outgoing.notifications =
            notifications::plan(state, consultation, Trigger::Chat, &outgoing.body).await?;
    }
    let outcome = state
        .appender
        .append(NewMessage {
            consultation_id: outgoing.consultation_id.clone(),
            sender: principal.user.clone(),
            sender_role: principal.role,
            kind: outgoing.kind,
            body: outgoing.body,
            client_msg_id: outgoing.client_msg_id,
            notifications: outgoing.notifications,
            audit: outgoing.audit,
        })
        .await?;
    match outcome {
        AppendOutcome::Stored(StoredMessage {
            message,
            notifications: rows,
            ..
        }) => {
            metrics::counter!("consult_messages_stored_total").increment(1);
            notifications::announce_queued(state, consultation, &rows);
            let mut result = sent(message, false);
            result.notifications = rows.iter().map(|row| row.view()).collect();
            Ok(result)
        }
        AppendOutcome::Duplicate(message) => Ok(sent(message, true)),
        AppendOutcome::ConflictingDuplicate => Err(ServiceError::refused(
            ErrorCode::DuplicateClientMsgId,
            "this client_msg_id was already used for a different message",
        )),
        AppendOutcome::NotFound => Err(ServiceError::refused(
            ErrorCode::NotFound,
            format!("no consultation {}", outgoing.consultation_id),
        )),
        AppendOutcome::Closed => Err(ServiceError::refused(
            ErrorCode::ConsultationClosed,
            "the consultation has ended or was cancelled",
        )),
    }
}

/// The answer to a retried send: the earlier message if `client_msg_id` was
/// used for the same `kind` and `body`, a refusal if for something else,
/// `None` if it was never used. Lets a use case answer a retry before checks
/// (rate limits, reachability) that the first attempt already passed.
///
/// # Errors
///
/// `duplicate_client_msg_id`, or a store failure.
pub async fn earlier_send(
    state: &AppState,
    principal: &Principal,
    consultation: &ConsultationId,
    client_msg_id: &str,
    kind: MessageKind,
    body: &str,
) -> Result<Option<Sent>, ServiceError> {
    let found = messages::find_sent(
        state.store.connection(),
        consultation,
        &principal.user,
        client_msg_id,
    )
    .await?;
    match found {
        None => Ok(None),
        Some(message) if message.kind == kind && message.body == body => {
            Ok(Some(sent(message, true)))
        }
        Some(_) => Err(ServiceError::refused(
            ErrorCode::DuplicateClientMsgId,
            "this client_msg_id was already used for a different message",
        )),
    }
}

/// Sends `outgoing` to a consultation already authorized for `principal`
/// and, unless it was a retry, audits it as `action` with `detail` plus the
/// sequence number and the ids of the queued notifications (never the text).
/// The audit row is written by the message writer in the transaction that
/// stores the message: a crash cannot leave the message unaudited.
///
/// # Errors
///
/// Everything [`send`] refuses, or a store failure.
pub async fn send_audited(
    state: &AppState,
    principal: &Principal,
    mut outgoing: Outgoing,
    consultation: &Consultation,
    action: &str,
    detail: serde_json::Value,
) -> Result<Sent, ServiceError> {
    outgoing.audit = Some(Box::new(MessageAudit {
        actor_id: principal.user.to_string(),
        actor_role: principal.role.as_str().to_owned(),
        action: action.to_owned(),
        detail,
    }));
    send(state, principal, outgoing, Some(consultation)).await
}

fn sent(message: ChatMessage, duplicate: bool) -> Sent {
    Sent {
        seq: message.seq,
        duplicate,
        sent_at: message.sent_at,
        message,
        notifications: Vec::new(),
    }
}

/// An upper bound of a message's encoded size: every body byte may be
/// escaped (`\n`, `\"`), plus the other fields.
fn encoded_size_bound(message: &ChatMessage) -> usize {
    const FIXED: usize = 256;
    FIXED
        + 2 * message.body.len()
        + message.consultation_id.as_str().len()
        + message.sender.as_str().len()
        + message.client_msg_id.as_ref().map_or(0, String::len)
}

/// A page of history, oldest first, and whether older messages remain. The
/// page holds the newest `limit` messages before `before` that fit in the
/// answer budget (`SessionConfig::answer_budget_bytes`); `has_more` is true
/// when older ones remain, whichever bound cut the page.
///
/// # Errors
///
/// `invalid_value` for a limit outside 1 to 200, or a store failure.
pub async fn history(
    state: &AppState,
    consultation: &ConsultationId,
    before: Option<Seq>,
    limit: Option<u32>,
) -> Result<(Vec<ChatMessage>, bool), ServiceError> {
    let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(ServiceError::refused(
            ErrorCode::InvalidValue,
            format!("limit must be 1 to {MAX_HISTORY_LIMIT}"),
        ));
    }
    let (mut page, has_more) = messages::page_before(
        state.store.connection(),
        consultation,
        before.map(Seq::get),
        u64::from(limit),
    )
    .await?;
    let trimmed = super::answer_size::keep_newest_within(
        &mut page,
        state.config.session.answer_budget_bytes(),
        encoded_size_bound,
    );
    Ok((page, has_more || trimmed))
}

/// Records a receipt through the receipt batcher and answers once its flush
/// committed. The batcher publishes a `receipt` frame to the room when the
/// member's stored position moved, and a provider's read that moved also
/// bumps the consultation's `rev` and updates the dashboards' unread count.
///
/// `consultation` is the consultation the caller found `principal` a member
/// of (a joined room, or a membership look-up); `delivered_up_to` is the
/// highest `seq` the connection was sent, 0 if none. A `seq` up to either
/// that or the consultation's `last_seq` as the caller saw it is known to be
/// stored; only a higher one is checked against the database.
///
/// The future borrows only `receipts`, so that a session can deliver events
/// while it waits (`Session::deliver_while`).
///
/// # Errors
///
/// `invalid_value` for a sequence number beyond the last message, or a store
/// failure (`unavailable` while the batcher is stopped or restarting).
pub fn acknowledge<'a>(
    receipts: &'a ReceiptBatcher,
    principal: &Principal,
    consultation: &Consultation,
    delivered_up_to: u64,
    seq: Seq,
    receipt: ReceiptKind,
) -> impl std::future::Future<Output = Result<(), ServiceError>> + use<'a> {
    let recorded = receipts.record(NewReceipt {
        consultation_id: consultation.id.clone(),
        user: principal.user.clone(),
        role: principal.role,
        kind: receipt,
        seq: seq.get(),
        known_stored: consultation.last_seq.max(delivered_up_to),
        bumps_rev: principal.role == Role::Provider && principal.user == consultation.provider_id,
    });
    async move {
        match recorded.await? {
            ReceiptOutcome::Recorded => Ok(()),
            ReceiptOutcome::BeyondLastMessage(last_seq) => Err(ServiceError::refused(
                ErrorCode::InvalidValue,
                format!("seq {seq} is beyond the last message ({last_seq})"),
            )),
            ReceiptOutcome::NotFound => Err(ServiceError::refused(
                ErrorCode::NotFound,
                "no such consultation",
            )),
        }
    }
}

/// Tells the room that `principal` started or stopped typing.
pub fn typing(
    state: &AppState,
    principal: &Principal,
    consultation: &ConsultationId,
    active: bool,
) {
    let frame = ServerFrame::Typing {
        consultation_id: consultation.clone(),
        user: principal.user.clone(),
        role: principal.role,
        active,
    };
    events::publish(state, topics::room(consultation), None, &frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use consult_protocol::UserId;

    fn message(seq: u64, body_bytes: usize) -> ChatMessage {
        ChatMessage {
            consultation_id: ConsultationId::from("k1"),
            seq: Seq(seq),
            sender: UserId::from("dr"),
            sender_role: Role::Provider,
            kind: MessageKind::Chat,
            body: "x".repeat(body_bytes),
            client_msg_id: Some(format!("m{seq}")),
            sent_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_bound_covers_the_encoded_message_even_when_every_character_is_escaped() {
        let mut escaped = message(1, 0);
        escaped.body = "\"\n".repeat(2000);
        let encoded = serde_json::to_vec(&escaped).unwrap().len();
        assert!(encoded_size_bound(&escaped) >= encoded);
        let emoji = ChatMessage {
            body: "😀".repeat(4000),
            ..message(2, 0)
        };
        assert!(encoded_size_bound(&emoji) >= serde_json::to_vec(&emoji).unwrap().len());
    }
}
