//! What must survive a reconnect: the rooms the caller joined with the last
//! sequence number delivered in each, and the dashboard watch.
//!
//! Pure bookkeeping, no I/O: the caller's commands record intent here, the
//! supervisor asks it which `message` frames to deliver and what to restore
//! on a new connection.

use consult_protocol::{ConsultationId, Seq, ServerFrame, UserId};
use std::collections::BTreeMap;

/// One joined room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RoomCursor {
    /// The highest `seq` delivered to the caller (or the `since` it joined
    /// with); later `message` frames at or below it are duplicates.
    delivered: Option<Seq>,
    /// The room's `last_seq` in the latest `joined` answer: every message up
    /// to it was replayed before the answer or predates a join without
    /// `since`, so resuming from it leaves no gap.
    baseline: Option<Seq>,
}

impl RoomCursor {
    /// The `since` for joining again: everything up to it is accounted for.
    pub(crate) fn resume_since(self) -> Option<Seq> {
        self.delivered.max(self.baseline)
    }
}

/// Rooms and dashboard to restore, and the de-duplication cursors.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    rooms: BTreeMap<ConsultationId, RoomCursor>,
    /// `Some(provider filter)` while the dashboard is watched.
    dashboard: Option<Option<UserId>>,
}

/// What a new connection must restore, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumePlan {
    pub(crate) rooms: Vec<(ConsultationId, Option<Seq>)>,
    pub(crate) dashboard: Option<Option<UserId>>,
}

impl Tracker {
    /// Records a join about to be sent; returns the previous entry, for
    /// [`Tracker::restore`] if the join fails. With `since`, the caller asks
    /// for everything after it, so the cursor moves there (even backwards).
    pub(crate) fn joining(
        &mut self,
        consultation: &ConsultationId,
        since: Option<Seq>,
    ) -> Option<RoomCursor> {
        let previous = self.rooms.get(consultation).copied();
        let cursor = self.rooms.entry(consultation.clone()).or_default();
        if since.is_some() {
            cursor.delivered = since;
        }
        previous
    }

    /// Records a `joined` answer.
    pub(crate) fn joined(&mut self, consultation: &ConsultationId, last_seq: Seq) {
        let cursor = self.rooms.entry(consultation.clone()).or_default();
        cursor.baseline = cursor.baseline.max(Some(last_seq));
    }

    /// Undoes [`Tracker::joining`] after a failed join.
    pub(crate) fn restore(&mut self, consultation: &ConsultationId, previous: Option<RoomCursor>) {
        match previous {
            Some(cursor) => {
                self.rooms.insert(consultation.clone(), cursor);
            }
            None => {
                self.rooms.remove(consultation);
            }
        }
    }

    /// Forgets a room: it is not joined again after a reconnect.
    pub(crate) fn left(&mut self, consultation: &ConsultationId) {
        self.rooms.remove(consultation);
    }

    /// Records the dashboard watch (`Some(filter)`) or its end (`None`).
    pub(crate) fn set_dashboard(&mut self, watch: Option<Option<UserId>>) {
        self.dashboard = watch;
    }

    /// Whether to deliver `frame`: false for a `message` of a tracked room
    /// at or below what was delivered. Advances the room's cursor.
    pub(crate) fn admit(&mut self, frame: &ServerFrame) -> bool {
        let ServerFrame::Message { message } = frame else {
            return true;
        };
        let Some(cursor) = self.rooms.get_mut(&message.consultation_id) else {
            return true;
        };
        if cursor
            .delivered
            .is_some_and(|delivered| message.seq <= delivered)
        {
            return false;
        }
        cursor.delivered = Some(message.seq);
        true
    }

    /// The rooms (with their `since`) and dashboard watch to restore.
    pub(crate) fn plan(&self) -> ResumePlan {
        ResumePlan {
            rooms: self
                .rooms
                .iter()
                .map(|(consultation, cursor)| (consultation.clone(), cursor.resume_since()))
                .collect(),
            dashboard: self.dashboard.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
