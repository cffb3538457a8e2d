//! Consultations: creation, look-up, listing, status changes and the rows of
//! the "Active and Waiting" list.

use super::entities::{consultation, message, receipt};
use super::{StoreError, to_u64};
use crate::domain::Consultation;
use chrono::{DateTime, Utc};
use consult_protocol::{
    ClinicId, ConsultationId, ConsultationStatus, DashboardEntry, Role, UserId,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};

/// What the host platform supplies to create a consultation.
#[derive(Debug, Clone)]
pub struct NewConsultation {
    /// The clinic.
    pub clinic_id: ClinicId,
    /// The provider.
    pub provider_id: UserId,
    /// The patient.
    pub patient_id: UserId,
    /// Booked start.
    pub scheduled_at: DateTime<Utc>,
    /// Initial status: `scheduled` or `waiting_for_patient`.
    pub status: ConsultationStatus,
}

/// Which consultations to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this clinic.
    pub clinic_id: Option<ClinicId>,
    /// Only this provider.
    pub provider_id: Option<UserId>,
    /// Only this patient.
    pub patient_id: Option<UserId>,
    /// Only these statuses (all when empty).
    pub statuses: Vec<ConsultationStatus>,
    /// Only those changed since.
    pub updated_since: Option<DateTime<Utc>>,
    /// Only those after this one in the listing's order (scheduled time,
    /// then id): where the previous page ended.
    pub after: Option<(DateTime<Utc>, ConsultationId)>,
    /// At most this many.
    pub limit: u64,
}

/// Inserts a consultation with a fresh id.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn create(
    db: &impl ConnectionTrait,
    new: NewConsultation,
) -> Result<Consultation, StoreError> {
    let now = Utc::now();
    let waiting_since = (new.status == ConsultationStatus::WaitingForPatient).then_some(now);
    let row = consultation::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        clinic_id: Set(new.clinic_id.to_string()),
        provider_id: Set(new.provider_id.to_string()),
        patient_id: Set(new.patient_id.to_string()),
        status: Set(new.status.as_str().to_owned()),
        scheduled_at: Set(new.scheduled_at),
        waiting_since: Set(waiting_since),
        staff_messaged_first: Set(false),
        last_seq: Set(0),
        rev: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ended_at: Set(None),
        messages_purged_at: Set(None),
    };
    let inserted = consultation::Entity::insert(row)
        .exec_with_returning(db)
        .await?;
    from_row(inserted)
}

/// Looks a consultation up.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn find(
    db: &impl ConnectionTrait,
    id: &ConsultationId,
) -> Result<Option<Consultation>, StoreError> {
    consultation::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Lists consultations, oldest booking first.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &ListFilter,
) -> Result<Vec<Consultation>, StoreError> {
    let mut condition = Condition::all();
    if let Some(clinic) = &filter.clinic_id {
        condition = condition.add(consultation::Column::ClinicId.eq(clinic.to_string()));
    }
    if let Some(provider) = &filter.provider_id {
        condition = condition.add(consultation::Column::ProviderId.eq(provider.to_string()));
    }
    if let Some(patient) = &filter.patient_id {
        condition = condition.add(consultation::Column::PatientId.eq(patient.to_string()));
    }
    if !filter.statuses.is_empty() {
        condition = condition
            .add(consultation::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
    }
    if let Some(since) = filter.updated_since {
        condition = condition.add(consultation::Column::UpdatedAt.gte(since));
    }
    if let Some((scheduled_at, id)) = &filter.after {
        condition = condition.add(
            Condition::any()
                .add(consultation::Column::ScheduledAt.gt(*scheduled_at))
                .add(
                    Condition::all()
                        .add(consultation::Column::ScheduledAt.eq(*scheduled_at))
                        .add(consultation::Column::Id.gt(id.to_string())),
                ),
        );
    }
    consultation::Entity::find()
        .filter(condition)
        .order_by_asc(consultation::Column::ScheduledAt)
        .order_by_asc(consultation::Column::Id)
        .limit(filter.limit.max(1))
        .all(db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

/// Moves a consultation from `from` to `to` if it is still in `from`, bumping
/// its revision. Returns the updated consultation, or `None` when its status
/// changed meanwhile.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn transition(
    db: &impl ConnectionTrait,
    id: &ConsultationId,
    from: ConsultationStatus,
    to: ConsultationStatus,
) -> Result<Option<Consultation>, StoreError> {
    let now = Utc::now();
    let mut update = consultation::Entity::update_many()
        .col_expr(consultation::Column::Status, Expr::value(to.as_str()))
        .col_expr(
            consultation::Column::Rev,
            Expr::col(consultation::Column::Rev).add(1),
        )
        .col_expr(consultation::Column::UpdatedAt, Expr::value(now));
    if to == ConsultationStatus::WaitingForPatient {
        update = update.col_expr(consultation::Column::WaitingSince, Expr::value(now));
    }
    if to.is_terminal() {
        // When message retention counts from.
        update = update.col_expr(consultation::Column::EndedAt, Expr::value(now));
    }
    let result = update
        .filter(consultation::Column::Id.eq(id.to_string()))
        .filter(consultation::Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    find(db, id).await
}

/// Builds the dashboard row of one consultation.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn dashboard_entry(
    db: &impl ConnectionTrait,
    consultation: &Consultation,
    patient_name: String,
) -> Result<DashboardEntry, StoreError> {
    let read_seq = receipt::Entity::find_by_id((
        consultation.id.to_string(),
        consultation.provider_id.to_string(),
    ))
    .one(db)
    .await?
    .map_or(0, |row| row.read_seq);
    let unread = message::Entity::find()
        .filter(message::Column::ConsultationId.eq(consultation.id.to_string()))
        .filter(message::Column::SenderRole.eq(Role::Patient.as_str()))
        .filter(message::Column::Seq.gt(read_seq))
        .count(db)
        .await?;
    Ok(entry(consultation, patient_name, unread))
}

/// The consultation `id` and its dashboard row, in one query: the consultation,
/// its patient's display name (the patient's id if unregistered) and the
/// patient's messages after the provider's read receipt. A patient's every
/// message changes the row, so this runs once per such message.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure; [`StoreError::Corrupt`] for an
/// unknown stored status.
pub async fn dashboard_entry_of(
    db: &impl ConnectionTrait,
    id: &ConsultationId,
) -> Result<Option<(Consultation, DashboardEntry)>, StoreError> {
    let backend = db.get_database_backend();
    let placeholder = if backend == DatabaseBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let sql = dashboard_row_sql(placeholder);
    let statement = Statement::from_sql_and_values(backend, sql, [id.to_string().into()]);
    let Some(row) = db.query_one(statement).await? else {
        return Ok(None);
    };
    let consultation = from_row(consultation::Model::from_query_result(&row, "")?)?;
    let name: String = row.try_get("", "patient_name")?;
    let unread: i64 = row.try_get("", "unread")?;
    let entry = entry(&consultation, name, to_u64(unread));
    Ok(Some((consultation, entry)))
}

/// The query of a consultation's dashboard row, the consultation's id bound
/// at `placeholder`: every `consultations` column, `patient_name` (the
/// patient's display name, its id if unregistered) and `unread` (the
/// patient's messages after the provider's read receipt).
pub(super) fn dashboard_row_sql(placeholder: &str) -> String {
    dashboard_rows_sql(&format!("c.id = {placeholder}"))
}

/// The patient's name as a dashboard row shows it, on `c` and `p`.
pub(super) const PATIENT_NAME: &str = "COALESCE(p.display_name, c.patient_id)";

/// The `seq` the provider of `c` has read up to, 0 before any receipt.
pub(super) const PROVIDER_READ_SEQ: &str = "COALESCE((SELECT r.read_seq FROM receipts r \
     WHERE r.consultation_id = c.id AND r.user_id = c.provider_id), 0)";

/// The dashboard rows of the consultations `condition` (on `c`) selects.
fn dashboard_rows_sql(condition: &str) -> String {
    format!(
        "SELECT c.*, {PATIENT_NAME} AS patient_name, \
           (SELECT count(*) FROM messages m WHERE m.consultation_id = c.id \
              AND m.sender_role = '{patient}' AND m.seq > {PROVIDER_READ_SEQ}) AS unread \
         FROM consultations c LEFT JOIN participants p ON p.id = c.patient_id \
         WHERE {condition}",
        patient = Role::Patient.as_str(),
    )
}

/// [`dashboard_row_sql`] with `read_seq` (the provider's read receipt)
/// instead of `unread`, for a reader that counts unread messages itself
/// (the SQLite writer, see `sqlite_writer::unread`).
pub(super) fn dashboard_row_read_seq_sql(placeholder: &str) -> String {
    format!(
        "SELECT c.*, {PATIENT_NAME} AS patient_name, {PROVIDER_READ_SEQ} AS read_seq \
         FROM consultations c LEFT JOIN participants p ON p.id = c.patient_id \
         WHERE c.id = {placeholder}"
    )
}

/// The count of the patient's messages in consultation `consultation` after
/// `seq`: a dashboard row's `unread` for a provider who read up to `seq`.
pub(super) fn patient_messages_after_sql(consultation: &str, seq: &str) -> String {
    format!(
        "SELECT count(*) FROM messages WHERE consultation_id = {consultation} \
         AND sender_role = '{patient}' AND seq > {seq}",
        patient = Role::Patient.as_str(),
    )
}

/// A consultation's dashboard row from the consultation and what the row
/// query adds to it.
pub(super) fn entry(
    consultation: &Consultation,
    patient_name: String,
    unread: u64,
) -> DashboardEntry {
    DashboardEntry {
        consultation_id: consultation.id.clone(),
        provider_id: consultation.provider_id.clone(),
        patient_id: consultation.patient_id.clone(),
        patient_name,
        status: consultation.status,
        scheduled_at: consultation.scheduled_at,
        waiting_since: consultation.waiting_since,
        unread,
        rev: consultation.rev,
    }
}

pub(super) fn from_row(row: consultation::Model) -> Result<Consultation, StoreError> {
    Ok(Consultation {
        status: row
            .status
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("consultation status {}", row.status)))?,
        id: ConsultationId(row.id),
        clinic_id: ClinicId(row.clinic_id),
        provider_id: UserId(row.provider_id),
        patient_id: UserId(row.patient_id),
        scheduled_at: row.scheduled_at,
        waiting_since: row.waiting_since,
        staff_messaged_first: row.staff_messaged_first,
        last_seq: to_u64(row.last_seq),
        rev: to_u64(row.rev),
    })
}

/// Marks that staff messaged the patient while it was not yet ready.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn mark_staff_messaged_first(
    db: &impl ConnectionTrait,
    id: &ConsultationId,
) -> Result<(), StoreError> {
    consultation::Entity::update_many()
        .col_expr(consultation::Column::StaffMessagedFirst, Expr::value(true))
        .filter(consultation::Column::Id.eq(id.to_string()))
        .filter(consultation::Column::Status.is_in([
            ConsultationStatus::Scheduled.as_str(),
            ConsultationStatus::WaitingForPatient.as_str(),
        ]))
        .exec(db)
        .await?;
    Ok(())
}
