//! Revoked tokens, held in memory on every node: token ids (`jti`), and per
//! (clinic, user) a time at or before which every token issued is revoked.
//! Also this node's live sessions with the token each runs on, so that a new
//! revocation (or a "disconnect now") can close the ones it covers, and the
//! recent "disconnect now"s, so that one arriving while a connection is set
//! up (its token checked, its session not yet live) closes it too.
//!
//! Checking is a map look-up; nothing here does IO. Storing and broadcasting
//! revocations is `service::revocations`.

use super::{Principal, VerifiedToken, unix_now};
use consult_protocol::{ClinicId, UserId};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a "disconnect now" is remembered for the connections being set
/// up when it came: far longer than a `hello` may take.
const DISCONNECT_MEMORY: Duration = Duration::from_secs(60);

/// One revocation, as stored and as broadcast between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One token, by its `jti`.
    Token {
        /// The token id.
        jti: String,
        /// The token's `exp` when known; the entry can be forgotten after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Every token of a user in a clinic issued at or before a time.
    User {
        /// The clinic.
        clinic: ClinicId,
        /// The user.
        user: UserId,
        /// Seconds since the epoch; tokens with `iat` at or before it are
        /// revoked.
        issued_before: u64,
    },
    /// Close a user's live sessions now; their tokens stay valid. Not
    /// stored.
    Disconnect {
        /// The clinic.
        clinic: ClinicId,
        /// The user.
        user: UserId,
    },
}

/// A live session on this node: who, on which token, and how to close it.
#[derive(Debug)]
struct Live {
    principal: Principal,
    jti: Option<String>,
    issued_at: u64,
    close: CancellationToken,
}

/// The revocations in force and this node's live sessions.
#[derive(Debug, Default)]
pub struct Revocations {
    tokens: DashMap<String, Option<u64>>,
    users: DashMap<(ClinicId, UserId), u64>,
    live: DashMap<u64, Live>,
    /// When each (clinic, user) was last disconnected, for
    /// [`DISCONNECT_MEMORY`].
    disconnects: DashMap<(ClinicId, UserId), Instant>,
}

impl Revocations {
    /// Nothing revoked, no sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when `token` is covered by a revocation in force.
    pub fn is_revoked(&self, token: &VerifiedToken) -> bool {
        let by_id = token
            .jti
            .as_ref()
            .is_some_and(|jti| self.tokens.contains_key(jti));
        by_id
            || self
                .users
                .get(&(token.principal.clinic.clone(), token.principal.user.clone()))
                .is_some_and(|before| token.issued_at <= *before)
    }

    /// Puts `revocation` in force and closes this node's live sessions it
    /// covers. Returns how many sessions were closed.
    pub fn apply(&self, revocation: &Revocation) -> usize {
        match revocation {
            Revocation::Token { jti, expires_at } => {
                self.tokens.insert(jti.clone(), *expires_at);
            }
            Revocation::User {
                clinic,
                user,
                issued_before,
            } => {
                let mut entry = self
                    .users
                    .entry((clinic.clone(), user.clone()))
                    .or_insert(0);
                *entry = (*entry).max(*issued_before);
            }
            Revocation::Disconnect { clinic, user } => {
                let now = Instant::now();
                self.disconnects
                    .retain(|_, at| now.saturating_duration_since(*at) < DISCONNECT_MEMORY);
                self.disconnects.insert((clinic.clone(), user.clone()), now);
            }
        }
        let mut closed = 0;
        for live in &self.live {
            if covers(revocation, &live) {
                live.close.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Records (or updates, after a `refresh`) the token live session
    /// `conn_id` runs on, checked at `checked_at`; `close` is cancelled when
    /// it gets revoked or its user disconnected, including by a revocation
    /// or a disconnect that came in while the session was being set up,
    /// after its token was checked: [`apply`](Self::apply) records either
    /// before it looks at the live sessions, and this records the session
    /// before it looks at them, so one of the two always sees the other. A
    /// disconnect before `checked_at` does not close a session set up after
    /// it.
    pub fn track(
        &self,
        conn_id: u64,
        token: &VerifiedToken,
        close: &CancellationToken,
        checked_at: Instant,
    ) {
        let live = Live {
            principal: token.principal.clone(),
            jti: token.jti.clone(),
            issued_at: token.issued_at,
            close: close.clone(),
        };
        self.live.insert(conn_id, live);
        let principal = &token.principal;
        let disconnected_since_checked = self
            .disconnects
            .get(&(principal.clinic.clone(), principal.user.clone()))
            .is_some_and(|at| *at >= checked_at);
        if self.is_revoked(token) || disconnected_since_checked {
            close.cancel();
        }
    }

    /// Forgets a session that ended.
    pub fn untrack(&self, conn_id: u64) {
        self.live.remove(&conn_id);
    }

    /// Forgets revoked token ids whose tokens expired more than
    /// `leeway_secs` ago: they can no longer be used anyway.
    pub fn prune(&self, leeway_secs: u64) {
        let now = unix_now();
        self.tokens.retain(|_, expires_at| {
            expires_at.is_none_or(|exp| exp.saturating_add(leeway_secs) >= now)
        });
    }
}

fn covers(revocation: &Revocation, live: &Live) -> bool {
    match revocation {
        Revocation::Token { jti, .. } => live.jti.as_deref() == Some(jti.as_str()),
        Revocation::User {
            clinic,
            user,
            issued_before,
        } => {
            live.principal.clinic == *clinic
                && live.principal.user == *user
                && live.issued_at <= *issued_before
        }
        Revocation::Disconnect { clinic, user } => {
            live.principal.clinic == *clinic && live.principal.user == *user
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consult_protocol::Role;

    fn token(user: &str, clinic: &str, jti: Option<&str>, iat: u64) -> VerifiedToken {
        VerifiedToken {
            principal: Principal {
                user: UserId(user.into()),
                role: Role::Provider,
                clinic: ClinicId(clinic.into()),
            },
            expires_at: iat + 60,
            issued_at: iat,
            jti: jti.map(Into::into),
        }
    }

    #[test]
    fn a_revoked_jti_is_refused_and_others_are_not() {
        let revocations = Revocations::new();
        revocations.apply(&Revocation::Token {
            jti: "j1".into(),
            expires_at: None,
        });
        assert!(revocations.is_revoked(&token("dr", "c", Some("j1"), 10)));
        assert!(!revocations.is_revoked(&token("dr", "c", Some("j2"), 10)));
        assert!(!revocations.is_revoked(&token("dr", "c", None, 10)));
    }

    #[test]
    fn a_user_revocation_covers_older_tokens_of_that_clinic_only() {
        let revocations = Revocations::new();
        revocations.apply(&Revocation::User {
            clinic: ClinicId("c".into()),
            user: UserId("dr".into()),
            issued_before: 100,
        });
        assert!(revocations.is_revoked(&token("dr", "c", None, 100)));
        assert!(!revocations.is_revoked(&token("dr", "c", None, 101)));
        assert!(!revocations.is_revoked(&token("dr", "other", None, 50)));
        assert!(!revocations.is_revoked(&token("dr2", "c", None, 50)));
    }

    #[test]
    fn applying_closes_the_live_sessions_covered() {
        let revocations = Revocations::new();
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        revocations.track(1, &token("dr", "c", Some("j1"), 10), &a, Instant::now());
        revocations.track(2, &token("dr", "other", Some("j2"), 10), &b, Instant::now());
        let closed = revocations.apply(&Revocation::Disconnect {
            clinic: ClinicId("c".into()),
            user: UserId("dr".into()),
        });
        assert_eq!(closed, 1);
        assert!(a.is_cancelled() && !b.is_cancelled());
        assert!(!revocations.is_revoked(&token("dr", "c", Some("j1"), 10)));
    }

    #[test]
    fn a_disconnect_during_set_up_closes_the_session_and_not_one_set_up_after_it() {
        let revocations = Revocations::new();
        let checked_at = Instant::now();
        // The disconnect comes after the token was checked and before the
        // session is live: `apply` finds nothing to close.
        let closed = revocations.apply(&Revocation::Disconnect {
            clinic: ClinicId("c".into()),
            user: UserId("dr".into()),
        });
        assert_eq!(closed, 0);
        let (during, other_clinic) = (CancellationToken::new(), CancellationToken::new());
        revocations.track(1, &token("dr", "c", Some("j1"), 10), &during, checked_at);
        revocations.track(
            2,
            &token("dr", "other", Some("j2"), 10),
            &other_clinic,
            checked_at,
        );
        assert!(
            during.is_cancelled(),
            "the session set up meanwhile is closed"
        );
        assert!(!other_clinic.is_cancelled(), "another clinic's user is not");

        // A connection whose token is checked after the disconnect stays: the
        // token is still valid.
        std::thread::sleep(Duration::from_millis(2));
        let after = CancellationToken::new();
        revocations.track(3, &token("dr", "c", Some("j1"), 10), &after, Instant::now());
        assert!(!after.is_cancelled());
        assert!(!revocations.is_revoked(&token("dr", "c", Some("j1"), 10)));
    }

    #[test]
    fn a_session_tracked_after_its_token_was_revoked_is_closed_at_once() {
        let revocations = Revocations::new();
        revocations.apply(&Revocation::Token {
            jti: "j1".into(),
            expires_at: None,
        });
        revocations.apply(&Revocation::User {
            clinic: ClinicId("c".into()),
            user: UserId("dr2".into()),
            issued_before: 100,
        });
        let (by_id, by_user, other) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        revocations.track(1, &token("dr", "c", Some("j1"), 10), &by_id, Instant::now());
        revocations.track(2, &token("dr2", "c", None, 100), &by_user, Instant::now());
        revocations.track(3, &token("dr", "c", Some("j2"), 10), &other, Instant::now());
        assert!(by_id.is_cancelled());
        assert!(by_user.is_cancelled());
        assert!(!other.is_cancelled());
    }

    #[test]
    fn pruning_forgets_only_expired_ids() {
        let revocations = Revocations::new();
        revocations.apply(&Revocation::Token {
            jti: "old".into(),
            expires_at: Some(1),
        });
        revocations.apply(&Revocation::Token {
            jti: "new".into(),
            expires_at: Some(unix_now() + 60),
        });
        revocations.prune(0);
        assert!(!revocations.is_revoked(&token("dr", "c", Some("old"), 0)));
        assert!(revocations.is_revoked(&token("dr", "c", Some("new"), 0)));
    }
}
