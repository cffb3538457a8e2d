//! Who is connected, as the offline fallback asks it: "does this person (a
//! user within one clinic, [`PersonKey`]) have a
//! live connection anywhere, and is any of its apps in the foreground?". The
//! local implementation counts this node's connections; a cluster
//! implementation answers for every node.

mod live_nodes;
mod local;
mod redis;

pub use self::redis::RedisPresence;
pub use local::LocalPresence;

use crate::domain::PersonKey;

/// What presence knows of one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceStatus {
    /// At least one live connection.
    pub online: bool,
    /// At least one connection whose app is in the foreground.
    pub foreground: bool,
}

impl PresenceStatus {
    /// Either view's: online or in the foreground if either is.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self {
            online: self.online || other.online,
            foreground: self.foreground || other.foreground,
        }
    }
}

/// The presence registry this node uses.
#[derive(Debug, Clone)]
pub enum Presence {
    /// This node only.
    Local(LocalPresence),
    /// The whole cluster, through Redis.
    Redis(RedisPresence),
}

impl Presence {
    /// True while another running node uses this node's `broker.node_id`
    /// (Redis only; see [`crate::broker::NodeClaim`]).
    pub fn node_id_in_use_elsewhere(&self) -> bool {
        match self {
            Self::Local(_) => false,
            Self::Redis(presence) => presence.node_id_in_use_elsewhere(),
        }
    }

    /// Records a new authenticated connection of `user`, in the foreground
    /// or not.
    pub async fn connected(&self, user: &PersonKey, foreground: bool) {
        match self {
            Self::Local(presence) => presence.connected(user, foreground),
            Self::Redis(presence) => presence.connected(user, foreground).await,
        }
    }

    /// Records that one connection of `user` closed.
    pub async fn disconnected(&self, user: &PersonKey, foreground: bool) {
        match self {
            Self::Local(presence) => presence.disconnected(user, foreground),
            Self::Redis(presence) => presence.disconnected(user, foreground).await,
        }
    }

    /// Records that one connection of `user` moved to the foreground or the
    /// background.
    pub async fn set_foreground(&self, user: &PersonKey, foreground: bool) {
        match self {
            Self::Local(presence) => presence.set_foreground(user, foreground),
            Self::Redis(presence) => presence.set_foreground(user, foreground).await,
        }
    }

    /// What is known of `user` now.
    pub async fn status(&self, user: &PersonKey) -> PresenceStatus {
        match self {
            Self::Local(presence) => presence.status(user),
            Self::Redis(presence) => presence.status(user).await,
        }
    }

    /// True when `user` has at least one live connection.
    pub async fn is_online(&self, user: &PersonKey) -> bool {
        self.status(user).await.online
    }
}
