//! Encoding a frame once and publishing it to a topic.

use crate::app::AppState;
use crate::broker::{Event, Topic};
use bytes::Bytes;
use consult_protocol::ServerFrame;

/// Encodes `frame` once and publishes it to `topic`. A broker failure is
/// logged and counted: the event still reached this node's subscribers when
/// the broker delivers locally, and remote clients recover it on resume.
pub async fn publish(state: &AppState, topic: Topic, seq: Option<u64>, frame: &ServerFrame) {
    let event = Event {
        topic,
        seq,
        frame: Bytes::from(frame.to_json()),
    };
    if let Err(error) = state.broker.publish(event).await {
        metrics::counter!("consult_broker_publish_failures_total").increment(1);
        tracing::warn!(error = %error, "publish failed");
    }
}
