//! Quick Messages: staff pick a template, fill its variables and send it,
//! straight from the "Active and Waiting" list or from inside the
//! consultation. It lands in the chat as kind `quick` and queues a push when
//! the patient's app is offline or in the background.

use super::messaging::{self, Outgoing, Sent};
use super::{ServiceError, access, notifications};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::escalation::Trigger;
use crate::domain::templates;
use crate::store::templates as stored_templates;
use consult_protocol::{ConsultationId, ErrorCode, MessageKind};
use std::collections::BTreeMap;

/// A Quick Message to send.
#[derive(Debug, Clone)]
pub struct QuickMessage {
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The template.
    pub template_id: String,
    /// Values for its variables.
    pub variables: BTreeMap<String, String>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
}

/// Renders and sends a Quick Message.
///
/// # Errors
///
/// `forbidden` for patients and non-members, `not_found` for an unknown
/// template or one of another clinic or provider, `invalid_value` for bad
/// variables, and everything [`messaging::send`] refuses.
pub async fn send(
    state: &AppState,
    principal: &Principal,
    quick: QuickMessage,
) -> Result<Sent, ServiceError> {
    if !principal.role.is_staff() {
        return Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "only providers and clinic admins send Quick Messages",
        ));
    }
    let consultation =
        access::authorized_consultation(state, principal, &quick.consultation_id).await?;
    let db = state.store.connection();
    let mut found = stored_templates::find(db, &quick.template_id).await?;
    if found.is_none() {
        // Clinic defaults are seeded on first use, and this send may be it.
        stored_templates::seed_defaults(db, &consultation.clinic_id).await?;
        found = stored_templates::find(db, &quick.template_id).await?;
    }
    let template = found
        .filter(|t| t.clinic_id == consultation.clinic_id)
        .filter(|t| {
            t.provider_id
                .as_ref()
                .is_none_or(|owner| *owner == consultation.provider_id)
        })
        .ok_or_else(|| {
            ServiceError::refused(
                ErrorCode::NotFound,
                format!("no template {} for this consultation", quick.template_id),
            )
        })?;
    let body = templates::render(&template.body, &quick.variables)?;
    if let Some(earlier) = messaging::earlier_send(
        state,
        principal,
        &quick.consultation_id,
        &quick.client_msg_id,
        MessageKind::Quick,
        &body,
    )
    .await?
    {
        return Ok(earlier);
    }
    let planned = notifications::plan(state, &consultation, Trigger::Quick, &body).await?;
    let outgoing = Outgoing {
        consultation_id: quick.consultation_id.clone(),
        kind: MessageKind::Quick,
        body,
        client_msg_id: Some(quick.client_msg_id),
        notifications: planned,
        audit: None,
    };
    messaging::send_audited(
        state,
        principal,
        outgoing,
        &consultation,
        "quick_message.send",
        serde_json::json!({ "template_id": template.id }),
    )
    .await
}
