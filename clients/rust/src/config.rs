//! [`ClientConfig`]: timeouts, queue capacities and size limits, each with a
//! named default.

use std::time::Duration;

/// Default time a command may wait for its `ok` or `error`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for the TCP connect, the upgrade and the `hello`/`welcome`
/// exchange, each.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to finish a close handshake, or to wait for the close code
/// that follows a refused `hello`.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of unread events buffered before [`EventsFull`] applies.
pub const EVENTS_CAPACITY: usize = 1024;
/// Default number of commands queued for the socket task.
pub const COMMANDS_CAPACITY: usize = 64;
/// Default largest message accepted from the hub, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// What the socket task does when the events queue is full because
/// [`crate::Client::next_event`] is not called fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventsFull {
    /// Close the connection (code 1008, reason "client event queue full").
    /// Loud, and never stalls command answers.
    #[default]
    Close,
    /// Stop reading the socket until there is room. Command answers stall
    /// too, and the hub will eventually see a slow consumer; use this to
    /// model a client that stops reading.
    Wait,
}

/// Settings for one client. Build with struct update syntax:
/// `ClientConfig { request_timeout, ..ClientConfig::default() }`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long a command waits for its answer.
    pub request_timeout: Duration,
    /// How long each step of connecting may take.
    pub connect_timeout: Duration,
    /// How long closing may take.
    pub close_timeout: Duration,
    /// Unread events buffered before `events_full` applies.
    pub events_capacity: usize,
    /// Policy for a full events queue.
    pub events_full: EventsFull,
    /// Commands queued for the socket task before callers wait.
    pub commands_capacity: usize,
    /// Largest message (and frame) accepted from the hub, in bytes.
    pub max_message_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: REQUEST_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            close_timeout: CLOSE_TIMEOUT,
            events_capacity: EVENTS_CAPACITY,
            events_full: EventsFull::default(),
            commands_capacity: COMMANDS_CAPACITY,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }
}
