//! The publisher task: takes committed messages from the group-commit writer,
//! in commit order, and publishes each to its room. A patient's message also
//! refreshes the dashboards (its unread count changed).

use super::{dashboard, events};
use crate::app::AppState;
use crate::hub::topics;
use crate::store::messages::StoredMessage;
use consult_protocol::{Role, ServerFrame};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Publishes committed batches until the writer closes the channel.
pub async fn run(state: Arc<AppState>, mut committed_rx: mpsc::Receiver<Vec<StoredMessage>>) {
    while let Some(batch) = committed_rx.recv().await {
        // Notifications were announced (and the outbox worker woken) by the
        // sender's use case; this task only fans messages out.
        for StoredMessage { message, .. } in batch {
            let topic = topics::room(&message.consultation_id);
            let seq = message.seq.get();
            let from_patient = message.sender_role == Role::Patient;
            let consultation = message.consultation_id.clone();
            events::publish(&state, topic, Some(seq), &ServerFrame::Message { message });
            if from_patient {
                dashboard::spawn_publish_entry(Arc::clone(&state), consultation);
            }
        }
    }
    tracing::debug!("publisher stopped");
}
