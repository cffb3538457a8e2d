//! Presence for one node: per user, live connections and how many of them
//! are in the foreground.

use super::PresenceStatus;
use crate::domain::PersonKey;
use dashmap::DashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    connections: usize,
    foreground: usize,
}

/// Connection counts per user on this node.
#[derive(Debug, Clone, Default)]
pub struct LocalPresence {
    counts: Arc<DashMap<PersonKey, Counts>>,
}

impl LocalPresence {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn connected(&self, user: &PersonKey, foreground: bool) {
        let mut counts = self.counts.entry(user.clone()).or_default();
        counts.connections += 1;
        counts.foreground += usize::from(foreground);
    }

    pub(super) fn disconnected(&self, user: &PersonKey, foreground: bool) {
        if let Some(mut counts) = self.counts.get_mut(user) {
            counts.connections = counts.connections.saturating_sub(1);
            if foreground {
                counts.foreground = counts.foreground.saturating_sub(1);
            }
        }
        self.counts
            .remove_if(user, |_, counts| counts.connections == 0);
    }

    pub(super) fn set_foreground(&self, user: &PersonKey, foreground: bool) {
        if let Some(mut counts) = self.counts.get_mut(user) {
            if foreground {
                counts.foreground = (counts.foreground + 1).min(counts.connections);
            } else {
                counts.foreground = counts.foreground.saturating_sub(1);
            }
        }
    }

    /// `(connections, foreground)` of `user` on this node.
    pub(super) fn counts(&self, user: &PersonKey) -> (usize, usize) {
        self.counts
            .get(user)
            .map_or((0, 0), |counts| (counts.connections, counts.foreground))
    }

    /// Every user connected to this node, with its counts.
    pub(super) fn users(&self) -> Vec<(PersonKey, (usize, usize))> {
        self.counts
            .iter()
            .map(|entry| (entry.key().clone(), (entry.connections, entry.foreground)))
            .collect()
    }

    pub(super) fn status(&self, user: &PersonKey) -> PresenceStatus {
        self.counts
            .get(user)
            .map(|counts| PresenceStatus {
                online: counts.connections > 0,
                foreground: counts.foreground > 0,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_while_any_connection_lives() {
        let presence = LocalPresence::new();
        let user = PersonKey::new(&"riverside".into(), &"pat".into());
        presence.connected(&user, true);
        presence.connected(&user, true);
        presence.disconnected(&user, true);
        assert!(presence.status(&user).online);
        presence.disconnected(&user, true);
        assert_eq!(presence.status(&user), PresenceStatus::default());
        presence.disconnected(&user, false);
        assert!(!presence.status(&user).online);
    }

    #[test]
    fn foreground_follows_the_apps_visibility() {
        let presence = LocalPresence::new();
        let user = PersonKey::new(&"riverside".into(), &"pat".into());
        presence.connected(&user, true);
        presence.set_foreground(&user, false);
        assert_eq!(
            presence.status(&user),
            PresenceStatus {
                online: true,
                foreground: false
            }
        );
        presence.set_foreground(&user, true);
        presence.set_foreground(&user, true);
        assert!(presence.status(&user).foreground);
        presence.disconnected(&user, true);
        assert!(!presence.status(&user).online);
    }
}
