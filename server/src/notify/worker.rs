//! The outbox worker: claims due notifications, drops those the patient no
//! longer needs (the cancel rule), sends the rest, and records every outcome
//! in the outbox, the audit log and the staff's dashboard feeds.
//!
//! [`OutboxWorker::step`] does one pass and reports what it did, so tests
//! can drive it; [`OutboxWorker::run`] loops until shutdown, waking when a
//! row falls due or when new rows are queued.

use crate::app::AppState;
use crate::domain::PersonKey;
use crate::service::dashboard;
use crate::store::audit::{self, Actor, AuditEntry};
use crate::store::outbox::{self, Finish, OutboxRow};
use crate::store::{StoreError, consultations, contacts, receipts};
use chrono::Utc;
use consult_protocol::ConsultationId;
use consult_protocol::{AlertChannel, NotificationStatus, ServerFrame};
use futures_util::StreamExt;
use sea_orm::TransactionTrait;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Times the record of a notification the provider accepted is written
/// again after a database failure (the send itself is never repeated).
const RECORD_RETRIES: u32 = 5;
/// The first pause between those writes; it grows by as much each time.
const RECORD_RETRY_DELAY: Duration = Duration::from_millis(200);

/// The audit action of an outcome.
fn row_action(finish: &Finish) -> &'static str {
    match finish {
        Finish::Sent { .. } => "notification.sent",
        Finish::Cancelled { .. } => "notification.cancelled",
        Finish::Retry { .. } => "notification.retry",
        Finish::Failed { .. } => "notification.failed",
    }
}

/// Consultations served per pass at most.
const CONSULTATIONS_PER_PASS: u64 = 32;
/// Rows of one consultation sent per pass at most: a consultation with a
/// backlog gets no more of a pass than any other.
const ROWS_PER_CONSULTATION: u64 = 4;
/// Longest retry delay.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// How often the backlog gauges are measured.
const BACKLOG_EVERY: Duration = Duration::from_secs(15);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepOutcome {
    /// Accepted by a provider.
    pub sent: usize,
    /// Dropped by their cancel rule.
    pub cancelled: usize,
    /// To be tried again later.
    pub retried: usize,
    /// Given up.
    pub failed: usize,
    /// The pass took as much as one pass takes: more may be due now.
    pub full: bool,
}

impl StepOutcome {
    /// Rows handled in the pass.
    pub fn handled(&self) -> usize {
        self.sent + self.cancelled + self.retried + self.failed
    }

    fn count(&mut self, status: NotificationStatus) {
        match status {
            NotificationStatus::Sent => self.sent += 1,
            NotificationStatus::Cancelled => self.cancelled += 1,
            NotificationStatus::Failed => self.failed += 1,
            NotificationStatus::Pending | NotificationStatus::Sending => self.retried += 1,
        }
    }

    fn add(mut self, other: Self) -> Self {
        self.sent += other.sent;
        self.cancelled += other.cancelled;
        self.retried += other.retried;
        self.failed += other.failed;
        self.full |= other.full;
        self
    }
}

/// Sends due outbox rows.
#[derive(Debug, Clone)]
pub struct OutboxWorker {
    state: Arc<AppState>,
}

impl OutboxWorker {
    /// A worker over the app's store and notifier.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Runs passes until `stop` is cancelled.
    ///
    /// Sends in `notify.send_concurrency` lanes, one consultation per lane
    /// (its rows in order, at most `ROWS_PER_CONSULTATION` at a time), and
    /// looks for due rows whenever a lane is free: a consultation with a
    /// backlog, or a slow provider, holds one lane, never the others. On
    /// stop, the lanes finish what they hold (cut short at shutdown's
    /// deadline) before it returns.
    pub async fn run(self, stop: CancellationToken) {
        let poll = Duration::from_millis(self.state.config.notify.poll_interval_ms);
        let lanes = self.state.config.notify.send_concurrency.max(1);
        let mut sending = futures_util::stream::FuturesUnordered::new();
        let mut busy: HashSet<ConsultationId> = HashSet::new();
        let worker = &self;
        let mut backlog_tick = tokio::time::interval(BACKLOG_EVERY);
        backlog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Fill the free lanes; wait only as long as nothing is due.
            let mut wait = poll;
            if sending.len() < lanes {
                match outbox::due_by_consultation(
                    self.state.store.connection(),
                    Utc::now(),
                    CONSULTATIONS_PER_PASS,
                    ROWS_PER_CONSULTATION,
                )
                .await
                {
                    Ok(due) => {
                        let waiting = due.len();
                        let mut started = 0;
                        for rows in due {
                            let Some(consultation) =
                                rows.first().map(|row| row.consultation_id.clone())
                            else {
                                continue;
                            };
                            if sending.len() >= lanes || !busy.insert(consultation.clone()) {
                                continue;
                            }
                            started += 1;
                            sending.push(async move {
                                let _outcome = worker.process_in_order(rows).await;
                                consultation
                            });
                        }
                        if waiting == 0 {
                            wait = self.time_to_next_due(poll).await;
                        } else if started == 0 && sending.is_empty() {
                            // Due rows another worker is sending; look
                            // again after the poll interval.
                            wait = poll;
                        } else if started > 0 && sending.len() < lanes {
                            // Some consultation may have more rows due.
                            continue;
                        }
                    }
                    Err(error) => tracing::error!(error = %error, "outbox pass failed"),
                }
            }
            tokio::select! {
                Some(done) = sending.next(), if !sending.is_empty() => {
                    busy.remove(&done);
                }
                () = stop.cancelled() => break,
                () = self.state.outbox_wakeup.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = backlog_tick.tick() => self.measure_backlog().await,
            }
        }
        while let Some(done) = sending.next().await {
            busy.remove(&done);
        }
        tracing::debug!("outbox worker stopped");
    }

    /// Sets `consult_outbox_due_rows` and `consult_outbox_oldest_due_seconds`
    /// from the database (the whole deployment's outbox, as every node sees
    /// it).
    async fn measure_backlog(&self) {
        let now = Utc::now();
        match outbox::backlog(self.state.store.connection(), now).await {
            Ok((rows, oldest)) => {
                let age = oldest.map_or(0.0, |oldest| {
                    (now - oldest).to_std().unwrap_or_default().as_secs_f64()
                });
                metrics::gauge!("consult_outbox_due_rows").set(rows as f64);
                metrics::gauge!("consult_outbox_oldest_due_seconds").set(age);
            }
            Err(error) => tracing::warn!(error = %error, "outbox backlog not measured"),
        }
    }

    async fn time_to_next_due(&self, poll: Duration) -> Duration {
        match outbox::next_due_at(self.state.store.connection()).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            _ => poll,
        }
    }

    /// One pass over the rows due now. Once shutdown has set its deadline
    /// (`AppState::outbox_deadline`), rows not started by then stay
    /// `pending`, and a send still waiting for its provider then is cut
    /// short and its row given back (`pending`, due at once) for another
    /// node or the next start.
    ///
    /// # Errors
    ///
    /// A store failure reading the due rows; failures on single rows are
    /// logged and left for the next pass.
    ///
    /// A pass takes the due rows fairly across consultations (at most
    /// `ROWS_PER_CONSULTATION` of each of `CONSULTATIONS_PER_PASS`) and
    /// sends `notify.send_concurrency` consultations' rows at once, each
    /// consultation's in order: a patient with many notifications due
    /// delays neither another patient's alert nor the rest of the pass.
    pub async fn step(&self) -> Result<StepOutcome, StoreError> {
        let due = outbox::due_by_consultation(
            self.state.store.connection(),
            Utc::now(),
            CONSULTATIONS_PER_PASS,
            ROWS_PER_CONSULTATION,
        )
        .await?;
        let full = due.len() as u64 >= CONSULTATIONS_PER_PASS
            || due
                .iter()
                .any(|rows| rows.len() as u64 >= ROWS_PER_CONSULTATION);
        let concurrency = self.state.config.notify.send_concurrency.max(1);
        let outcome = futures_util::stream::iter(due)
            .map(|rows| self.process_in_order(rows))
            .buffer_unordered(concurrency)
            .fold(StepOutcome::default(), |total, one| async move {
                total.add(one)
            })
            .await;
        Ok(StepOutcome { full, ..outcome })
    }

    /// Processes one consultation's due rows, one after another.
    async fn process_in_order(&self, rows: Vec<OutboxRow>) -> StepOutcome {
        let mut outcome = StepOutcome::default();
        for row in rows {
            if self.past_deadline() {
                break;
            }
            match self.process(row).await {
                Ok(Some(status)) => outcome.count(status),
                Ok(None) => {}
                Err(error) => tracing::error!(error = %error, "outbox row failed"),
            }
        }
        outcome
    }

    /// Claims, checks, sends and records one row. `None` when another worker
    /// had claimed it.
    async fn process(&self, row: OutboxRow) -> Result<Option<NotificationStatus>, StoreError> {
        let db = self.state.store.connection();
        let now = Utc::now();
        let lease = now
            + chrono::Duration::seconds(
                i64::try_from(self.state.config.notify.lease_secs).unwrap_or(60),
            );
        let Some(claim) = outbox::claim(db, &row, now, lease).await? else {
            return Ok(None);
        };
        let attempts = claim.attempts;
        let max_attempts = self.state.config.notify.max_attempts;
        let finish = if row.status == NotificationStatus::Sending && attempts > max_attempts {
            // Reclaimed after its sender's lease ran out, with no attempt
            // left: whether that sender reached the provider is unknown, and
            // the row is not sent again without end.
            Finish::Failed {
                error: "lease_expired".to_owned(),
            }
        } else {
            match self.cancel_reason(&row).await? {
                Some(reason) => Finish::Cancelled {
                    reason: reason.to_owned(),
                },
                None => match self.send_before_deadline(&row, attempts).await {
                    Some(finish) => finish?,
                    None => {
                        let released = self.release(&row, &claim).await?;
                        tracing::warn!(
                            notification = %row.id,
                            released,
                            "send cut short by shutdown; the row is pending again"
                        );
                        return Ok(None);
                    }
                },
            }
        };
        let sent = matches!(finish, Finish::Sent { .. });
        let mut tries = 0;
        let updated = loop {
            // After the provider accepted it, only the record is retried,
            // never the send.
            match self
                .record(&row, &claim, finish.clone(), row_action(&finish))
                .await
            {
                Ok(updated) => break updated,
                Err(error) if sent && tries < RECORD_RETRIES => {
                    tries += 1;
                    tracing::warn!(notification = %row.id, tries, error = %error, "recording a sent notification failed; retrying the write");
                    tokio::time::sleep(RECORD_RETRY_DELAY * tries).await;
                }
                Err(error) => return Err(error),
            }
        };
        let Some(updated) = updated else {
            // Another worker holds the row now; its outcome stands.
            return Ok(None);
        };
        metrics::counter!("consult_notifications_total", "channel" => updated.channel.as_str(), "status" => updated.status.as_str()).increment(1);
        self.announce(&updated).await?;
        Ok(Some(updated.status))
    }

    /// Gives back a row whose send shutdown cut short, with its audit entry
    /// in the same transaction: the provider may have taken the attempt,
    /// and the row will be sent again (`notification.released`).
    async fn release(&self, row: &OutboxRow, claim: &outbox::Claim) -> Result<bool, StoreError> {
        let txn = self.state.store.connection().begin().await?;
        let released = outbox::release(&txn, claim, Utc::now()).await?;
        if released {
            let entry = attempt_entry(row, claim.attempts, Some("cut_short_by_shutdown"));
            audit_attempt(&txn, "notification.released", row, entry).await?;
        }
        txn.commit().await?;
        Ok(released)
    }

    /// True once shutdown's deadline for sends has passed.
    fn past_deadline(&self) -> bool {
        self.state
            .outbox_deadline
            .borrow()
            .is_some_and(|deadline| tokio::time::Instant::now() >= deadline)
    }

    /// Sends, unless shutdown's deadline (set now or while the provider is
    /// answering) passes first: then `None`.
    async fn send_before_deadline(
        &self,
        row: &OutboxRow,
        attempts: u32,
    ) -> Option<Result<Finish, StoreError>> {
        let mut deadline = self.state.outbox_deadline.subscribe();
        let send = self.send(row, attempts);
        tokio::pin!(send);
        loop {
            let current = *deadline.borrow_and_update();
            let expiry = async move {
                match current {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                finish = &mut send => return Some(finish),
                () = expiry => return None,
                changed = deadline.changed() => {
                    if changed.is_err() {
                        // The state is going away with the process.
                        return Some((&mut send).await);
                    }
                }
            }
        }
    }

    /// Writes an attempt's outcome and its audit entry in one transaction,
    /// fenced by the claim: `None` (nothing written) if the row was
    /// reclaimed meanwhile.
    async fn record(
        &self,
        row: &OutboxRow,
        claim: &outbox::Claim,
        finish: Finish,
        action: &str,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let db = self.state.store.connection();
        // The outcome and its audit entry commit together: no outcome is
        // seen, or survives a crash, without its entry.
        let txn = db.begin().await?;
        let accepted = matches!(finish, Finish::Sent { .. });
        let Some(updated) = outbox::finish(&txn, claim, finish).await? else {
            if accepted {
                // This sender's lease ran out while the provider answered:
                // another worker holds the row, and its outcome stands. The
                // provider still took this attempt, so it is audited too.
                let mut entry = attempt_entry(row, claim.attempts, None);
                if let Some(fields) = entry.as_object_mut() {
                    fields.insert("lease_expired".to_owned(), serde_json::Value::Bool(true));
                }
                audit_attempt(&txn, action, row, entry).await?;
                txn.commit().await?;
            }
            return Ok(None);
        };
        let entry = attempt_entry(&updated, updated.attempts, updated.last_error.as_deref());
        audit_attempt(&txn, action, &updated, entry).await?;
        txn.commit().await?;
        Ok(Some(updated))
    }

    /// Why this row is no longer needed, if it is not.
    async fn cancel_reason(&self, row: &OutboxRow) -> Result<Option<&'static str>, StoreError> {
        let db = self.state.store.connection();
        // The recipient is the patient of the row's consultation, in that
        // consultation's clinic: presence and SMS preferences are per clinic.
        let Some(consultation) = consultations::find(db, &row.consultation_id).await? else {
            return Ok(Some("consultation_gone"));
        };
        let recipient = PersonKey::new(&consultation.clinic_id, &row.recipient);
        if let Some(seq) = row.message_seq {
            let receipt = receipts::find(db, &row.consultation_id, &row.recipient).await?;
            let online = self.state.presence.is_online(&recipient).await;
            if row
                .cancel
                .cancels(seq, receipt.delivered, receipt.read, online)
            {
                return Ok(Some(if receipt.delivered >= seq {
                    "acknowledged"
                } else {
                    "reconnected"
                }));
            }
        }
        if row.channel == AlertChannel::Sms {
            let (consent, opted_out) = contacts::sms_preference(db, &recipient).await?;
            if opted_out || !consent {
                return Ok(Some("sms_opted_out"));
            }
        }
        Ok(None)
    }

    async fn send(&self, row: &OutboxRow, attempts: u32) -> Result<Finish, StoreError> {
        let config = &self.state.config.notify;
        match self.state.notifier.send(row).await {
            Ok(delivered) => Ok(Finish::Sent {
                provider_message_id: delivered.provider_message_id,
            }),
            Err(error) if error.is_retryable() && attempts < config.max_attempts => {
                tracing::warn!(notification = %row.id, attempts, error = %error, "send failed; will retry");
                let delay = retry_delay(config.retry_base_ms, attempts);
                Ok(Finish::Retry {
                    at: Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()),
                    error: short_code(&error),
                })
            }
            Err(error) => {
                tracing::warn!(notification = %row.id, attempts, error = %error, "send failed for good");
                if row.channel == AlertChannel::Push && error.device_is_gone() {
                    self.forget_device(row).await?;
                }
                Ok(Finish::Failed {
                    error: short_code(&error),
                })
            }
        }
    }

    /// The push service will never deliver to this device token again:
    /// forget the recipient's registration of it, in the consultation's
    /// clinic only (another clinic's registration of the same token is that
    /// clinic's record, and goes on its own first failure).
    async fn forget_device(&self, row: &OutboxRow) -> Result<(), StoreError> {
        let db = self.state.store.connection();
        let Some(consultation) = consultations::find(db, &row.consultation_id).await? else {
            return Ok(());
        };
        let person = PersonKey {
            clinic: consultation.clinic_id,
            user: row.recipient.clone(),
        };
        contacts::remove_device(db, &person, &row.target).await?;
        self.state.reach.forget_person(&person);
        Ok(())
    }

    /// Tells staff watching the provider's or clinic's dashboard.
    async fn announce(&self, row: &OutboxRow) -> Result<(), StoreError> {
        let Some(consultation) =
            consultations::find(self.state.store.connection(), &row.consultation_id).await?
        else {
            return Ok(());
        };
        let frame = ServerFrame::Notification {
            notification: row.view(),
        };
        dashboard::publish_to_staff(&self.state, &consultation, &frame);
        Ok(())
    }
}

/// `base * 2^(attempts-1)`, capped.
pub fn retry_delay(base_ms: u64, attempts: u32) -> Duration {
    let factor = 2u64.saturating_pow(attempts.saturating_sub(1));
    Duration::from_millis(base_ms.saturating_mul(factor)).min(MAX_RETRY_DELAY)
}

/// A short, text-free code for the outbox and the audit log.
/// The audit detail of one attempt on `row`: ids, channel, provider,
/// reason, the attempt count and the error code; never text or contacts.
fn attempt_entry(row: &OutboxRow, attempts: u32, error: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "notification_id": row.id,
        "channel": row.channel,
        "provider": row.provider,
        "reason": row.reason,
        "attempts": attempts,
        "error": error,
    })
}

/// Writes an attempt's audit entry (`action`, by the hub) in `txn`.
async fn audit_attempt(
    txn: &impl sea_orm::ConnectionTrait,
    action: &str,
    row: &OutboxRow,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    audit::record(
        txn,
        AuditEntry {
            actor: Actor::HUB,
            action,
            consultation: Some(&row.consultation_id),
            detail,
        },
    )
    .await?;
    Ok(())
}

fn short_code(error: &crate::notify::providers::SendError) -> String {
    let text = error.to_string();
    let kind = if error.is_retryable() {
        "retryable"
    } else {
        "permanent"
    };
    let detail: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | ':'))
        .take(120)
        .collect();
    format!("{kind}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        assert_eq!(retry_delay(1000, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(1000, 2), Duration::from_secs(2));
        assert_eq!(retry_delay(1000, 4), Duration::from_secs(8));
        assert_eq!(retry_delay(1000, 40), MAX_RETRY_DELAY);
    }
}
