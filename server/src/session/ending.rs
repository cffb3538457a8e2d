//! What ends a session from outside, as one chain of cancellation tokens:
//! the node's shutdown, then the hub's slow-consumer kick, then the
//! revocation of the session's token (or its user's disconnect). Each link
//! is a child of the one before, so cancelling any of them cancels the
//! last, and the session waits on that one alone.
//!
//! Waiting on the three tokens apart cost each wake-up of each session
//! three waits made and dropped again, each taking its token's locks (its
//! state, then its list of waiters, to join it and to leave it); the
//! shutdown token, shared by every session on the node, was locked by every
//! runtime worker. Now a session keeps one wait for its whole life,
//! on tokens of its own; the shared token is locked once when the session
//! starts and once when it ends.
//!
//! The cause is read once the wait completes, in the order the session loop
//! always took them: shutdown, then a kick, then a revocation.

use tokio_util::sync::CancellationToken;

/// Why a session was ended from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The node is shutting down.
    Shutdown,
    /// The hub found the session's outbound queue full.
    SlowConsumer,
    /// The session's token was revoked, or its user disconnected.
    Revoked,
}

/// A session's slow-consumer and revocation tokens, chained under the
/// node's shutdown token.
#[derive(Debug)]
pub(crate) struct Ending {
    /// Handed to the hub, which cancels it to kick the session.
    slow_consumer: CancellationToken,
    /// Handed to the revocation registry, which cancels it; cancelled too
    /// with either token above it.
    revoked: CancellationToken,
}

impl Ending {
    /// Tokens for a new session under the node's `shutdown` token.
    pub(crate) fn under(shutdown: &CancellationToken) -> Self {
        let slow_consumer = shutdown.child_token();
        let revoked = slow_consumer.child_token();
        Self {
            slow_consumer,
            revoked,
        }
    }

    /// The token the hub cancels when the session's queue is full.
    pub(crate) fn slow_consumer(&self) -> &CancellationToken {
        &self.slow_consumer
    }

    /// The token the revocation registry cancels.
    pub(crate) fn revoked(&self) -> &CancellationToken {
        &self.revoked
    }

    /// A token cancelled once any cause ended the session: a wait loop keeps
    /// one wait on it (`cancelled()`) for as long as it runs, which need not
    /// borrow the session.
    pub(crate) fn watch(&self) -> CancellationToken {
        self.revoked.clone()
    }

    /// What ended the session, once a wait on its [`watch`](Self::watch)
    /// handle completed; `None` while nothing has.
    pub(crate) fn cause(&self, shutdown: &CancellationToken) -> Option<Cause> {
        if shutdown.is_cancelled() {
            Some(Cause::Shutdown)
        } else if self.slow_consumer.is_cancelled() {
            Some(Cause::SlowConsumer)
        } else if self.revoked.is_cancelled() {
            Some(Cause::Revoked)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Cause, Ending};
    use futures_util::FutureExt;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn each_cause_ends_the_wait_and_is_told_in_the_loops_order() {
        let shutdown = CancellationToken::new();
        let revoked = Ending::under(&shutdown);
        assert_eq!(revoked.cause(&shutdown), None);
        assert!(!revoked.watch().is_cancelled());
        revoked.revoked().cancel();
        assert!(revoked.watch().is_cancelled());
        assert_eq!(revoked.cause(&shutdown), Some(Cause::Revoked));

        let kicked = Ending::under(&shutdown);
        kicked.slow_consumer().cancel();
        assert!(kicked.watch().is_cancelled());
        assert_eq!(kicked.cause(&shutdown), Some(Cause::SlowConsumer));
        // A revocation after the kick does not hide it.
        kicked.revoked().cancel();
        assert_eq!(kicked.cause(&shutdown), Some(Cause::SlowConsumer));

        let bystander = Ending::under(&shutdown);
        assert_eq!(bystander.cause(&shutdown), None);
        shutdown.cancel();
        for ending in [&revoked, &kicked, &bystander] {
            assert!(ending.watch().is_cancelled());
            assert_eq!(ending.cause(&shutdown), Some(Cause::Shutdown));
        }
    }

    #[tokio::test]
    async fn one_kept_wait_wakes_on_a_cancel_made_after_it_was_first_polled() {
        let shutdown = CancellationToken::new();
        let ending = Ending::under(&shutdown);
        let watch = ending.watch();
        let mut wait = std::pin::pin!(watch.cancelled());
        assert!(wait.as_mut().now_or_never().is_none());
        assert!(wait.as_mut().now_or_never().is_none());
        let kicker = ending.slow_consumer().clone();
        tokio::spawn(async move { kicker.cancel() });
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("the kept wait wakes");
        assert_eq!(ending.cause(&shutdown), Some(Cause::SlowConsumer));
    }
}
