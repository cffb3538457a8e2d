//! Unit tests for the message body format.

use super::*;

#[test]
fn body_carries_its_send_time_and_length() {
    let text = body(1_700_000_000_123_456, 7, 64);
    assert_eq!(text.len(), 64);
    assert_eq!(sent_at(&text), Some(1_700_000_000_123_456));
}

#[test]
fn foreign_text_has_no_send_time() {
    assert_eq!(sent_at("Running 5 minutes late."), None);
}
