//! Encoding a frame once and publishing it to a topic.

use crate::app::AppState;
use crate::broker::{Broker, Event, Topic};
use bytes::Bytes;
use consult_protocol::ServerFrame;

/// Encodes `frame` once and publishes it to `topic`.
pub fn publish(state: &AppState, topic: Topic, seq: Option<u64>, frame: &ServerFrame) {
    publish_through(&state.broker, topic, seq, frame);
}

/// As [`publish`], through `broker` (for callers without the state).
pub fn publish_through(broker: &Broker, topic: Topic, seq: Option<u64>, frame: &ServerFrame) {
    broker.publish(Event {
        topic,
        seq,
        frame: Bytes::from(frame.to_json()),
    });
}
