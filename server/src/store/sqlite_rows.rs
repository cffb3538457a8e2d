//! Rows read and written on the hub's own rusqlite connections (the message
//! writer's and the inline readers'), in the forms sqlx uses on SQLite, so
//! that both sides read each other's rows alike: timestamps as RFC 3339
//! text, and a consultation's columns.

use super::StoreError;
use super::consultations;
use super::entities::consultation;
use crate::domain::Consultation;
use chrono::{DateTime, SecondsFormat, Utc};

/// The consultation columns [`ConsultationColumns::read`] expects, for a
/// `SELECT` list.
pub(super) const CONSULTATION_COLUMNS: &str = "id, clinic_id, provider_id, patient_id, status, \
     scheduled_at, waiting_since, staff_messaged_first, last_seq, rev";

/// A timestamp as sqlx writes it on SQLite.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A timestamp written as [`timestamp`] writes it.
///
/// # Errors
///
/// [`StoreError::Corrupt`] for any other text.
pub(super) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {text}")))
}

/// A consultation's columns as read, its timestamps still text.
pub(super) struct ConsultationColumns {
    model: consultation::Model,
    scheduled_at: String,
    waiting_since: Option<String>,
}

impl ConsultationColumns {
    /// The columns of [`CONSULTATION_COLUMNS`] from `row`, by name.
    ///
    /// # Errors
    ///
    /// The rusqlite error of a missing column or one of another type.
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        // `created_at`, `updated_at`, `ended_at` and `messages_purged_at`
        // are not part of a consultation as the domain sees it.
        Ok(Self {
            model: consultation::Model {
                id: row.get("id")?,
                clinic_id: row.get("clinic_id")?,
                provider_id: row.get("provider_id")?,
                patient_id: row.get("patient_id")?,
                status: row.get("status")?,
                scheduled_at: DateTime::UNIX_EPOCH,
                waiting_since: None,
                staff_messaged_first: row.get("staff_messaged_first")?,
                last_seq: row.get("last_seq")?,
                rev: row.get("rev")?,
                created_at: DateTime::UNIX_EPOCH,
                updated_at: DateTime::UNIX_EPOCH,
                ended_at: None,
                messages_purged_at: None,
            },
            scheduled_at: row.get("scheduled_at")?,
            waiting_since: row.get("waiting_since")?,
        })
    }

    /// The consultation, its timestamps parsed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a timestamp or status that cannot be
    /// read.
    pub(super) fn parse(self) -> Result<Consultation, StoreError> {
        let mut model = self.model;
        model.scheduled_at = parse_timestamp(&self.scheduled_at)?;
        model.waiting_since = self
            .waiting_since
            .as_deref()
            .map(parse_timestamp)
            .transpose()?;
        consultations::from_row(model)
    }
}
