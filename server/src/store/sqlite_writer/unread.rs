//! The provider's unread count in a patient message's dashboard row, kept
//! by the writer per consultation so that each new patient message adds one
//! instead of counting the whole backlog again.
//!
//! `unread` is the patient's messages after the provider's read receipt.
//! Counting them is a walk over every such message, so while a provider does
//! not read (a patient writing from the waiting room) each message cost more
//! than the last, on the one writer thread. The writer remembers, per
//! consultation, the receipt it counted from, the last `seq` it accounted
//! for and the count. A patient message at `seq` adds one to the count when
//! the receipt is unchanged and the memo accounted for `seq - 1`; a staff
//! message at `seq` only moves the memo on. Anything else (another node's
//! message in between, a new receipt, a consultation not in the memo)
//! counts again from the store. The memo is emptied when a batch fails
//! (its rows were rolled back) and when it reaches
//! [`CAPACITY`](super::super::unread_memo::CAPACITY) consultations.

use super::super::StoreError;
use super::super::consultations;
use super::super::unread_memo::{Counted, CountedByConsultation};
use rusqlite::{Transaction, params};
use std::sync::LazyLock;

/// The patient's messages after `?2` in consultation `?1`.
static PATIENT_MESSAGES_AFTER: LazyLock<String> =
    LazyLock::new(|| consultations::patient_messages_after_sql("?1", "?2"));

/// The writer's unread counts, by consultation id.
#[derive(Debug, Default)]
pub(super) struct UnreadMemo {
    counted: CountedByConsultation<String>,
}

impl UnreadMemo {
    /// The unread count once the patient message at `seq` is stored (inside
    /// `txn`, after its insert), the provider having read up to `read_seq`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the count must be read and cannot be.
    pub(super) fn after_patient_message(
        &mut self,
        txn: &Transaction<'_>,
        consultation: &str,
        seq: i64,
        read_seq: i64,
    ) -> Result<i64, StoreError> {
        let unread = match self.counted.get(consultation) {
            Some(counted) if counted.read_seq == read_seq && counted.last_seq + 1 == seq => {
                counted.unread + 1
            }
            _ => txn
                .prepare_cached(&PATIENT_MESSAGES_AFTER)?
                .query_row(params![consultation, read_seq], |row| row.get(0))?,
        };
        self.remember(
            consultation,
            Counted {
                read_seq,
                last_seq: seq,
                unread,
            },
        );
        Ok(unread)
    }

    /// Notes that a staff message took `seq` (it leaves the count as it is).
    pub(super) fn after_staff_message(&mut self, consultation: &str, seq: i64) {
        match self.counted.get_mut(consultation) {
            Some(counted) if counted.last_seq + 1 == seq => counted.last_seq = seq,
            Some(_) => {
                self.counted.remove(consultation);
            }
            None => {}
        }
    }

    /// Forgets every count (a batch was rolled back).
    pub(super) fn clear(&mut self) {
        self.counted.clear();
    }

    fn remember(&mut self, consultation: &str, counted: Counted) {
        self.counted.remember(consultation, counted);
    }
}
