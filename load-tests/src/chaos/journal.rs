//! The campaign's record: every operation the workload issued with its
//! outcome, every frame its clients received (kind, room, `seq`), every
//! fault injected, and the anomalies seen as frames arrived. Each entry is
//! stamped in milliseconds since the start. Entries hold ids, kinds and
//! numbers only, never message text or tokens. The checker reads this and
//! the hub's REST answers.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// `ok`; for sends, the `seq` and whether it was a duplicate.
    Ok {
        /// The message's `seq`, for sends.
        seq: Option<u64>,
        /// The hub had stored this `client_msg_id` already.
        duplicate: bool,
    },
    /// `error` with this code: nothing was stored.
    Refused {
        /// The error code.
        code: String,
    },
    /// No answer (timeout, connection lost): stored or not, nobody knows.
    Unknown {
        /// What happened, as the client error's kind.
        error: String,
    },
}

/// One command.
#[derive(Debug, Clone, Serialize)]
pub struct OpRecord {
    /// When it was answered, ms.
    pub at_ms: u64,
    /// The actor (client) index.
    pub actor: usize,
    /// The node its connection went to (the last it tried, when none is open).
    pub node: Option<usize>,
    /// The room index.
    pub room: usize,
    /// `chat`, `quick`, `alert`, `ack`, `join`, `offline`.
    pub kind: &'static str,
    /// For sends, the idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One frame received.
#[derive(Debug, Clone, Serialize)]
pub struct FrameRecord {
    /// When, ms.
    pub at_ms: u64,
    /// The actor that received it.
    pub actor: usize,
    /// Which of the actor's connections (1, 2, …).
    pub connection: u32,
    /// The frame's `type`.
    pub kind: &'static str,
    /// The room it named, as a room index (`None` when it named none, or a
    /// room outside the campaign).
    pub room: Option<usize>,
    /// Its `seq`, for messages and receipts.
    pub seq: Option<u64>,
}

/// One fault, from injection to healing.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Injected at, ms.
    pub at_ms: u64,
    /// Healed at, ms (equal to `at_ms` for instant faults).
    pub until_ms: u64,
    /// Its kind (`kill_node`, `link_partition`, …).
    pub kind: &'static str,
    /// What it hit (`node 1`, `node 2 → postgres`, `redis`, `provider`).
    pub target: String,
    /// The node it hit, if one.
    pub node: Option<usize>,
    /// A detail (delay, loss share, shutdown time, stop mode).
    pub detail: String,
}

/// Something the checker or the workload found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    /// The rule broken (`gap`, `lost_ack`, `duplicate_send`, …).
    pub kind: &'static str,
    /// Ids and numbers saying where.
    pub detail: String,
}

/// The whole record.
#[derive(Debug, Default, Serialize)]
pub struct JournalData {
    /// Commands.
    pub ops: Vec<OpRecord>,
    /// Frames received.
    pub frames: Vec<FrameRecord>,
    /// Faults injected.
    pub faults: Vec<FaultRecord>,
    /// Anomalies found while running.
    pub anomalies: Vec<Anomaly>,
    /// Every request the provider received (copied in at the end).
    pub provider_requests: Vec<super::provider::ProviderRequest>,
}

/// The shared journal.
#[derive(Debug, Clone)]
pub struct Journal {
    started: Instant,
    data: Arc<Mutex<JournalData>>,
}

impl Journal {
    /// A journal whose clock starts at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            data: Arc::new(Mutex::new(JournalData::default())),
        }
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When the clock started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The record, locked. A poisoned lock (a panicking writer) still
    /// gives the data.
    pub fn lock(&self) -> MutexGuard<'_, JournalData> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an anomaly.
    pub fn anomaly(&self, kind: &'static str, detail: String) {
        tracing::warn!(kind, %detail, "anomaly");
        self.lock().anomalies.push(Anomaly { kind, detail });
    }

    /// Records a fault.
    pub fn fault(&self, record: FaultRecord) {
        tracing::info!(kind = record.kind, target = %record.target, detail = %record.detail, "fault");
        self.lock().faults.push(record);
    }
}

/// Counts of `items` by a key.
pub fn count_by<'a, T: 'a>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> String,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(key(item)).or_insert(0) += 1;
    }
    counts
}
