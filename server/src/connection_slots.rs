//! Caps on open WebSocket connections: in all and per IP address, taken
//! before the upgrade, so a client turned away gets an HTTP answer it can
//! read (503 or 429 with a JSON body); and per user, taken at `hello` (the
//! `too_many_connections` error, then close 4007). Each place is given back
//! when its connection's task ends. The cap in all stays below the
//! process's open-file limit, so the hub keeps descriptors for health
//! checks, metrics, the REST API and its database while it is full.

use crate::domain::PersonKey;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node holds its cap of connections.
    NodeFull,
    /// The address holds its cap of connections.
    AddressFull,
}

/// The node's connection counts.
#[derive(Debug)]
pub struct ConnectionSlots {
    cap: u64,
    per_address: u64,
    per_user: u64,
    open: AtomicU64,
    by_address: DashMap<IpAddr, u64>,
    by_user: DashMap<PersonKey, u64>,
}

impl ConnectionSlots {
    /// Slots for `cap` connections, at most `per_address` from one address
    /// and `per_user` for one user (0: no such cap).
    #[must_use]
    pub fn new(cap: u64, per_address: u64, per_user: u64) -> Self {
        Self {
            cap,
            per_address,
            per_user,
            open: AtomicU64::new(0),
            by_address: DashMap::new(),
            by_user: DashMap::new(),
        }
    }

    /// Takes one of `person`'s places, or `None` when the user holds its
    /// cap of connections on this node.
    #[must_use]
    pub fn take_user(self: &Arc<Self>, person: &PersonKey) -> Option<UserSlot> {
        if self.per_user == 0 {
            return Some(UserSlot {
                slots: Arc::clone(self),
                person: None,
            });
        }
        let mut count = self.by_user.entry(person.clone()).or_insert(0);
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            slots: Arc::clone(self),
            person: Some(person.clone()),
        })
    }

    /// The cap in all.
    #[must_use]
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection from `address` (unknown in tests that
    /// drive the router without a socket), or says why not.
    ///
    /// # Errors
    ///
    /// [`Refused`] when a cap is reached.
    pub fn take(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Slot, Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::NodeFull);
        }
        if let (Some(ip), true) = (address, self.per_address > 0) {
            let mut count = self.by_address.entry(ip).or_insert(0);
            if *count >= self.per_address {
                drop(count);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::AddressFull);
            }
            *count += 1;
        }
        metrics::gauge!("consult_connection_slots_open").set(self.open() as f64);
        Ok(Slot {
            slots: Arc::clone(self),
            address: address.filter(|_| self.per_address > 0),
        })
    }

    fn give_back(&self, address: Option<IpAddr>) {
        if let Some(ip) = address {
            let emptied = match self.by_address.get_mut(&ip) {
                Some(mut count) => {
                    *count = count.saturating_sub(1);
                    *count == 0
                }
                None => false,
            };
            if emptied {
                self.by_address.remove_if(&ip, |_, count| *count == 0);
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("consult_connection_slots_open").set(self.open() as f64);
    }
}

/// One user's connection's place; given back when dropped.
#[derive(Debug)]
pub struct UserSlot {
    slots: Arc<ConnectionSlots>,
    person: Option<PersonKey>,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let Some(person) = self.person.take() else {
            return;
        };
        let emptied = match self.slots.by_user.get_mut(&person) {
            Some(mut count) => {
                *count = count.saturating_sub(1);
                *count == 0
            }
            None => false,
        };
        if emptied {
            self.slots
                .by_user
                .remove_if(&person, |_, count| *count == 0);
        }
    }
}

/// One connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn the_node_cap_refuses_past_it_and_a_closed_connection_frees_its_slot() {
        let slots = Arc::new(ConnectionSlots::new(2, 0, 0));
        let first = slots.take(ip(1)).unwrap();
        let _second = slots.take(ip(2)).unwrap();
        assert_eq!(slots.take(ip(3)).unwrap_err(), Refused::NodeFull);
        drop(first);
        assert!(slots.take(ip(3)).is_ok());
    }

    #[test]
    fn the_address_cap_counts_each_address_apart() {
        let slots = Arc::new(ConnectionSlots::new(10, 2, 0));
        let a1 = slots.take(ip(1)).unwrap();
        let _a2 = slots.take(ip(1)).unwrap();
        assert_eq!(slots.take(ip(1)).unwrap_err(), Refused::AddressFull);
        assert_eq!(slots.open(), 2, "a refusal holds no slot");
        let _b = slots.take(ip(2)).unwrap();
        drop(a1);
        let _a3 = slots.take(ip(1)).unwrap();
        assert_eq!(slots.open(), 3);
    }

    #[test]
    fn a_user_holds_at_most_its_cap_of_connections_and_others_are_counted_apart() {
        let slots = Arc::new(ConnectionSlots::new(10, 0, 2));
        let alice = PersonKey::new(&"c1".into(), &"alice".into());
        let same_id_elsewhere = PersonKey::new(&"c2".into(), &"alice".into());
        let first = slots.take_user(&alice).unwrap();
        let _second = slots.take_user(&alice).unwrap();
        assert!(slots.take_user(&alice).is_none());
        assert!(slots.take_user(&same_id_elsewhere).is_some());
        drop(first);
        let _third = slots.take_user(&alice).unwrap();
        assert!(slots.take_user(&alice).is_none());
    }

    #[test]
    fn no_user_cap_when_it_is_zero_and_users_are_forgotten_when_their_last_closes() {
        let slots = Arc::new(ConnectionSlots::new(10, 0, 0));
        let alice = PersonKey::new(&"c1".into(), &"alice".into());
        let held: Vec<UserSlot> = (0..50).filter_map(|_| slots.take_user(&alice)).collect();
        assert_eq!(held.len(), 50);
        let capped = Arc::new(ConnectionSlots::new(10, 0, 1));
        drop(capped.take_user(&alice).unwrap());
        assert!(capped.by_user.is_empty());
    }

    #[test]
    fn addresses_are_forgotten_when_their_last_connection_closes() {
        let slots = Arc::new(ConnectionSlots::new(10, 1, 0));
        drop(slots.take(ip(1)).unwrap());
        assert!(slots.by_address.is_empty());
        assert_eq!(slots.open(), 0);
    }
}
