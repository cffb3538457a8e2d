//! Appending a batch of messages on PostgreSQL in one statement, so one
//! round trip: the batch goes in as one JSON parameter, and data-modifying
//! CTEs reserve each consultation's sequence numbers (`UPDATE … RETURNING`,
//! whose row locks serialize nodes writing the same room), number the
//! batch's messages per consultation in batch order and insert them. A
//! single statement is its own transaction, so no `BEGIN`/`COMMIT` round
//! trips either, and its text never changes with the batch's size, so the
//! connection's prepared statement is reused. The consultation row it updates
//! also gives each message its partition key, `consultation_month` (see
//! [`partitions`](super::partitions)).
//!
//! A retry (a `client_msg_id` its sender already used in the consultation)
//! is rare, so the writer first inserts without looking earlier sends up
//! ([`append`]): the unique index on `(consultation_id, sender_id,
//! client_msg_id, consultation_month)` refuses the whole statement if one
//! is a retry, nothing of it is kept (no sequence number is used), and the
//! batch goes again through the statement that looks each message up first
//! ([`append_batch`]). After such a refusal the writer looks up first for a
//! while ([`RetryChecks`]), so a client resending in a loop costs one
//! refused statement per [`CHECK_AFTER_A_RETRY`], not one per batch. The
//! look-up was 12–16 µs of the statement's 73–93 µs a message
//! (docs/benchmarks.md, "PostgreSQL: earlier sends looked up only after a
//! refusal"), and it is
//! the one join whose plan follows the partition's statistics: a month's
//! young partition was read whole by every statement. The consultations
//! are found through their primary key whatever the table's size
//! ([`pg_keyed_list`](super::pg_keyed_list)).
//!
//! Outcomes are those of [`batch_append`](super::batch_append) (and of
//! [`messages::append`](super::messages::append) in batch order). Messages
//! that queue notifications or carry an audit entry take that multi-statement
//! path instead: they are rare (alerts, quick messages, staff messages to an
//! offline patient), and their rows need the message's sequence number.

use super::batch_append::{Key, key_of, missing, retry_outcome};
use super::entities::message;
use super::messages::{AppendOutcome, NewMessage, StoredMessage, from_row};
use super::pg_keyed_list::matches_one_of;
use super::{StoreError, to_u64};
use chrono::{DateTime, Utc};
use consult_protocol::{ChatMessage, ConsultationStatus, Role, Seq};
use sea_orm::{ConnectionTrait, DatabaseBackend, SqlErr, Statement, Value};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// How long the writer looks earlier sends up first after a batch was
/// refused for holding a retry.
pub const CHECK_AFTER_A_RETRY: Duration = Duration::from_secs(5);

/// Whether the writer looks earlier sends up before inserting: only for
/// [`CHECK_AFTER_A_RETRY`] after a batch held a retry. One per writer.
#[derive(Debug, Default)]
pub struct RetryChecks {
    until: Option<Instant>,
}

impl RetryChecks {
    /// True while the writer looks earlier sends up before inserting.
    pub fn due(&self) -> bool {
        self.until.is_some_and(|until| Instant::now() < until)
    }
}

/// True when every message of `batch` can take the one-statement path.
pub fn fits(batch: &[&NewMessage]) -> bool {
    batch
        .iter()
        .all(|message| message.notifications.is_empty() && message.audit.is_none())
}

/// The batch's rows (`$1`: a JSON array of objects with `ord`, the index in
/// the batch, and the message's fields).
const INPUT: &str = "input AS (\
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(ord bigint, consultation_id text, \
      sender_id text, sender_role text, kind text, body text, client_msg_id text))";

/// Earlier sends of the batch's keys, and the batch's rows that are not
/// retries.
const EARLIER_AND_FRESH: &str = "earlier AS (\
    SELECT i.ord, m.id, m.consultation_id, m.seq, m.sender_id, m.sender_role, m.kind, \
      m.body, m.client_msg_id, m.created_at \
    FROM input i JOIN messages m ON m.consultation_id = i.consultation_id \
      AND m.sender_id = i.sender_id AND m.client_msg_id = i.client_msg_id), \
  fresh AS (\
    SELECT i.* FROM input i WHERE NOT EXISTS (SELECT 1 FROM earlier e WHERE e.ord = i.ord))";

/// Every row of the batch taken as new.
const ALL_FRESH: &str = "fresh AS (SELECT * FROM input)";

/// The earlier sends found, as rows out.
const EARLIER_ROWS: &str = " UNION ALL \
  SELECT 'earlier', ord, id, consultation_id, seq, sender_id, sender_role, kind, body, \
    client_msg_id, created_at FROM earlier";

/// The statement that reserves, numbers and inserts `fresh` (`$2`: the time
/// stored). Rows out: `outcome` 'stored' (`ord`, `seq`), and with
/// `earlier_rows` 'earlier' (`ord` and the earlier message's columns).
fn statement(fresh: &str, earlier_rows: &str) -> String {
    let patient = Role::Patient.as_str();
    let scheduled = ConsultationStatus::Scheduled.as_str();
    let waiting = ConsultationStatus::WaitingForPatient.as_str();
    let ended = ConsultationStatus::Ended.as_str();
    let cancelled = ConsultationStatus::Cancelled.as_str();
    let listed = matches_one_of("c.id", "SELECT consultation_id FROM counts");
    format!(
        "WITH {INPUT}, {fresh}, \
         counts AS (\
           SELECT consultation_id, count(*) AS n, \
             count(*) FILTER (WHERE sender_role = '{patient}') AS from_patient, \
             bool_or(sender_role <> '{patient}') AS from_staff \
           FROM fresh GROUP BY consultation_id), \
         reserved AS (\
           UPDATE consultations c SET last_seq = c.last_seq + k.n, rev = c.rev + k.from_patient, \
             staff_messaged_first = c.staff_messaged_first \
               OR (k.from_staff AND c.status IN ('{scheduled}', '{waiting}')) \
           FROM counts k \
           WHERE c.id = k.consultation_id \
             AND {listed} \
             AND c.status NOT IN ('{ended}', '{cancelled}') \
           RETURNING c.id, c.last_seq - k.n AS base, \
             date_trunc('month', c.created_at AT TIME ZONE 'UTC')::date AS consultation_month), \
         numbered AS (\
           SELECT f.*, r.base + row_number() OVER (PARTITION BY f.consultation_id ORDER BY f.ord) \
             AS seq, r.consultation_month \
           FROM fresh f JOIN reserved r ON r.id = f.consultation_id), \
         inserted AS (\
           INSERT INTO messages \
             (consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, created_at, \
              consultation_month) \
           SELECT consultation_id, seq, sender_id, sender_role, kind, body, client_msg_id, $2, \
             consultation_month \
           FROM numbered RETURNING 1) \
         SELECT 'stored' AS outcome, ord, NULL::bigint AS id, NULL AS consultation_id, seq, \
           NULL AS sender_id, NULL AS sender_role, NULL AS kind, NULL AS body, \
           NULL AS client_msg_id, NULL::timestamptz AS created_at FROM numbered{earlier_rows}"
    )
}

/// Looks each message's earlier send up, then stores the others.
static CHECKED: LazyLock<String> = LazyLock::new(|| statement(EARLIER_AND_FRESH, EARLIER_ROWS));

/// Stores every message; refused whole by the unique index if one is a
/// retry.
static UNCHECKED: LazyLock<String> = LazyLock::new(|| statement(ALL_FRESH, ""));

/// The statement's text: with the look-up of earlier sends (`checked`) or
/// without. `$1` is the batch as JSON, `$2` the time stored.
pub fn statement_sql(checked: bool) -> &'static str {
    if checked {
        CHECKED.as_str()
    } else {
        UNCHECKED.as_str()
    }
}

/// Appends `batch` (which [`fits`]) in one statement that does not look
/// earlier sends up, unless `checks` says to; if the unique index refuses it
/// (a retry in the batch), again with the look-up, which `checks` then keeps
/// doing for [`CHECK_AFTER_A_RETRY`].
///
/// # Errors
///
/// As [`append_batch`].
pub async fn append(
    db: &impl ConnectionTrait,
    batch: &[&NewMessage],
    checks: &mut RetryChecks,
) -> Result<Vec<AppendOutcome>, StoreError> {
    if !checks.due() {
        match run(db, batch, UNCHECKED.as_str()).await {
            Err(StoreError::Db(error))
                if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                checks.until = Instant::now().checked_add(CHECK_AFTER_A_RETRY);
            }
            outcomes => return outcomes,
        }
    }
    append_batch(db, batch).await
}

/// Appends `batch` (which [`fits`]) in one statement that looks each
/// message's earlier send up first.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure (a concurrent send of the same
/// `client_msg_id` by another node makes the unique index refuse the whole
/// statement; the caller retries message by message).
pub async fn append_batch(
    db: &impl ConnectionTrait,
    batch: &[&NewMessage],
) -> Result<Vec<AppendOutcome>, StoreError> {
    run(db, batch, CHECKED.as_str()).await
}

/// Appends `batch` with `sql`, [`CHECKED`] or [`UNCHECKED`].
async fn run(
    db: &impl ConnectionTrait,
    batch: &[&NewMessage],
    sql: &str,
) -> Result<Vec<AppendOutcome>, StoreError> {
    // A key repeated within the batch is sent once; its repeats take the
    // first one's outcome.
    let mut first_of: HashMap<Key, usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut input = Vec::with_capacity(batch.len());
    for (index, message) in batch.iter().enumerate() {
        if let Some(key) = key_of(message) {
            if let Some(&first) = first_of.get(&key) {
                repeats.push((index, first));
                continue;
            }
            first_of.insert(key, index);
        }
        input.push(serde_json::json!({
            "ord": index,
            "consultation_id": message.consultation_id.as_str(),
            "sender_id": message.sender.as_str(),
            "sender_role": message.sender_role.as_str(),
            "kind": message.kind.as_str(),
            "body": message.body,
            "client_msg_id": message.client_msg_id,
        }));
    }
    let sent_at = Utc::now();
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        [
            Value::Json(Some(Box::new(serde_json::Value::Array(input)))),
            Value::ChronoDateTimeUtc(Some(Box::new(sent_at))),
        ],
    );
    let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
    for row in db.query_all(statement).await? {
        let ord: i64 = row.try_get("", "ord")?;
        let index = usize::try_from(ord)
            .ok()
            .filter(|index| *index < batch.len())
            .ok_or_else(|| StoreError::Corrupt(format!("batch position {ord}")))?;
        let outcome: String = row.try_get("", "outcome")?;
        outcomes[index] = Some(if outcome == "stored" {
            let seq: i64 = row.try_get("", "seq")?;
            stored(batch[index], to_u64(seq), sent_at)
        } else {
            let earlier = from_row(message::Model {
                id: row.try_get("", "id")?,
                consultation_id: row.try_get("", "consultation_id")?,
                seq: row.try_get("", "seq")?,
                sender_id: row.try_get("", "sender_id")?,
                sender_role: row.try_get("", "sender_role")?,
                kind: row.try_get("", "kind")?,
                body: row.try_get("", "body")?,
                client_msg_id: row.try_get("", "client_msg_id")?,
                created_at: row.try_get("", "created_at")?,
            })?;
            retry_outcome(&earlier, batch[index])
        });
    }
    // Neither stored nor a retry: the consultation is unknown or closed.
    for (index, outcome) in outcomes.iter_mut().enumerate() {
        let repeat = repeats.iter().any(|(repeat, _)| *repeat == index);
        if outcome.is_none() && !repeat {
            *outcome = Some(missing(db, &batch[index].consultation_id).await?);
        }
    }
    for (index, first) in repeats {
        outcomes[index] = Some(match &outcomes[first] {
            Some(AppendOutcome::Stored(stored)) => retry_outcome(&stored.message, batch[index]),
            Some(AppendOutcome::Duplicate(earlier)) => retry_outcome(earlier, batch[index]),
            Some(other) => other.clone(),
            None => AppendOutcome::NotFound,
        });
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(AppendOutcome::NotFound))
        .collect())
}

fn stored(message: &NewMessage, seq: u64, sent_at: DateTime<Utc>) -> AppendOutcome {
    AppendOutcome::Stored(StoredMessage {
        message: ChatMessage {
            consultation_id: message.consultation_id.clone(),
            seq: Seq(seq),
            sender: message.sender.clone(),
            sender_role: message.sender_role,
            kind: message.kind,
            body: message.body.clone(),
            client_msg_id: message.client_msg_id.clone(),
            sent_at,
        },
        notifications: Vec::new(),
        dashboard: None,
    })
}
