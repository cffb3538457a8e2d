//! Matching the hub's answers to waiting callers.
//!
//! Pure bookkeeping, no I/O: the socket task owns one [`Routes`] and asks it,
//! for every decoded frame, whether a caller claims it or it is an event.

use crate::error::ClientError;
use consult_protocol::{CommandId, CommandResult, ServerFrame};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;
use tracing::debug;

/// What a waiting caller receives: the `ok` result or the `error` as an error.
pub(crate) type Reply = Result<Option<CommandResult>, ClientError>;

/// Hands out command ids unique to one client: `c1`, `c2`, ...
#[derive(Debug, Default)]
pub(crate) struct CommandIds {
    last: AtomicU64,
}

impl CommandIds {
    pub(crate) fn next(&self) -> CommandId {
        // Uniqueness needs only atomicity; no other memory is ordered by it.
        let n = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        CommandId::new(format!("c{n}"))
    }
}

/// Callers waiting for an answer, by command id.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    waiting: HashMap<CommandId, oneshot::Sender<Reply>>,
}

impl Routes {
    /// Registers a caller. Returns false, after answering the caller with an
    /// error, when the id is already waiting; the command must not be sent.
    pub(crate) fn insert(&mut self, id: CommandId, reply_tx: oneshot::Sender<Reply>) -> bool {
        if self.waiting.contains_key(&id) {
            let error = ClientError::Protocol(format!(
                "command id `{id}` is already waiting for an answer"
            ));
            deliver(&id, reply_tx, Err(error));
            return false;
        }
        self.waiting.insert(id, reply_tx);
        true
    }

    /// Gives `ok` and `error` frames to the caller waiting for their id and
    /// returns every other frame, to be delivered as an event.
    pub(crate) fn route(&mut self, frame: ServerFrame) -> Option<ServerFrame> {
        match frame {
            ServerFrame::Ok { id, result } => match self.waiting.remove(&id) {
                Some(reply_tx) => {
                    deliver(&id, reply_tx, Ok(result));
                    None
                }
                None => Some(ServerFrame::Ok { id, result }),
            },
            ServerFrame::Error {
                id: Some(id),
                code,
                message,
            } => match self.waiting.remove(&id) {
                Some(reply_tx) => {
                    deliver(&id, reply_tx, Err(ClientError::Command { code, message }));
                    None
                }
                None => Some(ServerFrame::Error {
                    id: Some(id),
                    code,
                    message,
                }),
            },
            other => Some(other),
        }
    }

    /// Drops every waiting caller; each sees [`ClientError::Closed`].
    pub(crate) fn fail_all(&mut self) {
        self.waiting.clear();
    }
}

fn deliver(id: &CommandId, reply_tx: oneshot::Sender<Reply>, reply: Reply) {
    if reply_tx.send(reply).is_err() {
        // The caller timed out and left; its answer has nobody to go to.
        debug!(%id, "answer arrived after its caller gave up");
    }
}

#[cfg(test)]
mod tests;
