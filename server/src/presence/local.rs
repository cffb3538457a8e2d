//! Presence for one node: a count of live connections per user.

use consult_protocol::UserId;
use dashmap::DashMap;
use std::sync::Arc;

/// Connection counts per user on this node.
#[derive(Debug, Clone, Default)]
pub struct LocalPresence {
    counts: Arc<DashMap<UserId, usize>>,
}

impl LocalPresence {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn connected(&self, user: &UserId) {
        *self.counts.entry(user.clone()).or_insert(0) += 1;
    }

    pub(super) fn disconnected(&self, user: &UserId) {
        if let Some(mut count) = self.counts.get_mut(user) {
            *count = count.saturating_sub(1);
        }
        self.counts.remove_if(user, |_, count| *count == 0);
    }

    pub(super) fn is_online(&self, user: &UserId) -> bool {
        self.counts.get(user).is_some_and(|count| *count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_while_any_connection_lives() {
        let presence = LocalPresence::new();
        let user = UserId::from("pat");
        presence.connected(&user);
        presence.connected(&user);
        presence.disconnected(&user);
        assert!(presence.is_online(&user));
        presence.disconnected(&user);
        assert!(!presence.is_online(&user));
        presence.disconnected(&user);
        assert!(!presence.is_online(&user));
    }
}
