//! What a [`crate::ResilientClient`] tells its caller: [`ResilientEvent`]s
//! in order, the [`ConnectionState`] they carry, and [`ResilientStats`]
//! counters for load tests.

use crate::commands::Joined;
use crate::connection::CloseInfo;
use crate::handshake::Welcome;
use consult_protocol::{ConsultationId, DashboardEntry, ErrorCode, ServerFrame};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the connection stands. Every change is also delivered in order as
/// [`ResilientEvent::State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first connection is up.
    Connected(Welcome),
    /// The connection dropped; reconnect attempts follow.
    Disconnected(CloseInfo),
    /// Waiting `delay` before reconnect attempt `attempt` (1 for the first
    /// after a drop). `last_error` says why the previous attempt failed.
    Reconnecting {
        /// Attempt number since the drop.
        attempt: u32,
        /// Wait before it.
        delay: Duration,
        /// Why the previous attempt failed; `None` for the first.
        last_error: Option<String>,
    },
    /// Reconnected: `hello` done, every room joined again and the dashboard
    /// watched again. Requests go through again.
    Resumed(Welcome),
    /// Closed for good: by [`crate::ResilientClient::close`], by an
    /// authentication failure (4001 or a refused `hello`), or after
    /// `max_attempts`. No more reconnects.
    Closed(CloseInfo),
}

impl ConnectionState {
    /// True for `Connected` and `Resumed`.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Connected(_) | Self::Resumed(_))
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected(welcome) => write!(f, "connected as {}", welcome.user),
            Self::Disconnected(info) => write!(f, "disconnected ({info})"),
            Self::Reconnecting {
                attempt,
                delay,
                last_error,
            } => {
                write!(
                    f,
                    "reconnecting in {:.1} s (attempt {attempt}",
                    delay.as_secs_f64()
                )?;
                match last_error {
                    Some(error) => write!(f, "; last error: {error})"),
                    None => write!(f, ")"),
                }
            }
            Self::Resumed(welcome) => write!(f, "resumed (connection {})", welcome.conn_id),
            Self::Closed(info) => write!(f, "closed for good ({info})"),
        }
    }
}

/// One item from [`crate::ResilientClient::next_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResilientEvent {
    /// A frame from the hub that answers no waiting command. `message`
    /// frames of rooms joined through the resilient client arrive once each,
    /// in order, across reconnects.
    Frame(ServerFrame),
    /// The connection state changed.
    State(ConnectionState),
    /// After a reconnect, a room was joined again; the messages it replayed
    /// came just before. `joined.consultation` is its current status, which
    /// may have changed while disconnected (only messages are replayed).
    Rejoined {
        /// The room.
        consultation_id: ConsultationId,
        /// The hub's answer.
        joined: Joined,
    },
    /// After a reconnect, a room could not be joined again (for example it
    /// became forbidden); it is no longer tracked.
    RejoinFailed {
        /// The room.
        consultation_id: ConsultationId,
        /// Why the hub refused.
        code: ErrorCode,
        /// The hub's explanation.
        message: String,
    },
    /// After a reconnect, the dashboard could not be watched again; it is
    /// no longer tracked.
    DashboardFailed {
        /// Why the hub refused.
        code: ErrorCode,
        /// The hub's explanation.
        message: String,
    },
    /// After a reconnect, the dashboard was watched again: the whole list
    /// as it is now, replacing the one held. Deltas follow as frames.
    DashboardSnapshot(Vec<DashboardEntry>),
}

/// Counters of one [`crate::ResilientClient`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResilientStats {
    /// Reconnect attempts made.
    pub attempts: u64,
    /// Reconnects that completed, rooms and dashboard restored.
    pub resumed: u64,
    /// `message` frames dropped because the caller already had them.
    pub duplicates_dropped: u64,
    /// Idempotent commands sent again after their connection dropped.
    pub retried_commands: u64,
}

/// The live counters behind [`ResilientStats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) attempts: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    pub(crate) retried_commands: AtomicU64,
}

impl Stats {
    /// Adds one. Counters order no other memory, so relaxed is enough.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ResilientStats {
        ResilientStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            duplicates_dropped: self.duplicates_dropped.load(Ordering::Relaxed),
            retried_commands: self.retried_commands.load(Ordering::Relaxed),
        }
    }
}
