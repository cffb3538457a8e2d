//! What was counted of a consultation's unread messages, remembered per
//! consultation by the two places that carry the count on from one message
//! or read to the next: the SQLite writer (`sqlite_writer::unread`) and the
//! dashboard refresher ([`dashboard_rows`](super::dashboard_rows)).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Consultations remembered before a memo starts again (about 100 bytes
/// each).
pub const CAPACITY: usize = 65_536;

/// What was counted for one consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The provider's read receipt the count starts after.
    pub read_seq: i64,
    /// The last message the count accounts for.
    pub last_seq: i64,
    /// The patient's messages after `read_seq`, up to `last_seq`.
    pub unread: i64,
}

/// Counts by consultation (keyed by `K`), at most [`CAPACITY`]: remembering
/// one more empties the memo first.
#[derive(Debug)]
pub struct CountedByConsultation<K> {
    counted: HashMap<K, Counted>,
}

impl<K> Default for CountedByConsultation<K> {
    fn default() -> Self {
        Self {
            counted: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> CountedByConsultation<K> {
    /// What was counted for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&Counted>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counted.get(key)
    }

    /// What was counted for `key`, to change in place.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut Counted>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counted.get_mut(key)
    }

    /// Forgets `key`.
    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counted.remove(key);
    }

    /// Forgets every count.
    pub fn clear(&mut self) {
        self.counted.clear();
    }

    /// Consultations remembered.
    pub fn len(&self) -> usize {
        self.counted.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.counted.is_empty()
    }

    /// Remembers `counted` for `key` (owned only when it is new).
    pub fn remember<Q>(&mut self, key: &Q, counted: Counted)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(entry) = self.counted.get_mut(key) {
            *entry = counted;
            return;
        }
        if self.counted.len() >= CAPACITY {
            self.counted.clear();
        }
        self.counted.insert(key.to_owned(), counted);
    }
}
