//! Revoking tokens and disconnecting users: store the revocation (it
//! survives a restart), audit it, put it in force on this node, and
//! broadcast it on the control topic so every other node does the same.
//!
//! Every node runs [`listen`]: a subscriber of the control topic on its own
//! hub (the broker brings other nodes' revocations there) that applies each
//! revocation it hears, and reloads them all from the database when the
//! broker says events may have been lost.

use super::ServiceError;
use crate::app::AppState;
use crate::auth::revocation::{Revocation, Revocations};
use crate::broker::{Event, Topic};
use crate::hub::Subscriber;
use crate::store::audit::{self, Actor, AuditEntry};
use crate::store::{Store, revocations as store};
use bytes::Bytes;
use consult_protocol::{Role, UserId};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The control topic revocations travel on between nodes.
pub const CONTROL_TOPIC: &str = "control:revocations";

/// Events the listener may have queued before it falls behind and reloads.
const LISTENER_QUEUE: usize = 1024;

/// Stores (unless it is a disconnect), audits, applies on this node and
/// broadcasts `revocation`. Returns how many sessions this node closed.
///
/// # Errors
///
/// [`ServiceError::Store`] when the database fails; nothing is then applied.
pub async fn revoke(
    state: &AppState,
    actor: Actor<'_>,
    revocation: Revocation,
) -> Result<usize, ServiceError> {
    let db = state.store.connection();
    store::insert(db, &revocation).await?;
    audit::record(
        db,
        AuditEntry {
            actor,
            action: action_of(&revocation),
            consultation: None,
            detail: detail_of(&revocation),
        },
    )
    .await?;
    let closed = state.revocations.apply(&revocation);
    tracing::info!(
        action = action_of(&revocation),
        closed,
        "revocation in force"
    );
    match serde_json::to_vec(&revocation) {
        Ok(encoded) => state.broker.publish(Event {
            topic: control_topic(),
            seq: None,
            frame: Bytes::from(encoded),
        }),
        Err(error) => tracing::error!(error = %error, "revocation not encoded"),
    }
    Ok(closed)
}

/// The audit action of a revocation.
fn action_of(revocation: &Revocation) -> &'static str {
    match revocation {
        Revocation::Token { .. } => "token.revoke",
        Revocation::User { .. } => "token.revoke_user",
        Revocation::Disconnect { .. } => "session.disconnect_user",
    }
}

/// Ids only: the token id, or the clinic and user and the time.
fn detail_of(revocation: &Revocation) -> serde_json::Value {
    serde_json::to_value(revocation).unwrap_or(serde_json::Value::Null)
}

/// Audits a token issued by the REST API: its id, subject, clinic, role and
/// expiry, never the token itself.
///
/// # Errors
///
/// [`ServiceError::Store`] when the database fails.
pub async fn audit_issued(
    state: &AppState,
    claims: &crate::auth::Claims,
) -> Result<(), ServiceError> {
    audit::record(
        state.store.connection(),
        AuditEntry {
            actor: Actor {
                id: "platform",
                role: "system",
            },
            action: "token.issue",
            consultation: None,
            detail: serde_json::json!({
                "jti": claims.jti,
                "sub": claims.sub,
                "clinic": claims.clinic,
                "role": claims.role,
                "iat": claims.iat,
                "exp": claims.exp,
            }),
        },
    )
    .await?;
    Ok(())
}

fn control_topic() -> Topic {
    Topic::from(CONTROL_TOPIC)
}

/// Loads every stored revocation into `revocations`.
///
/// # Errors
///
/// [`crate::store::StoreError`] when the database fails.
pub async fn load(
    store: &Store,
    revocations: &Revocations,
    leeway_secs: u64,
) -> Result<usize, crate::store::StoreError> {
    let stored = store::all(store.connection()).await?;
    for revocation in &stored {
        revocations.apply(revocation);
    }
    revocations.prune(leeway_secs);
    Ok(stored.len())
}

/// Subscribes this node to the control topic as subscriber `conn_id` and
/// applies what arrives until `stop` is cancelled.
pub async fn listen(state: Arc<AppState>, stop: CancellationToken, conn_id: u64) {
    loop {
        let (tx, mut rx) = mpsc::channel::<Arc<Event>>(LISTENER_QUEUE);
        let overflow = CancellationToken::new();
        let subscriber = Subscriber {
            conn_id,
            user: UserId("hub".to_owned()),
            role: Role::Admin,
            outbound_tx: tx,
            slow_consumer: overflow.clone(),
            admitted: true,
        };
        if state.hub.subscribe(control_topic(), subscriber) {
            if let Err(error) = state.broker.subscribe(&control_topic()).await {
                tracing::warn!(error = %error, "control topic subscribe failed");
            }
        }
        // Anything published before the subscription was confirmed is in
        // the database.
        reload(&state).await;
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    state.hub.unsubscribe(CONTROL_TOPIC, conn_id);
                    return;
                }
                () = overflow.cancelled() => {
                    tracing::warn!("revocation listener fell behind; reloading");
                    state.hub.unsubscribe(CONTROL_TOPIC, conn_id);
                    break;
                }
                Some(event) = rx.recv() => on_event(&state, &event).await,
            }
        }
    }
}

async fn on_event(state: &AppState, event: &Event) {
    if event.is_resync() {
        reload(state).await;
        return;
    }
    match serde_json::from_slice::<Revocation>(&event.frame) {
        Ok(revocation) => {
            let closed = state.revocations.apply(&revocation);
            if closed > 0 {
                tracing::info!(closed, "sessions closed by a revocation");
            }
        }
        Err(error) => {
            metrics::counter!("consult_revocations_unreadable_total").increment(1);
            // The category only: a parse error may quote the bytes it read.
            tracing::warn!(kind = ?error.classify(), "unreadable revocation on the control topic");
        }
    }
}

async fn reload(state: &AppState) {
    if let Err(error) = load(&state.store, &state.revocations, state.auth.leeway_secs()).await {
        tracing::error!(error = %error, "loading revocations failed");
    }
}
