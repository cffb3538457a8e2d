//! The checker: reads the journal, what each member received, what the
//! provider received, and what the hub stored (through its REST API), and
//! names every broken rule as an [`Anomaly`]:
//!
//! - `store_gap`, `duplicate_store`: a room's stored `seq`s are `1..=N`,
//!   and each `(sender, client_msg_id)` is stored once;
//! - `lost_ack`, `ack_seq_mismatch`: every `ok`-acknowledged message is
//!   stored, at the `seq` its `ok` gave;
//! - `refused_but_stored`: a message refused outright is not stored;
//! - `undelivered`, `seq_reused`: every member (all resume at the end)
//!   holds `1..=N`, and what it received at each `seq` is what is stored
//!   there (ordering, gaps and repeats are checked as frames arrive);
//! - `notification_not_final`: every notification row ends `sent`,
//!   `failed` or `cancelled`;
//! - `over_attempts`: no idempotency key reaches the provider more than
//!   `notify.max_attempts` times;
//! - `duplicate_send`: a key the provider accepted in time (so the hub saw
//!   the acceptance) is accepted again only after a fault that can cut
//!   between acceptance and the database write (the accepting node killed
//!   or drained, its database link faulted, PostgreSQL restarted, from 3 s
//!   before the first acceptance to 5 s after it). Such
//!   re-sends are counted as documented, not as anomalies; a key first
//!   accepted after the hub's timeout may be accepted again (the hub saw
//!   a timeout);
//! - `sent_without_provider`, `unknown_key`: a message has no more `sent`
//!   rows than keys the provider accepted for it, and every key the
//!   provider received belongs to a stored notification.

use super::journal::{Anomaly, FaultRecord, OpRecord, Outcome};
use super::provider::ProviderRequest;
use super::rest::{StoredMessage, StoredNotification};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A fault this close before an acceptance (ms) may still cut it off
/// (the request was on its way).
const EXCUSE_BEFORE_MS: u64 = 3000;
/// A fault this soon after an acceptance (ms) may still fall before the
/// write of `sent`: the worker retries that write for about 3 s.
const EXCUSE_AFTER_MS: u64 = 5000;

/// What the checker is given for one room.
#[derive(Debug)]
pub struct RoomFacts {
    /// The room's index.
    pub index: usize,
    /// Its consultation id.
    pub consultation: String,
    /// Its stored messages, in `seq` order.
    pub messages: Vec<StoredMessage>,
    /// Its notification rows.
    pub notifications: Vec<StoredNotification>,
}

/// What one member received, `seq` 1 up (`None` for a gap).
#[derive(Debug)]
pub struct MemberFacts {
    /// The actor's index.
    pub actor: usize,
    /// Its room.
    pub room: usize,
    /// `(sender, client_msg_id)` per `seq`.
    pub received: Vec<Option<(String, Option<String>)>>,
}

/// The checker's verdict besides the anomalies.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    /// Broken rules.
    pub anomalies: Vec<Anomaly>,
    /// Messages stored, all rooms.
    pub stored_messages: u64,
    /// Notification rows by final status.
    pub notifications_by_status: BTreeMap<String, u64>,
    /// Provider requests, and how many were accepted.
    pub provider_requests: u64,
    /// Provider requests answered 2xx.
    pub provider_accepted: u64,
    /// Keys accepted more than once, by the documented cause.
    pub documented_resends: BTreeMap<String, u64>,
    /// Most requests one key got.
    pub max_requests_per_key: u32,
}

/// Applies every rule.
pub fn check(
    rooms: &[RoomFacts],
    members: &[MemberFacts],
    ops: &[OpRecord],
    requests: &[ProviderRequest],
    faults: &[FaultRecord],
    max_attempts: u32,
) -> Findings {
    let mut findings = Findings::default();
    for room in rooms {
        check_store(room, &mut findings);
        check_acks(room, ops, &mut findings);
        for member in members.iter().filter(|member| member.room == room.index) {
            check_member(room, member, &mut findings);
        }
        for row in &room.notifications {
            *findings
                .notifications_by_status
                .entry(row.status.clone())
                .or_insert(0) += 1;
            if !matches!(row.status.as_str(), "sent" | "failed" | "cancelled") {
                findings.anomalies.push(Anomaly {
                    kind: "notification_not_final",
                    detail: format!(
                        "room {} notification {} is {} after {} attempts",
                        room.index, row.id, row.status, row.attempts
                    ),
                });
            }
        }
    }
    check_provider(rooms, requests, faults, max_attempts, &mut findings);
    findings
}

fn check_store(room: &RoomFacts, findings: &mut Findings) {
    findings.stored_messages += room.messages.len() as u64;
    for (position, message) in room.messages.iter().enumerate() {
        if message.seq != position as u64 + 1 {
            findings.anomalies.push(Anomaly {
                kind: "store_gap",
                detail: format!(
                    "room {}: stored seq {} at position {}",
                    room.index,
                    message.seq,
                    position + 1
                ),
            });
            break;
        }
    }
    let mut keys: HashMap<(&str, &str), u64> = HashMap::new();
    for message in &room.messages {
        if let Some(id) = &message.client_msg_id {
            let count = keys.entry((&message.sender, id)).or_insert(0);
            *count += 1;
            if *count == 2 {
                findings.anomalies.push(Anomaly {
                    kind: "duplicate_store",
                    detail: format!("room {}: client_msg_id {id} stored twice", room.index),
                });
            }
        }
    }
}

fn check_acks(room: &RoomFacts, ops: &[OpRecord], findings: &mut Findings) {
    let stored: HashMap<&str, u64> = room
        .messages
        .iter()
        .filter_map(|message| message.client_msg_id.as_deref().map(|id| (id, message.seq)))
        .collect();
    let mut by_id: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.room == room.index) {
        if let Some(id) = &op.client_msg_id {
            by_id.entry(id).or_default().push(&op.outcome);
        }
    }
    for (id, outcomes) in by_id {
        let acked: Vec<u64> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Ok { seq, .. } => *seq,
                _ => None,
            })
            .collect();
        match (acked.first(), stored.get(id)) {
            (Some(_), None) => findings.anomalies.push(Anomaly {
                kind: "lost_ack",
                detail: format!(
                    "room {}: {id} acknowledged with seq {acked:?} but not stored",
                    room.index
                ),
            }),
            (Some(_), Some(seq)) if acked.iter().any(|acked| acked != seq) => {
                findings.anomalies.push(Anomaly {
                    kind: "ack_seq_mismatch",
                    detail: format!(
                        "room {}: {id} acknowledged with seq {acked:?}, stored at {seq}",
                        room.index
                    ),
                });
            }
            (None, Some(seq))
                if outcomes
                    .iter()
                    .all(|outcome| matches!(outcome, Outcome::Refused { .. })) =>
            {
                findings.anomalies.push(Anomaly {
                    kind: "refused_but_stored",
                    detail: format!("room {}: {id} refused but stored at {seq}", room.index),
                });
            }
            _ => {}
        }
    }
}

fn check_member(room: &RoomFacts, member: &MemberFacts, findings: &mut Findings) {
    let stored = room.messages.len();
    if member.received.len() < stored {
        findings.anomalies.push(Anomaly {
            kind: "undelivered",
            detail: format!(
                "room {}: actor {} holds {} of {stored} messages",
                room.index,
                member.actor,
                member.received.len()
            ),
        });
    }
    for (position, received) in member.received.iter().enumerate() {
        let Some((sender, id)) = received else {
            continue;
        };
        let matches = room
            .messages
            .get(position)
            .is_some_and(|message| &message.sender == sender && &message.client_msg_id == id);
        if !matches {
            findings.anomalies.push(Anomaly {
                kind: "seq_reused",
                detail: format!(
                    "room {}: actor {} received seq {} as {:?}, stored is {:?}",
                    room.index,
                    member.actor,
                    position + 1,
                    id,
                    room.messages
                        .get(position)
                        .map(|message| message.client_msg_id.clone())
                ),
            });
        }
    }
}

fn check_provider(
    rooms: &[RoomFacts],
    requests: &[ProviderRequest],
    faults: &[FaultRecord],
    max_attempts: u32,
    findings: &mut Findings,
) {
    findings.provider_requests = requests.len() as u64;
    findings.provider_accepted = requests.iter().filter(|request| request.accepted).count() as u64;
    let mut by_key: BTreeMap<&str, Vec<&ProviderRequest>> = BTreeMap::new();
    for request in requests {
        by_key.entry(&request.key).or_default().push(request);
    }
    for sends in by_key.values_mut() {
        sends.sort_by_key(|send| send.at_ms);
    }
    let mut accepted_per_message: HashMap<(String, u64), u64> = HashMap::new();
    let queued: std::collections::HashSet<(&str, u64)> = rooms
        .iter()
        .flat_map(|room| {
            room.notifications
                .iter()
                .filter_map(|row| row.message_seq.map(|seq| (room.consultation.as_str(), seq)))
        })
        .collect();
    for (key, sends) in &by_key {
        let known = message_of(key)
            .is_some_and(|(consultation, seq)| queued.contains(&(consultation.as_str(), seq)));
        if !known {
            findings.anomalies.push(Anomaly {
                kind: "unknown_key",
                detail: format!("key {key} reached the provider but no stored notification has it"),
            });
        }
        let count = u32::try_from(sends.len()).unwrap_or(u32::MAX);
        findings.max_requests_per_key = findings.max_requests_per_key.max(count);
        if count > max_attempts {
            findings.anomalies.push(Anomaly {
                kind: "over_attempts",
                detail: format!(
                    "key {key} reached the provider {count} times (max {max_attempts})"
                ),
            });
        }
        if sends.iter().any(|send| send.accepted)
            && let Some(message) = message_of(key)
        {
            *accepted_per_message.entry(message).or_insert(0) += 1;
        }
        let accepted: Vec<&&ProviderRequest> = sends.iter().filter(|send| send.accepted).collect();
        for pair in accepted.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            let cause = if !first.accepted_in_time {
                Some("after_provider_timeout")
            } else {
                excuse(first, second, faults)
            };
            match cause {
                Some(cause) => {
                    *findings
                        .documented_resends
                        .entry(cause.to_owned())
                        .or_insert(0) += 1;
                }
                None => findings.anomalies.push(Anomaly {
                    kind: "duplicate_send",
                    detail: format!(
                        "key {key} accepted at {} ms (node {:?}) and again at {} ms (node {:?}) with no fault between",
                        first.at_ms, first.node, second.at_ms, second.node
                    ),
                }),
            }
        }
    }
    for room in rooms {
        let mut sent_per_message: BTreeMap<u64, u64> = BTreeMap::new();
        for row in room.notifications.iter().filter(|row| row.status == "sent") {
            if let Some(seq) = row.message_seq {
                *sent_per_message.entry(seq).or_insert(0) += 1;
            }
        }
        for (seq, sent) in sent_per_message {
            let accepted = accepted_per_message
                .get(&(room.consultation.clone(), seq))
                .copied()
                .unwrap_or(0);
            if sent > accepted {
                findings.anomalies.push(Anomaly {
                    kind: "sent_without_provider",
                    detail: format!(
                        "room {} seq {seq}: {sent} rows sent, {accepted} keys accepted",
                        room.index
                    ),
                });
            }
        }
    }
}

/// The fault that can explain a second acceptance, if any.
fn excuse(
    first: &ProviderRequest,
    second: &ProviderRequest,
    faults: &[FaultRecord],
) -> Option<&'static str> {
    let from = first.at_ms.saturating_sub(EXCUSE_BEFORE_MS);
    let to = (first.at_ms + EXCUSE_AFTER_MS).min(second.at_ms);
    faults
        .iter()
        .filter(|fault| fault.at_ms <= to && fault.until_ms >= from)
        .find_map(|fault| match fault.kind {
            "kill_node" if fault.node == first.node => Some("node_killed_before_recording"),
            "term_node" if fault.node == first.node => Some("node_drained_mid_send"),
            "restart_postgres" => Some("postgres_restarted_before_recording"),
            "link_partition" | "link_loss" | "link_delay"
                if fault.node == first.node && fault.target.ends_with("postgres") =>
            {
                Some("database_link_faulted_before_recording")
            }
            _ => None,
        })
}

/// `(consultation, seq)` of an idempotency key `<consultation>:<seq>:<index>`.
fn message_of(key: &str) -> Option<(String, u64)> {
    let mut parts = key.rsplitn(3, ':');
    let _index = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let consultation = parts.next()?;
    Some((consultation.to_owned(), seq))
}

#[cfg(test)]
mod tests;
