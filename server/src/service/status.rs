//! Status changes: decide with the domain's status machine, persist with a
//! conditional update and an audit row in one transaction, then tell the
//! room and the dashboards.

use super::{ServiceError, access, dashboard, events};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::Consultation;
use crate::domain::status::{self, StatusAction};
use crate::hub::topics;
use crate::store::{audit, consultations};
use chrono::Utc;
use consult_protocol::{ConsultationId, ErrorCode, ServerFrame};
use sea_orm::TransactionTrait;
use std::sync::Arc;

/// Attempts before giving up when the status keeps changing underneath.
const MAX_ATTEMPTS: usize = 3;

/// Applies `action` for `principal`. Returns the consultation as it is after
/// the action (unchanged when the action changes nothing).
///
/// # Errors
///
/// `forbidden`, `not_found`, `invalid_transition`, `not_ready`,
/// `consultation_closed`, or a store failure.
pub async fn apply(
    state: &Arc<AppState>,
    principal: &Principal,
    id: &ConsultationId,
    action: StatusAction,
) -> Result<Consultation, ServiceError> {
    for _ in 0..MAX_ATTEMPTS {
        let current = access::authorized_consultation(state, principal, id).await?;
        let Some(to) = status::decide(&current, principal.role, action)
            .map_err(|refusal| ServiceError::refused(refusal.code, refusal.message))?
        else {
            return Ok(current);
        };
        let txn = state
            .store
            .connection()
            .begin()
            .await
            .map_err(crate::store::StoreError::from)?;
        let Some(updated) = consultations::transition(&txn, id, current.status, to).await? else {
            // Someone changed the status meanwhile; decide again.
            drop(txn);
            continue;
        };
        audit::record(
            &txn,
            audit::AuditEntry {
                actor: principal.into(),
                action: &format!("status.{}", action.as_str()),
                consultation: Some(id),
                detail: serde_json::json!({ "from": current.status, "to": to }),
            },
        )
        .await?;
        txn.commit().await.map_err(crate::store::StoreError::from)?;
        announce(state, principal, &current, &updated).await;
        return Ok(updated);
    }
    Err(ServiceError::refused(
        ErrorCode::Unavailable,
        "the consultation is changing too fast; retry",
    ))
}

async fn announce(
    state: &Arc<AppState>,
    principal: &Principal,
    before: &Consultation,
    after: &Consultation,
) {
    tracing::info!(
        consultation = %after.id,
        from = %before.status,
        to = %after.status,
        by = %principal.user,
        "status changed"
    );
    metrics::counter!("consult_status_changes_total", "to" => after.status.as_str()).increment(1);
    let frame = ServerFrame::Status {
        consultation_id: after.id.clone(),
        status: after.status,
        previous: before.status,
        changed_by: principal.user.clone(),
        at: Utc::now(),
        rev: after.rev,
    };
    events::publish(state, topics::room(&after.id), None, &frame);
    if let Err(error) = dashboard::publish_entry(state, &after.id).await {
        tracing::error!(error = %error, consultation = %after.id, "dashboard delta failed");
    }
}
