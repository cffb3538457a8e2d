//! The stored floor's append-only variant (`CONSULT_FLOOR__STORE=log`): each
//! batch's messages appended to one file in one `write`, and with
//! `synchronous = full` one `fdatasync`, each room's `seq` kept in memory.
//! It measures what storing a message costs when nothing but the message
//! itself is written; the indexes a real store would need to answer history
//! (and the `seq` recovered after a restart) would be built from the log
//! behind the commit, and are not here. A yardstick, not a store.

use super::store::{BatchWriter, Job, Stored};
use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// One line of the log.
#[derive(Serialize)]
struct Record<'a> {
    room: &'a str,
    seq: u64,
    sender: &'a str,
    role: &'a str,
    client_msg_id: &'a str,
    at: String,
    body: &'a str,
}

/// The open log and each room's last `seq`.
pub(crate) struct MessageLog {
    file: File,
    sync: bool,
    last_seq: HashMap<String, u64>,
    batch: Vec<u8>,
}

impl MessageLog {
    /// Creates (or appends to) the log at `path`; `sync` makes each batch
    /// wait for the disk.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened.
    pub(crate) fn open(path: &Path, sync: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file,
            sync,
            last_seq: HashMap::new(),
            batch: Vec::with_capacity(64 * 1024),
        })
    }
}

impl BatchWriter for MessageLog {
    fn write(&mut self, jobs: &[Job]) -> Result<Vec<Option<Stored>>, String> {
        self.batch.clear();
        let mut outcomes = Vec::with_capacity(jobs.len());
        // Seqs moved by this batch, kept apart until it is written.
        let mut moved: HashMap<&str, u64> = HashMap::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Room { id, .. } => {
                    moved.insert(id.as_str(), 0);
                    outcomes.push(None);
                }
                Job::Message { message, .. } => {
                    let last = moved
                        .get(message.room.as_str())
                        .or_else(|| self.last_seq.get(&message.room))
                        .copied()
                        .ok_or_else(|| format!("no room {}", message.room))?;
                    let seq = last + 1;
                    let sent_at = Utc::now();
                    let record = Record {
                        room: &message.room,
                        seq,
                        sender: &message.sender,
                        role: message.sender_role,
                        client_msg_id: &message.client_msg_id,
                        at: sent_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                        body: &message.body,
                    };
                    serde_json::to_writer(&mut self.batch, &record)
                        .map_err(|error| error.to_string())?;
                    self.batch.push(b'\n');
                    moved.insert(message.room.as_str(), seq);
                    outcomes.push(Some((seq, sent_at)));
                }
            }
        }
        self.file
            .write_all(&self.batch)
            .map_err(|error| error.to_string())?;
        if self.sync {
            self.file.sync_data().map_err(|error| error.to_string())?;
        }
        for (room, seq) in moved {
            self.last_seq.insert(room.to_owned(), seq);
        }
        Ok(outcomes)
    }
}
