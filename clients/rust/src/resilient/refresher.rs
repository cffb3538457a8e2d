//! The in-band token refresh: before the connection's token expires (as the
//! hub said in `welcome` and in each `refreshed` answer), ask the
//! [`super::TokenProvider`] for a fresh token and send `refresh`, so the hub
//! never closes the connection for expiry (4005). A failed refresh is tried
//! again after half the time left; if the token runs out anyway, the hub
//! closes and the supervisor reconnects with a fresh token.

use super::connector::Connect;
use crate::client::Client;
use crate::handshake::Welcome;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Soonest a failed refresh is tried again.
const MIN_RETRY: Duration = Duration::from_millis(250);
/// "Not again on this connection".
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// When to refresh the current connection.
#[derive(Debug)]
pub(crate) struct Refresher {
    /// The hub's clock minus ours, from `welcome`.
    skew: chrono::Duration,
    /// Refresh this long before expiry, at most half the time left.
    before: Duration,
    /// When the connection's token expires, on our monotonic clock.
    expires: Instant,
    /// When to refresh next.
    due: Instant,
}

impl Refresher {
    /// `None` when the hub did not say when the connection expires.
    pub(crate) fn new(welcome: &Welcome, before: Duration) -> Option<Self> {
        let expires_at = welcome.expires_at?;
        let skew = welcome.server_time - Utc::now();
        let mut refresher = Self {
            skew,
            before,
            expires: Instant::now(),
            due: Instant::now(),
        };
        refresher.expires_at(expires_at);
        Some(refresher)
    }

    /// When the next refresh is due.
    pub(crate) fn due(&self) -> Instant {
        self.due
    }

    /// Takes a new expiry (hub clock) and plans the refresh before it.
    fn expires_at(&mut self, expires_at: DateTime<Utc>) {
        let hub_now = Utc::now() + self.skew;
        let left = (expires_at - hub_now).to_std().unwrap_or(Duration::ZERO);
        self.expires = Instant::now() + left;
        self.due = Instant::now() + left.saturating_sub(self.before.min(left / 2));
    }

    /// Sends `refresh` with a fresh token; plans the next one.
    pub(crate) async fn refresh(&mut self, client: &Client, connector: &impl Connect) {
        let outcome = match connector.fresh_token().await {
            Ok(Some(token)) => client.refresh(&token).await.map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(Some(expires_at)) => {
                debug!(%expires_at, "token refreshed");
                let before = self.expires;
                self.expires_at(expires_at);
                if self.expires <= before + Duration::from_millis(500) {
                    // The provider gave no later token (a fixed string):
                    // refreshing again cannot help; the hub closes at expiry
                    // and the supervisor reconnects.
                    debug!("token provider gave no later expiry; not refreshing again");
                    self.due = self.expires + NEVER;
                }
            }
            Ok(None) => self.due = self.expires + NEVER,
            Err(error) => {
                let left = self.expires.saturating_duration_since(Instant::now());
                warn!(error = %error, ?left, "token refresh failed; retrying");
                self.due = Instant::now() + (left / 2).max(MIN_RETRY);
            }
        }
    }
}

/// Sleeps until `due`, or forever when there is none.
pub(crate) async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
