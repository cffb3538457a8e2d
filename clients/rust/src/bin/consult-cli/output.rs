//! Text lines for what the hub sends, and the dashboard list the
//! `dashboard` subcommand keeps. Pure formatting: no I/O.

use consult_client::Notified;
use consult_protocol::{
    ConsultationId, DashboardEntry, MessageKind, NotificationView, QuickTemplate, ServerFrame,
};
use std::collections::HashMap;

/// One line for a frame, or `None` for frames not worth printing (answers
/// nobody waits for).
pub(crate) fn frame_line(frame: &ServerFrame) -> Option<String> {
    let line = match frame {
        ServerFrame::Message { message } => {
            let kind = match message.kind {
                MessageKind::Chat => String::new(),
                other => format!(" [{}]", other.as_str()),
            };
            format!(
                "[{} #{}] {} ({}){kind}: {}",
                message.consultation_id,
                message.seq,
                message.sender,
                message.sender_role,
                message.body
            )
        }
        ServerFrame::Status {
            consultation_id,
            status,
            previous,
            changed_by,
            rev,
            ..
        } => format!(
            "[{consultation_id}] status {previous} -> {status} (by {changed_by}, rev {rev})"
        ),
        ServerFrame::Receipt {
            consultation_id,
            user,
            role,
            seq,
            receipt,
        } => {
            let kind = match receipt {
                consult_protocol::ReceiptKind::Delivered => "received",
                consult_protocol::ReceiptKind::Read => "read",
            };
            format!("[{consultation_id}] {user} ({role}) {kind} up to #{seq}")
        }
        ServerFrame::Typing {
            consultation_id,
            user,
            role,
            active,
        } => {
            let what = if *active {
                "is typing"
            } else {
                "stopped typing"
            };
            format!("[{consultation_id}] {user} ({role}) {what}")
        }
        ServerFrame::Presence {
            consultation_id,
            user,
            role,
            online,
        } => {
            let what = if *online { "online" } else { "offline" };
            format!("[{consultation_id}] {user} ({role}) {what}")
        }
        ServerFrame::Dashboard { entry } => format!("dashboard {}", dashboard_row(entry)),
        ServerFrame::Notification { notification } => notification_line(notification),
        ServerFrame::Notifications { notifications } => notifications
            .iter()
            .map(notification_line)
            .collect::<Vec<_>>()
            .join("\n"),
        ServerFrame::Error { code, message, .. } => format!("hub error: {code}: {message}"),
        ServerFrame::Welcome { .. } | ServerFrame::Ok { .. } => return None,
    };
    Some(line)
}

/// One row of the "Active and Waiting" list.
pub(crate) fn dashboard_row(entry: &DashboardEntry) -> String {
    let since = entry
        .waiting_since
        .map(|at| format!(", waiting since {}", at.format("%H:%M:%S")))
        .unwrap_or_default();
    format!(
        "{} {} patient {:?} ({}) provider {} unread {}{since} rev {}",
        entry.consultation_id,
        entry.status,
        entry.patient_name,
        entry.patient_id,
        entry.provider_id,
        entry.unread,
        entry.rev
    )
}

/// A notification and where it stands.
pub(crate) fn notification_line(notification: &NotificationView) -> String {
    let error = notification
        .error
        .as_deref()
        .map(|error| format!(" ({error})"))
        .unwrap_or_default();
    format!(
        "notification {} [{}] {} via {} ({}): {}, attempts {}{error}",
        notification.id,
        notification.consultation_id,
        notification.channel.as_str(),
        notification.provider,
        notification.reason.as_str(),
        notification.status.as_str(),
        notification.attempts
    )
}

/// A template, with the variables it needs.
pub(crate) fn template_line(template: &QuickTemplate) -> String {
    let owner = template
        .provider_id
        .as_ref()
        .map_or_else(|| "clinic".to_owned(), ToString::to_string);
    let variables = if template.variables.is_empty() {
        String::new()
    } else {
        format!(" [needs: {}]", template.variables.join(", "))
    };
    format!(
        "{} ({owner}) {:?}: {}{variables}",
        template.id, template.title, template.body
    )
}

/// The answer to `send`.
pub(crate) fn sent_line(seq: u64, duplicate: bool) -> String {
    if duplicate {
        format!("sent #{seq} (already stored; not sent again)")
    } else {
        format!("sent #{seq}")
    }
}

/// The answer to `quick` and `alert`: the message, then each notification.
pub(crate) fn notified_lines(notified: &Notified) -> Vec<String> {
    std::iter::once(sent_line(notified.seq.get(), notified.duplicate))
        .chain(notified.notifications.iter().map(notification_line))
        .collect()
}

/// What applying a delta did to the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Updated,
    Removed,
    /// Older than the row held (or a removal of a row not held): ignored.
    Ignored,
}

/// The "Active and Waiting" list. Per consultation it keeps the row with
/// the highest `rev`, as the protocol asks, including rows that left the
/// list, so that a late, older delta cannot bring one back.
#[derive(Debug, Default)]
pub(crate) struct DashboardList {
    latest: HashMap<ConsultationId, DashboardEntry>,
}

impl DashboardList {
    /// Replaces the list with a snapshot (keeping what is known of rows
    /// that left it).
    pub(crate) fn replace(&mut self, entries: &[DashboardEntry]) {
        self.latest
            .retain(|_, entry| !entry.status.is_active_or_waiting());
        for entry in entries {
            self.apply(entry);
        }
    }

    /// Applies one `dashboard` delta.
    pub(crate) fn apply(&mut self, entry: &DashboardEntry) -> Change {
        let held = self.latest.get(&entry.consultation_id);
        if held.is_some_and(|held| held.rev >= entry.rev) {
            return Change::Ignored;
        }
        let was_listed = held.is_some_and(|held| held.status.is_active_or_waiting());
        let listed = entry.status.is_active_or_waiting();
        self.latest
            .insert(entry.consultation_id.clone(), entry.clone());
        match (was_listed, listed) {
            (false, true) => Change::Added,
            (true, true) => Change::Updated,
            (true, false) => Change::Removed,
            (false, false) => Change::Ignored,
        }
    }
}

/// The lines printing a snapshot: a header, then one row each.
pub(crate) fn snapshot_lines(entries: &[DashboardEntry], title: &str) -> Vec<String> {
    std::iter::once(format!("{title} ({})", entries.len()))
        .chain(
            entries
                .iter()
                .map(|entry| format!("  {}", dashboard_row(entry))),
        )
        .collect()
}

/// The line for an applied delta; `None` when it was ignored.
pub(crate) fn change_line(change: Change, entry: &DashboardEntry) -> Option<String> {
    let mark = match change {
        Change::Added => "+",
        Change::Updated => "~",
        Change::Removed => "-",
        Change::Ignored => return None,
    };
    Some(format!("{mark} {}", dashboard_row(entry)))
}

#[cfg(test)]
mod tests;
