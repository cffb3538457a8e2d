//! State shared by a [`crate::ResilientClient`] handle and its supervisor
//! task: the current connection ([`Link`]), the [`Tracker`], the lock that
//! orders room and dashboard changes against a resume, and the counters.

use super::event::Stats;
use super::tracker::Tracker;
use crate::client::Client;
use crate::connection::CloseInfo;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The connection requests go through right now.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// Connected and resumed.
    Up(Arc<Client>),
    /// Between connections.
    Down,
    /// Closed for good.
    Closed(CloseInfo),
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    tracker: Mutex<Tracker>,
    /// Held by `join`, `leave`, `watch_dashboard` and `unwatch_dashboard`
    /// for their whole exchange, and by the supervisor while it restores a
    /// new connection, so neither sees the other half done. A tokio mutex
    /// because it is held across awaits.
    pub(crate) membership: tokio::sync::Mutex<()>,
    pub(crate) stats: Stats,
}

impl Shared {
    /// The tracker, for a short synchronous update: never hold it across an
    /// await. A panic while it was held leaves plain data, still usable.
    pub(crate) fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
