//! [`ResilientConfig`] and [`Backoff`]: when and how fast a
//! [`crate::ResilientClient`] reconnects, each setting with a named default.
//!
//! Pure settings and arithmetic; the randomness for jitter is passed in, so
//! the schedule is testable without a random source.

use crate::config::ClientConfig;
use std::time::Duration;

/// Default wait before the first reconnect attempt.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default cap on the wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default share of each wait that is randomized (0.5: between half and all
/// of the exponential wait).
pub const BACKOFF_JITTER: f64 = 0.5;
/// Default time a connection must stay up before the backoff starts again
/// from [`BACKOFF_BASE`].
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Default time an idempotent command keeps being retried across reconnects.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval of the liveness `ping` that detects a dead connection
/// the operating system has not noticed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long before its token expires a connection is refreshed in-band
/// (at most half the token's remaining lifetime).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// The reconnect schedule: exponential from `base`, doubling per failed
/// attempt up to `max`, each wait shortened by a random share of at most
/// `jitter` so that clients dropped together do not return together.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Wait before the first attempt.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Randomized share of each wait, from 0.0 (none) to 1.0 (anywhere
    /// between zero and the full wait). Values outside are clamped.
    pub jitter: f64,
    /// A connection that stays up this long resets the schedule to `base`.
    pub stable_after: Duration,
    /// Give up after this many consecutive failed attempts; `None` retries
    /// for ever.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: BACKOFF_BASE,
            max: BACKOFF_MAX,
            jitter: BACKOFF_JITTER,
            stable_after: STABLE_AFTER,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1 for the first) given `roll`, a
    /// random number in `[0, 1)`: `min(max, base * 2^(attempt-1))`, less
    /// `jitter * roll` of itself.
    pub fn delay(&self, attempt: u32, roll: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max);
        let share = self.jitter.clamp(0.0, 1.0) * roll.clamp(0.0, 1.0);
        ceiling.mul_f64(1.0 - share)
    }
}

/// Settings for a [`crate::ResilientClient`]. Build with struct update
/// syntax: `ResilientConfig { backoff, ..ResilientConfig::default() }`.
#[derive(Debug, Clone)]
pub struct ResilientConfig {
    /// Settings of each underlying connection. Its `events_capacity` also
    /// sizes the resilient client's own events queue.
    pub client: ClientConfig,
    /// The reconnect schedule.
    pub backoff: Backoff,
    /// How long an idempotent command (`send`, `quick_message`, `alert`)
    /// keeps being retried across reconnects before it fails.
    pub retry_timeout: Duration,
    /// Interval of the liveness `ping`; a ping unanswered within the
    /// request timeout drops the connection and reconnects. `None` relies on
    /// the operating system to notice dead connections.
    pub keepalive: Option<Duration>,
    /// How long before the connection's token expires (the `welcome`'s
    /// `expires_at`) a fresh token from the [`crate::TokenProvider`] is sent
    /// in a `refresh`, capped at half the remaining lifetime. `None` never
    /// refreshes in-band: the hub then closes with 4005 at expiry and the
    /// client reconnects with a fresh token.
    pub refresh_before: Option<Duration>,
}

impl Default for ResilientConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            backoff: Backoff::default(),
            retry_timeout: RETRY_TIMEOUT,
            keepalive: Some(KEEPALIVE_INTERVAL),
            refresh_before: Some(REFRESH_BEFORE),
        }
    }
}
