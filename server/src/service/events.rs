//! Encoding a frame once and publishing it to a topic.

use crate::app::AppState;
use crate::broker::{Event, Topic};
use bytes::Bytes;
use consult_protocol::ServerFrame;

/// Encodes `frame` once and publishes it to `topic`.
pub fn publish(state: &AppState, topic: Topic, seq: Option<u64>, frame: &ServerFrame) {
    state.broker.publish(Event {
        topic,
        seq,
        frame: Bytes::from(frame.to_json()),
    });
}
