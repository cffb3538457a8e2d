//! The `client_msg_id`s each consultation's senders have used, kept by the
//! writer so that a retried send is recognised without a unique index on
//! `(consultation_id, sender_id, client_msg_id)` (SQLite has none since
//! migration `m20261206_000011`: maintaining it cost a leaf page or more of
//! every message's log).
//!
//! Per consultation the memo holds a hash of each `(sender, client_msg_id)`
//! stored up to a `seq` it has accounted for. Before a message is appended
//! the writer has read the consultation's `last_seq` in its transaction
//! (`BEGIN IMMEDIATE`: every other writer's commit is visible); the memo
//! first reads the keys of any messages after the `seq` it accounted for
//! (all of them, the first time it meets the consultation; those another
//! node stored on the same file, later), so it never answers from a stale
//! view. A hash found means "maybe used": the writer then reads the
//! earlier message itself, and a hash that matched another key (or a
//! message retention has since removed) is treated as unused. A hash not
//! found means "not used", which is what spares the index.
//!
//! The memo is emptied when a batch fails or the writer's loop starts again
//! after a panic (rows it holds may have been rolled back, and another node
//! may since have stored other rows under the same `seq`s), and when it
//! holds [`CAPACITY`] keys; a consultation it no longer holds is read again
//! when next met.

use super::super::StoreError;
use rusqlite::{Transaction, params};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

/// Keys remembered before the memo starts again (about 16 bytes each, plus
/// each consultation's entry).
pub(super) const CAPACITY: usize = 1_000_000;

/// The keys of the messages of consultation `?1` with `seq` in
/// `(?2, ?3]`: a range of the `(consultation_id, seq)` index.
const KEYS_BETWEEN: &str = "SELECT sender_id, client_msg_id FROM messages \
     WHERE consultation_id = ?1 AND seq > ?2 AND seq <= ?3 AND client_msg_id IS NOT NULL";

/// One consultation's keys.
#[derive(Debug, Default)]
struct Consultation {
    /// Every message up to this `seq` is accounted for.
    upto: i64,
    /// Hashes of `(sender, client_msg_id)`.
    keys: HashSet<u64>,
}

/// The writer's memo of used `client_msg_id`s, by consultation id.
#[derive(Debug, Default)]
pub(super) struct SentKeys {
    consultations: HashMap<String, Consultation>,
    hasher: RandomState,
    len: usize,
}

impl SentKeys {
    /// Whether `sender` may already have used `client_msg_id` in
    /// `consultation`, whose `last_seq` in `txn` is `last_seq`: `false` is
    /// certain, `true` must be checked against the stored message. Called
    /// for every message, with or without a `client_msg_id`, so that the
    /// memo accounts for each `seq` in turn.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the consultation's newer keys cannot be
    /// read.
    pub(super) fn maybe_used(
        &mut self,
        txn: &Transaction<'_>,
        consultation: &str,
        last_seq: i64,
        sender: &str,
        client_msg_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.catch_up(txn, consultation, last_seq)?;
        let Some(client_msg_id) = client_msg_id else {
            return Ok(false);
        };
        let key = self.hash(sender, client_msg_id);
        Ok(self
            .consultations
            .get(consultation)
            .is_some_and(|known| known.keys.contains(&key)))
    }

    /// Notes that the message at `seq` (the one after what
    /// [`maybe_used`](Self::maybe_used) accounted for) was stored with
    /// `client_msg_id`, if any.
    pub(super) fn stored(
        &mut self,
        consultation: &str,
        seq: i64,
        sender: &str,
        client_msg_id: Option<&str>,
    ) {
        let key = client_msg_id.map(|client_msg_id| self.hash(sender, client_msg_id));
        let Some(known) = self.consultations.get_mut(consultation) else {
            return;
        };
        if known.upto + 1 != seq {
            // Not the next message: read the consultation again when next met.
            self.len -= known.keys.len();
            self.consultations.remove(consultation);
            return;
        }
        known.upto = seq;
        if let Some(key) = key {
            if known.keys.insert(key) {
                self.len += 1;
            }
        }
    }

    /// Forgets every key (a batch was rolled back).
    pub(super) fn clear(&mut self) {
        self.consultations.clear();
        self.len = 0;
    }

    /// Reads the keys of the consultation's messages the memo has not
    /// accounted for, up to `last_seq`.
    fn catch_up(
        &mut self,
        txn: &Transaction<'_>,
        consultation: &str,
        last_seq: i64,
    ) -> Result<(), StoreError> {
        if self.len >= CAPACITY {
            self.clear();
        }
        let upto = match self.consultations.get(consultation) {
            Some(known) if known.upto == last_seq => return Ok(()),
            Some(known) if known.upto < last_seq => known.upto,
            // Ahead of the store (a rollback clears the memo, so this is
            // not expected): read it all again.
            Some(known) => {
                self.len -= known.keys.len();
                self.consultations.remove(consultation);
                0
            }
            None => 0,
        };
        let mut newer = Vec::new();
        {
            let mut statement = txn.prepare_cached(KEYS_BETWEEN)?;
            let mut rows = statement.query(params![consultation, upto, last_seq])?;
            while let Some(row) = rows.next()? {
                let sender: String = row.get(0)?;
                let client_msg_id: String = row.get(1)?;
                newer.push(self.hash(&sender, &client_msg_id));
            }
        }
        let known = self
            .consultations
            .entry(consultation.to_owned())
            .or_default();
        for key in newer {
            if known.keys.insert(key) {
                self.len += 1;
            }
        }
        known.upto = last_seq;
        Ok(())
    }

    /// The hash of one key (a string hashes with a terminator, so
    /// `("ab", "c")` and `("a", "bc")` differ).
    fn hash(&self, sender: &str, client_msg_id: &str) -> u64 {
        self.hasher.hash_one((sender, client_msg_id))
    }
}
