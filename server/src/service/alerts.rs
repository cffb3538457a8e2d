//! "Alert Patient": a short generic text from inside the consultation, sent
//! in the chat and at once by push and/or SMS as the provider ticks. Nothing
//! leaves unless the text passes the privacy check, every ticked channel can
//! reach the patient, and the consultation is within its alert rate limits.

use super::messaging::{self, Outgoing, Sent};
use super::{ServiceError, access, notifications};
use crate::app::AppState;
use crate::auth::Principal;
use crate::config::RateLimit;
use crate::domain::Consultation;
use crate::domain::escalation::Trigger;
use crate::store::outbox;
use chrono::Utc;
use consult_protocol::{AlertChannel, ConsultationId, ErrorCode, MessageKind, NotificationReason};

/// Longest alert text, in characters: it must fit one SMS segment.
pub const MAX_ALERT_CHARS: usize = 160;

/// An alert to send.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The text.
    pub body: String,
    /// The ticked channels.
    pub channels: Vec<AlertChannel>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
}

/// Checks and sends an alert.
///
/// # Errors
///
/// `forbidden`, `invalid_value` (no channel, text too long),
/// `privacy_violation`, `channel_unavailable`, `rate_limited`, and
/// everything [`messaging::send`] refuses.
pub async fn send(
    state: &AppState,
    principal: &Principal,
    mut alert: Alert,
) -> Result<Sent, ServiceError> {
    if !principal.role.is_staff() {
        return Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "only providers and clinic admins alert patients",
        ));
    }
    alert.channels.sort_unstable();
    alert.channels.dedup();
    if alert.channels.is_empty() {
        return Err(ServiceError::refused(
            ErrorCode::InvalidValue,
            "tick Push Notifications, SMS, or both",
        ));
    }
    let chars = alert.body.chars().count();
    if chars > MAX_ALERT_CHARS {
        return Err(ServiceError::refused(
            ErrorCode::InvalidValue,
            format!("an alert is at most {MAX_ALERT_CHARS} characters; this one is {chars}"),
        ));
    }
    let consultation =
        access::authorized_consultation(state, principal, &alert.consultation_id).await?;
    // A retry of a stored alert is answered as such, even if a limit has
    // been reached since the first attempt.
    if let Some(earlier) = messaging::earlier_send(
        state,
        principal,
        &alert.consultation_id,
        &alert.client_msg_id,
        MessageKind::Alert,
        &alert.body,
    )
    .await?
    {
        return Ok(earlier);
    }
    notifications::check_privacy(state, &consultation, &alert.body).await?;
    for channel in &alert.channels {
        if !notifications::channel_available(state, &consultation, *channel).await? {
            return Err(ServiceError::refused(
                ErrorCode::ChannelUnavailable,
                unavailable_message(*channel),
            ));
        }
        check_rate_limit(state, &consultation, *channel).await?;
    }
    let trigger = Trigger::Alert {
        push: alert.channels.contains(&AlertChannel::Push),
        sms: alert.channels.contains(&AlertChannel::Sms),
    };
    let planned = notifications::plan(state, &consultation, trigger, &alert.body).await?;
    let outgoing = Outgoing {
        consultation_id: alert.consultation_id.clone(),
        kind: MessageKind::Alert,
        body: alert.body,
        client_msg_id: Some(alert.client_msg_id),
        notifications: planned,
        audit: None,
    };
    messaging::send_audited(
        state,
        principal,
        outgoing,
        &consultation,
        "alert.send",
        serde_json::json!({ "channels": alert.channels }),
    )
    .await
}

fn unavailable_message(channel: AlertChannel) -> &'static str {
    match channel {
        AlertChannel::Push => {
            "the patient has no device with notifications on; untick Push Notifications"
        }
        AlertChannel::Sms => {
            "the patient has no phone number with SMS consent (or replied STOP); untick SMS"
        }
    }
}

async fn check_rate_limit(
    state: &AppState,
    consultation: &Consultation,
    channel: AlertChannel,
) -> Result<(), ServiceError> {
    let limit: RateLimit = match channel {
        AlertChannel::Push => state.config.notify.alert_push_limit,
        AlertChannel::Sms => state.config.notify.alert_sms_limit,
    };
    let window = chrono::Duration::seconds(i64::try_from(limit.window_secs).unwrap_or(i64::MAX));
    let sent = outbox::count_since(
        state.store.connection(),
        &consultation.id,
        channel,
        NotificationReason::Alert,
        Utc::now() - window,
    )
    .await?;
    if sent >= u64::from(limit.max) {
        return Err(ServiceError::refused(
            ErrorCode::RateLimited,
            format!(
                "at most {} {} alerts per {} minutes for one consultation",
                limit.max,
                channel.as_str(),
                limit.window_secs.div_ceil(60)
            ),
        ));
    }
    Ok(())
}
