//! A session's token lifetime: the deadline derived from the token's `exp`
//! (plus the configured leeway), the close when it passes, and the in-band
//! `refresh` that moves it with a fresh token for the same user, clinic and
//! role.

use super::commands::{CommandError, CommandOutcome};
use super::connection::Session;
use crate::auth::VerifiedToken;
use crate::service::identity;
use axum::extract::ws::Message;
use consult_protocol::{CommandResult, ErrorCode, ServerFrame};
use futures_util::{Sink, Stream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// When a session on a token expiring at `exp` (seconds since the epoch)
/// must close: `exp + leeway`, as a monotonic instant.
pub(crate) fn deadline(exp: u64, leeway_secs: u64) -> Instant {
    let end = UNIX_EPOCH + Duration::from_secs(exp.saturating_add(leeway_secs));
    let left = end
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    // Far-future `exp` values must not overflow the monotonic clock.
    let left = left.min(Duration::from_secs(10 * 365 * 24 * 3600));
    Instant::now() + left
}

/// A token's `exp` as a time; `None` beyond what a timestamp can hold.
pub(crate) fn expiry_time(exp: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    i64::try_from(exp)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
}

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    /// The token's deadline passed: say why before the close (4005).
    pub(crate) async fn on_expired(&mut self) {
        tracing::info!("token expired; closing");
        metrics::counter!("consult_client_errors_total", "code" => ErrorCode::TokenExpired.as_str())
            .increment(1);
        let frame = ServerFrame::error(
            None,
            ErrorCode::TokenExpired,
            "the session's token expired; reconnect with a fresh token",
        );
        let _ = self.socket.send_frame(&frame).await;
    }

    /// The token was revoked (or the user disconnected): say so before the
    /// close (4006).
    pub(crate) async fn on_revoked(&mut self) {
        tracing::info!("token revoked; closing");
        metrics::counter!("consult_client_errors_total", "code" => ErrorCode::TokenRevoked.as_str())
            .increment(1);
        let frame = ServerFrame::error(
            None,
            ErrorCode::TokenRevoked,
            "the session was ended by the platform; reconnect with a fresh token",
        );
        let _ = self.socket.send_frame(&frame).await;
    }

    /// `refresh`: a valid, unrevoked token for the same user, clinic and role
    /// replaces the session's token and deadline. Anything else is refused
    /// and leaves the session as it was.
    pub(crate) async fn refresh(&mut self, token: &str) -> CommandOutcome {
        // The same checks as `hello`: signature and claims (fetching the
        // identity provider's keys for an unknown `kid`), the user's clinic,
        // revocation.
        let checked_at = std::time::Instant::now();
        let verified = identity::authenticate(&self.state, token)
            .await
            .map_err(|error| {
                if error.is_internal() {
                    tracing::error!(error = %error, "refresh failed");
                } else {
                    tracing::info!(code = error.code().as_str(), "refresh refused");
                }
                CommandError::Service(error)
            })?;
        if verified.principal != self.principal {
            tracing::info!(
                code = "invalid_token",
                "refresh for another identity refused"
            );
            return Err((
                ErrorCode::InvalidToken,
                "the token is for another user, clinic or role".to_owned(),
            )
                .into());
        }
        self.adopt_token(&verified, checked_at);
        let expires_at =
            expiry_time(verified.expires_at).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        Ok(Some(CommandResult::Refreshed { expires_at }))
    }

    /// Makes `verified` (checked at `checked_at`) the session's token: its
    /// deadline, and the identity revocations and disconnects are matched
    /// against.
    pub(crate) fn adopt_token(&mut self, verified: &VerifiedToken, checked_at: std::time::Instant) {
        self.expires_at = deadline(verified.expires_at, self.state.auth.leeway_secs());
        self.state
            .revocations
            .track(self.conn_id, verified, self.ending.revoked(), checked_at);
    }
}
