//! Turning a message to the patient into outbox rows: plan with the domain's
//! escalation rules, pick providers, choose the text (generic unless the
//! policy includes text that passes the privacy check), and tell staff what
//! was queued.

use super::{ServiceError, dashboard, reach};
use crate::app::AppState;
use crate::domain::Consultation;
use crate::domain::escalation::{
    self, GENERIC_PUSH_BODY, GENERIC_SMS_BODY, PUSH_TITLE, Planned, Target, Trigger,
};
use crate::domain::privacy::{self, PrivacyRules, Vocabulary};
use crate::store::outbox::{NewNotification, OutboxRow};
use crate::store::participants;
use consult_protocol::{AlertChannel, ServerFrame};
use std::sync::{Arc, Mutex};

/// The names the privacy check refuses for a consultation: its patient's
/// and provider's display and preferred names.
///
/// # Errors
///
/// A store failure.
pub async fn privacy_names(
    state: &AppState,
    consultation: &Consultation,
) -> Result<Vec<String>, ServiceError> {
    Ok(participants::names_of(
        state.store.connection(),
        &[
            consultation.patient_id.clone(),
            consultation.provider_id.clone(),
        ],
    )
    .await?)
}

/// Checks `text` against the consultation's privacy rules.
///
/// # Errors
///
/// `privacy_violation` naming the offending span; a store failure.
pub async fn check_privacy(
    state: &AppState,
    consultation: &Consultation,
    text: &str,
) -> Result<(), ServiceError> {
    let names = privacy_names(state, consultation).await?;
    let vocabulary = vocabulary(&state.config.notify.health_terms);
    let rules = PrivacyRules {
        names: names.iter().map(String::as_str).collect(),
        vocabulary: &vocabulary,
    };
    match privacy::check(text, &rules) {
        None => Ok(()),
        Some(violation) => {
            tracing::info!(
                consultation = %consultation.id,
                kind = violation.kind.as_str(),
                "text refused by the privacy check"
            );
            Err(ServiceError::refused(
                consult_protocol::ErrorCode::PrivacyViolation,
                violation.message(),
            ))
        }
    }
}

/// The built-in vocabulary with `configured` terms, compiled once per list
/// of configured terms (the configuration does not change while a node
/// runs, so this is compiled once).
fn vocabulary(configured: &[String]) -> Arc<Vocabulary> {
    static COMPILED: Mutex<Option<(Vec<String>, Arc<Vocabulary>)>> = Mutex::new(None);
    let mut slot = COMPILED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match slot.as_ref() {
        Some((terms, vocabulary)) if terms.as_slice() == configured => Arc::clone(vocabulary),
        _ => {
            let vocabulary = Arc::new(Vocabulary::build(configured));
            *slot = Some((configured.to_vec(), Arc::clone(&vocabulary)));
            vocabulary
        }
    }
}

/// Plans the notifications a message with `text` to the patient needs.
///
/// # Errors
///
/// A store failure.
pub async fn plan(
    state: &AppState,
    consultation: &Consultation,
    trigger: Trigger,
    text: &str,
) -> Result<Vec<NewNotification>, ServiceError> {
    let reach = reach::reach(state, &consultation.patient()).await?;
    let policy = reach::policy(state, &consultation.clinic_id).await?;
    let planned = escalation::plan(trigger, &reach, &policy);
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let text_allowed = matches!(trigger, Trigger::Alert { .. })
        || (policy.push_include_text && check_privacy(state, consultation, text).await.is_ok());
    Ok(planned
        .into_iter()
        .map(|planned| to_row(state, consultation, planned, text, text_allowed))
        .collect())
}

fn to_row(
    state: &AppState,
    consultation: &Consultation,
    planned: Planned,
    text: &str,
    text_allowed: bool,
) -> NewNotification {
    let full = planned.full_text && text_allowed;
    let (provider, target, title, body) = match planned.target {
        Target::Device(platform, token) => (
            state.notifier.push_provider(platform),
            token,
            PUSH_TITLE.to_owned(),
            if full { text } else { GENERIC_PUSH_BODY }.to_owned(),
        ),
        Target::Phone(phone) => (
            state.notifier.sms_provider(),
            phone,
            String::new(),
            if full { text } else { GENERIC_SMS_BODY }.to_owned(),
        ),
    };
    NewNotification {
        recipient: consultation.patient_id.clone(),
        channel: planned.channel,
        provider: provider.to_owned(),
        target,
        title,
        body,
        reason: planned.reason,
        cancel: planned.cancel,
        delay: planned.delay,
    }
}

/// Tells staff watching the consultation's dashboards what was queued, in
/// one `notifications` frame (one per message, however many devices the
/// patient has), and wakes the outbox worker.
pub fn announce_queued(state: &AppState, consultation: &Consultation, rows: &[OutboxRow]) {
    if rows.is_empty() {
        return;
    }
    let frame = ServerFrame::Notifications {
        notifications: rows.iter().map(OutboxRow::view).collect(),
    };
    dashboard::publish_to_staff(state, consultation, &frame);
    // Woken after the `pending` frame is out, so staff see it first.
    state.outbox_wakeup.notify_one();
}

/// Notifications a list holds at most.
pub const MAX_LISTED: u64 = 500;

/// The consultation's newest notifications, oldest first: at most
/// [`MAX_LISTED`], and no more than fit in the answer budget
/// (`SessionConfig::answer_budget_bytes`), at least one; true when older
/// ones were left out.
///
/// # Errors
///
/// A store failure.
pub async fn listed(
    state: &AppState,
    consultation: &consult_protocol::ConsultationId,
) -> Result<(Vec<consult_protocol::NotificationView>, bool), ServiceError> {
    let page = page(state, consultation, None, MAX_LISTED).await?;
    let more = page.older.is_some();
    Ok((page.rows.iter().map(OutboxRow::view).collect(), more))
}

/// A page of a consultation's notifications, newest first from `before`.
#[derive(Debug)]
pub struct NotificationPage {
    /// The rows, oldest first.
    pub rows: Vec<OutboxRow>,
    /// Where the next (older) page starts, when older rows remain: the
    /// oldest row's creation time and idempotency key.
    pub older: Option<(chrono::DateTime<chrono::Utc>, String)>,
}

/// The consultation's newest `limit` notifications older than `before`
/// (at most [`MAX_LISTED`], and no more than fit in the answer budget).
///
/// # Errors
///
/// A store failure.
pub async fn page(
    state: &AppState,
    consultation: &consult_protocol::ConsultationId,
    before: Option<&(chrono::DateTime<chrono::Utc>, String)>,
    limit: u64,
) -> Result<NotificationPage, ServiceError> {
    let (mut rows, more) = crate::store::outbox::latest_for_consultation(
        state.store.connection(),
        consultation,
        before,
        limit.min(MAX_LISTED),
    )
    .await?;
    // Each row's encoding and the comma that separates it from the next.
    let cut = super::answer_size::keep_newest_within(
        &mut rows,
        state.config.session.answer_budget_bytes(),
        |row| serde_json::to_vec(&row.view()).map_or(usize::MAX, |encoded| encoded.len() + 1),
    );
    let older = (more || cut)
        .then(|| {
            rows.first()
                .map(|row| (row.created_at, row.idempotency_key.clone()))
        })
        .flatten();
    Ok(NotificationPage { rows, older })
}

/// True when the patient can be reached on `channel` now.
///
/// # Errors
///
/// A store failure.
pub async fn channel_available(
    state: &AppState,
    consultation: &Consultation,
    channel: AlertChannel,
) -> Result<bool, ServiceError> {
    let reach = reach::reach(state, &consultation.patient()).await?;
    Ok(match channel {
        AlertChannel::Push => !reach.devices.is_empty(),
        AlertChannel::Sms => reach.sms_phone.is_some(),
    })
}
