//! Who is connected, as the offline fallback asks it: "does this user have a
//! live connection anywhere?". The local implementation counts this node's
//! connections; a cluster implementation answers for every node.

mod local;

pub use local::LocalPresence;

use consult_protocol::UserId;

/// The presence registry this node uses.
#[derive(Debug, Clone)]
pub enum Presence {
    /// This node only.
    Local(LocalPresence),
}

impl Presence {
    /// Records a new authenticated connection of `user`.
    pub async fn connected(&self, user: &UserId) {
        match self {
            Self::Local(presence) => presence.connected(user),
        }
    }

    /// Records that one connection of `user` closed.
    pub async fn disconnected(&self, user: &UserId) {
        match self {
            Self::Local(presence) => presence.disconnected(user),
        }
    }

    /// True when `user` has at least one live connection.
    pub async fn is_online(&self, user: &UserId) -> bool {
        match self {
            Self::Local(presence) => presence.is_online(user),
        }
    }
}
