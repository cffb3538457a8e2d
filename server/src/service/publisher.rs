//! Publishing committed messages: the group-commit writer hands over each
//! stored message, in commit order, and [`on_commit`] publishes it to its
//! room at once, on the writer itself (publishing never blocks: local
//! delivery is a queue push per subscriber, Redis gets its copy through the
//! broker's own queue). A patient's message also changes the dashboards
//! (its unread count): the SQLite writer reads that row in the message's
//! transaction and it is published here, after the message; other writers
//! leave it to [`refresh_dashboards`], a task that reads the rows queued
//! meanwhile in one query.
//!
//! Receipts take the same way: the receipt batcher hands over each position
//! that moved, in commit order, and [`on_receipt_commit`] publishes its
//! `receipt` frame to the room; a provider's read (the unread count
//! changed) sends the consultation to [`refresh_dashboards`].

use super::{dashboard, events};
use crate::app::AppState;
use crate::broker::Broker;
use crate::hub::topics;
use crate::store::appender::OnCommit;
use crate::store::dashboard_rows::UnreadCounts;
use crate::store::messages::StoredMessage;
use crate::store::receipt_batch::{MovedReceipt, OnReceiptCommit};
use consult_protocol::{ConsultationId, Role, Seq, ServerFrame};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Publishes each stored message through `broker`, and sends the
/// consultations of patients' messages to `dashboards`.
pub fn on_commit(broker: Broker, dashboards: mpsc::UnboundedSender<ConsultationId>) -> OnCommit {
    Box::new(move |stored: &StoredMessage| {
        // Notifications were announced (and the outbox worker woken) by the
        // sender's use case; this only fans the message out.
        let message = &stored.message;
        let topic = topics::room(&message.consultation_id);
        let seq = message.seq.get();
        let frame = ServerFrame::Message {
            message: message.clone(),
        };
        events::publish_through(&broker, topic, Some(seq), &frame);
        if let Some(row) = &stored.dashboard {
            let frame = ServerFrame::Dashboard {
                entry: row.entry.clone(),
            };
            dashboard::publish_to_feeds(&broker, &row.clinic_id, &row.entry.provider_id, &frame);
        } else if message.sender_role == Role::Patient
            && dashboards.send(message.consultation_id.clone()).is_err()
        {
            tracing::debug!("dashboard refresher stopped; delta skipped");
        }
    })
}

/// Publishes each moved receipt position through `broker` as a `receipt`
/// frame to its room, and sends the consultations whose `rev` a provider's
/// read bumped to `dashboards`.
pub fn on_receipt_commit(
    broker: Broker,
    dashboards: mpsc::UnboundedSender<ConsultationId>,
) -> OnReceiptCommit {
    Box::new(move |moved: &MovedReceipt| {
        let frame = ServerFrame::Receipt {
            consultation_id: moved.consultation_id.clone(),
            user: moved.user.clone(),
            role: moved.role,
            seq: Seq(moved.seq),
            receipt: moved.kind,
        };
        events::publish_through(&broker, topics::room(&moved.consultation_id), None, &frame);
        if moved.rev_bumped && dashboards.send(moved.consultation_id.clone()).is_err() {
            tracing::debug!("dashboard refresher stopped; delta skipped");
        }
    })
}

/// Most consultations read in one refresh.
const REFRESH_BATCH_MAX: usize = 256;

/// Publishes the dashboard row of each consultation that arrives, until the
/// writer and the receipt batcher (and with them the sending sides) are
/// gone. The consultations that arrived while a refresh was being read are
/// read together in the next one (one query, each consultation once): the
/// row shows the state at that read, which covers every message before it.
/// Unread counts are carried on from one read of a consultation to the next
/// ([`UnreadCounts`]). The queue is held by the run in progress, so that a
/// restarted run (see [`crate::supervisor`]) takes it over.
pub async fn refresh_dashboards(
    state: Arc<AppState>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<ConsultationId>>>,
) {
    let mut consultations = queue.lock().await;
    let mut due: Vec<ConsultationId> = Vec::new();
    let mut seen: HashSet<ConsultationId> = HashSet::new();
    let mut counts = UnreadCounts::default();
    while let Some(first) = consultations.recv().await {
        due.clear();
        seen.clear();
        seen.insert(first.clone());
        due.push(first);
        while due.len() < REFRESH_BATCH_MAX {
            let Ok(next) = consultations.try_recv() else {
                break;
            };
            if seen.insert(next.clone()) {
                due.push(next);
            }
        }
        if let Err(error) = dashboard::publish_entries(&state, &due, &mut counts).await {
            tracing::error!(error = %error, consultations = due.len(), "dashboard deltas failed");
        }
    }
    tracing::debug!("dashboard refresher stopped");
}
