//! The dashboard rows the refresher reads in one query (PostgreSQL, and
//! SQLite for a provider's read), with each consultation's unread count
//! carried on from the last time this node read it.
//!
//! `unread` is the patient's messages after the provider's read receipt.
//! Counting them walks every such message, so while a provider does not
//! read (a patient writing from the waiting room) each refresh cost more
//! than the last. [`UnreadCounts`] remembers, per consultation, the read
//! receipt it counted from, the consultation's `last_seq` it counted up to
//! and the count; the query then counts only the patient's messages after
//! that `last_seq` and adds them, when the receipt is unchanged. Anything
//! else (a new receipt, a consultation not remembered) counts again from
//! the receipt. Both counts stop at the consultation's `last_seq` read in
//! the same statement, which every message up to it is committed under (a
//! message's `seq` is reserved on the consultation's row in the message's
//! own transaction), so messages another node stored in between are counted
//! once. Messages are only ever deleted with their whole consultation ended
//! (retention), after which no patient message comes and a read counts
//! again. The memo starts again once it holds
//! [`CAPACITY`](super::unread_memo::CAPACITY) consultations.

use super::consultations::{PATIENT_NAME, PROVIDER_READ_SEQ, entry, from_row};
use super::entities::consultation;
use super::pg_keyed_list::matches_one_of;
use super::unread_memo::{Counted, CountedByConsultation};
use super::{StoreError, to_u64};
use crate::domain::Consultation;
use consult_protocol::{ConsultationId, DashboardEntry, Role};
use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult, Statement};
use serde_json::{Value, json};
use std::sync::LazyLock;

/// One node's unread counts, by consultation (see the module's text).
#[derive(Debug, Default)]
pub struct UnreadCounts {
    counted: CountedByConsultation<ConsultationId>,
}

impl UnreadCounts {
    /// Consultations remembered.
    pub fn len(&self) -> usize {
        self.counted.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.counted.is_empty()
    }

    /// The query's input: each id with what was counted for it, if anything.
    fn asked(&self, ids: &[ConsultationId]) -> Value {
        Value::Array(
            ids.iter()
                .map(|id| match self.counted.get(id) {
                    Some(counted) => json!({
                        "id": id.as_str(), "read_seq": counted.read_seq,
                        "last_seq": counted.last_seq, "unread": counted.unread,
                    }),
                    None => json!({ "id": id.as_str() }),
                })
                .collect(),
        )
    }

    fn remember(&mut self, id: &ConsultationId, counted: Counted) {
        self.counted.remember(id, counted);
    }
}

/// The dashboard rows of the consultations `ids` (unknown ones are left
/// out), in one query, counting unread messages from what `counts`
/// remembers and remembering the new counts.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure; [`StoreError::Corrupt`] for an
/// unknown stored status.
pub async fn dashboard_entries_of(
    db: &impl ConnectionTrait,
    ids: &[ConsultationId],
    counts: &mut UnreadCounts,
) -> Result<Vec<(Consultation, DashboardEntry)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let asked = counts.asked(ids);
    let value = if backend == DatabaseBackend::Postgres {
        sea_orm::Value::Json(Some(Box::new(asked)))
    } else {
        asked.to_string().into()
    };
    let statement =
        Statement::from_sql_and_values(backend, dashboard_entries_sql(backend), [value]);
    let mut rows = Vec::new();
    for row in db.query_all(statement).await? {
        let consultation = from_row(consultation::Model::from_query_result(&row, "")?)?;
        let name: String = row.try_get("", "patient_name")?;
        let unread: i64 = row.try_get("", "unread")?;
        let read_seq: i64 = row.try_get("", "counted_read_seq")?;
        let last_seq: i64 = row.try_get("", "counted_last_seq")?;
        counts.remember(
            &consultation.id,
            Counted {
                read_seq,
                last_seq,
                unread,
            },
        );
        let entry = entry(&consultation, name, to_u64(unread));
        rows.push((consultation, entry));
    }
    Ok(rows)
}

/// The query of [`dashboard_entries_of`] on `backend`. `$1` (`?`) is a JSON
/// array of objects: `id`, and what was counted for it (`read_seq`,
/// `last_seq`, `unread`) when something was.
pub fn dashboard_entries_sql(backend: DatabaseBackend) -> &'static str {
    static POSTGRES: LazyLock<String> = LazyLock::new(|| build_sql(true));
    static SQLITE: LazyLock<String> = LazyLock::new(|| build_sql(false));
    if backend == DatabaseBackend::Postgres {
        POSTGRES.as_str()
    } else {
        SQLITE.as_str()
    }
}

/// [`dashboard_entries_sql`]'s text, for PostgreSQL or for SQLite.
fn build_sql(postgres: bool) -> String {
    let (asked, listed) = if postgres {
        (
            "SELECT * FROM jsonb_to_recordset($1::jsonb) \
               AS i(id text, read_seq bigint, last_seq bigint, unread bigint)"
                .to_owned(),
            format!(" AND {}", matches_one_of("c.id", "SELECT id FROM asked")),
        )
    } else {
        (
            "SELECT json_extract(value, '$.id') AS id, \
               json_extract(value, '$.read_seq') AS read_seq, \
               json_extract(value, '$.last_seq') AS last_seq, \
               json_extract(value, '$.unread') AS unread \
             FROM json_each(?)"
                .to_owned(),
            String::new(),
        )
    };
    let read = PROVIDER_READ_SEQ;
    let patient = Role::Patient.as_str();
    let after = |from: &str| {
        format!(
            "(SELECT count(*) FROM messages m WHERE m.consultation_id = c.id \
               AND m.sender_role = '{patient}' AND m.seq > {from} AND m.seq <= c.last_seq)"
        )
    };
    format!(
        "WITH asked AS ({asked}) \
         SELECT c.*, {name} AS patient_name, {read} AS counted_read_seq, \
           c.last_seq AS counted_last_seq, \
           CASE WHEN a.last_seq IS NOT NULL AND a.read_seq = {read} \
               AND a.last_seq <= c.last_seq \
             THEN a.unread + {since_counted} \
             ELSE {since_read} END AS unread \
         FROM consultations c JOIN asked a ON a.id = c.id \
           LEFT JOIN participants p ON p.id = c.patient_id \
         WHERE TRUE{listed}",
        name = PATIENT_NAME,
        since_counted = after("a.last_seq"),
        since_read = after(read),
    )
}
