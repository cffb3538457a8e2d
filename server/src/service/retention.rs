//! Message retention: the `retention` worker, and one pass of it.
//!
//! A clinic that set `message_retention_days` keeps the messages of an
//! ended (or cancelled) consultation that many days after it ended; then a
//! pass deletes them, with the consultation's notification rows (their
//! texts may quote the message), in one transaction per consultation. With
//! `retention.export_dir` set, the consultation's messages are first written
//! to `<export_dir>/<consultation id>.jsonl` (one JSON object per line,
//! oldest first; the file is complete and synced before anything is
//! deleted, and a failed export deletes nothing). Each deletion is audited
//! (`retention.delete`, with counts only). Clinics without the setting keep
//! everything. The consultation row, its receipts and the audit log stay.
//!
//! Every node runs the worker; a consultation is claimed by marking it
//! purged inside the transaction that deletes its messages, so two nodes
//! never handle the same one.

use crate::app::AppState;
use crate::store::audit::{self, Actor, AuditEntry};
use crate::store::{StoreError, messages, retention};
use crate::supervisor::Worker;
use chrono::{DateTime, Utc};
use consult_protocol::{ClinicId, ConsultationId};
use sea_orm::{DatabaseConnection, TransactionTrait};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Consultations looked up per query.
const PAGE: u64 = 100;
/// Messages read per query while exporting.
const EXPORT_PAGE: u64 = 1_000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Consultations whose messages were deleted.
    pub consultations: u64,
    /// Messages deleted.
    pub messages: u64,
    /// Notification rows deleted.
    pub notifications: u64,
}

/// Why a consultation's messages could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The export file could not be written (the messages were kept).
    #[error("export failed: {0}")]
    Export(#[from] std::io::Error),
}

/// Runs a pass at once, then every `retention.interval_secs`, until `stop`.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let interval = Duration::from_secs(state.config.retention.interval_secs);
    loop {
        let export = state.config.retention.export_dir.as_deref();
        match sweep(state.store.connection(), export, Utc::now()).await {
            Ok(report) if report.consultations > 0 => tracing::info!(
                worker = Worker::Retention.name(),
                consultations = report.consultations,
                messages = report.messages,
                notifications = report.notifications,
                "retention deleted messages"
            ),
            Ok(_) => {}
            // The kind only: no ids of people, no text.
            Err(error) => tracing::warn!(
                worker = Worker::Retention.name(),
                error = %error,
                "retention pass failed; retrying at the next one"
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One pass at `now`: every clinic with a retention, every consultation of
/// it due, exported to `export` when given, then deleted.
///
/// # Errors
///
/// The first failure; consultations handled before it stay handled.
pub async fn sweep(
    db: &DatabaseConnection,
    export: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<SweepReport, RetentionError> {
    let mut report = SweepReport::default();
    for (clinic, days) in retention::clinics(db).await? {
        let cutoff = now - chrono::Duration::days(i64::from(days));
        loop {
            let due = retention::expired(db, &clinic, cutoff, PAGE).await?;
            let mut handled = 0;
            for consultation in &due {
                if purge(db, &clinic, consultation, days, export, now, &mut report).await? {
                    handled += 1;
                }
            }
            // Short page, or only consultations another node holds.
            if (due.len() as u64) < PAGE || handled == 0 {
                break;
            }
        }
    }
    Ok(report)
}

/// Exports (when asked) and deletes one consultation's messages; `false`
/// when another pass took it first.
async fn purge(
    db: &DatabaseConnection,
    clinic: &ClinicId,
    consultation: &ConsultationId,
    days: u32,
    export: Option<&Path>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<bool, RetentionError> {
    let txn = db.begin().await.map_err(StoreError::from)?;
    if !retention::claim(&txn, consultation, now).await? {
        txn.rollback().await.map_err(StoreError::from)?;
        return Ok(false);
    }
    let exported = match export {
        Some(dir) => Some(write_export(&txn, dir, clinic, consultation).await?),
        None => None,
    };
    let deleted = retention::delete(&txn, consultation).await?;
    audit::record(
        &txn,
        AuditEntry {
            actor: Actor::HUB,
            action: "retention.delete",
            consultation: Some(consultation),
            detail: serde_json::json!({
                "clinic_id": clinic.as_str(),
                "retention_days": days,
                "messages": deleted.messages,
                "notifications": deleted.notifications,
                "exported": exported.is_some(),
            }),
        },
    )
    .await?;
    txn.commit().await.map_err(StoreError::from)?;
    report.consultations += 1;
    report.messages += deleted.messages;
    report.notifications += deleted.notifications;
    metrics::counter!("consult_retention_messages_deleted_total").increment(deleted.messages);
    metrics::counter!("consult_retention_consultations_total").increment(1);
    Ok(true)
}

/// The export file of `consultation` in `dir`.
pub fn export_path(dir: &Path, consultation: &ConsultationId) -> PathBuf {
    // Consultation ids are the hub's UUIDs; anything else is hex-encoded
    // rather than trusted as a file name.
    let id = consultation.as_str();
    let safe = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let name = if safe {
        id.to_owned()
    } else {
        id.bytes().map(|b| format!("{b:02x}")).collect()
    };
    dir.join(format!("{name}.jsonl"))
}

/// Writes the consultation's messages, oldest first, one JSON object per
/// line, to a temporary file, syncs it and renames it into place (mode
/// 0600: it holds message text). Returns the lines written.
async fn write_export(
    db: &impl sea_orm::ConnectionTrait,
    dir: &Path,
    clinic: &ClinicId,
    consultation: &ConsultationId,
) -> Result<u64, RetentionError> {
    tokio::fs::create_dir_all(dir).await?;
    let path = export_path(dir, consultation);
    let partial = path.with_extension("jsonl.partial");
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let file = options.open(&partial).await?;
    let mut out = tokio::io::BufWriter::new(file);
    let mut after = 0;
    let mut lines = 0;
    loop {
        let page = messages::after(db, consultation, after, EXPORT_PAGE).await?;
        for message in &page {
            let line = serde_json::json!({
                "clinic_id": clinic.as_str(),
                "consultation_id": message.consultation_id.as_str(),
                "seq": message.seq.0,
                "sender_id": message.sender.as_str(),
                "sender_role": message.sender_role.as_str(),
                "kind": message.kind.as_str(),
                "body": message.body,
                "client_msg_id": message.client_msg_id,
                "sent_at": message.sent_at,
            });
            out.write_all(line.to_string().as_bytes()).await?;
            out.write_all(b"\n").await?;
            lines += 1;
            after = message.seq.0;
        }
        if (page.len() as u64) < EXPORT_PAGE {
            break;
        }
    }
    out.flush().await?;
    out.get_ref().sync_all().await?;
    drop(out);
    tokio::fs::rename(&partial, &path).await?;
    // The rename itself survives a crash once the folder is synced.
    tokio::fs::File::open(dir).await?.sync_all().await?;
    Ok(lines)
}
