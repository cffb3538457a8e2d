//! The "Active and Waiting" list: snapshots and per-row deltas, published to
//! the provider's feed and the clinic's feed.

use super::ServiceError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::Consultation;
use crate::hub::topics;
use crate::store::dashboard_rows::{self, UnreadCounts};
use crate::store::{consultations, participants};
use consult_protocol::{
    ClinicId, ConsultationId, ConsultationStatus, DashboardEntry, ErrorCode, Role, ServerFrame,
    UserId,
};

/// How far back a catch-up looks for rows that left the list.
pub const CLOSED_LOOKBACK_HOURS: i64 = 24;
/// Largest snapshot returned.
const SNAPSHOT_LIMIT: u64 = 500;

/// Which feed a principal watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// One provider's consultations.
    Provider(UserId),
    /// The whole clinic.
    Clinic,
}

/// Works out the feed `principal` asked for.
///
/// # Errors
///
/// `invalid_value` for a malformed provider id; `forbidden` for patients,
/// and for providers naming another provider.
pub fn feed_for(principal: &Principal, provider: Option<UserId>) -> Result<Feed, ServiceError> {
    ServiceError::check_optional_id("provider_id", provider.as_ref())?;
    match (principal.role, provider) {
        (Role::Patient, _) => Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "patients have no dashboard",
        )),
        (Role::Provider, None) => Ok(Feed::Provider(principal.user.clone())),
        (Role::Provider, Some(other)) if other == principal.user => Ok(Feed::Provider(other)),
        (Role::Provider, Some(_)) => Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "a provider may watch only its own list",
        )),
        (Role::Admin, None) => Ok(Feed::Clinic),
        (Role::Admin, Some(provider)) => Ok(Feed::Provider(provider)),
    }
}

/// The topic of a feed.
pub fn topic(principal: &Principal, feed: &Feed) -> crate::broker::Topic {
    match feed {
        Feed::Provider(provider) => topics::provider_feed(&principal.clinic, provider),
        Feed::Clinic => topics::clinic_feed(&principal.clinic),
    }
}

/// The current rows of a feed, longest waiting first.
///
/// # Errors
///
/// A store failure.
pub async fn snapshot(
    state: &AppState,
    principal: &Principal,
    feed: &Feed,
) -> Result<Vec<DashboardEntry>, ServiceError> {
    let statuses = vec![
        ConsultationStatus::WaitingForPatient,
        ConsultationStatus::PatientReady,
        ConsultationStatus::InProgress,
    ];
    rows(state, principal, feed, statuses, None).await
}

/// What a watcher that may have missed deltas needs: the current rows, and
/// the rows that left the list (ended, cancelled) in the last
/// [`CLOSED_LOOKBACK_HOURS`] hours so the client can remove them.
///
/// # Errors
///
/// A store failure.
pub async fn catch_up(
    state: &AppState,
    principal: &Principal,
    feed: &Feed,
) -> Result<Vec<DashboardEntry>, ServiceError> {
    let since = chrono::Utc::now() - chrono::Duration::hours(CLOSED_LOOKBACK_HOURS);
    let closed = vec![ConsultationStatus::Ended, ConsultationStatus::Cancelled];
    let mut entries = rows(state, principal, feed, closed, Some(since)).await?;
    entries.extend(snapshot(state, principal, feed).await?);
    Ok(entries)
}

async fn rows(
    state: &AppState,
    principal: &Principal,
    feed: &Feed,
    statuses: Vec<ConsultationStatus>,
    updated_since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<DashboardEntry>, ServiceError> {
    let db = state.store.connection();
    let filter = consultations::ListFilter {
        after: None,
        clinic_id: Some(principal.clinic.clone()),
        provider_id: match feed {
            Feed::Provider(provider) => Some(provider.clone()),
            Feed::Clinic => None,
        },
        patient_id: None,
        statuses,
        updated_since,
        limit: SNAPSHOT_LIMIT,
    };
    let list = consultations::list(db, &filter).await?;
    let patients: Vec<UserId> = list.iter().map(|c| c.patient_id.clone()).collect();
    let names = participants::display_names(db, &patients).await?;
    let mut entries = Vec::with_capacity(list.len());
    for consultation in &list {
        let name = names
            .get(&consultation.patient_id)
            .cloned()
            .unwrap_or_else(|| consultation.patient_id.to_string());
        entries.push(consultations::dashboard_entry(db, consultation, name).await?);
    }
    entries.sort_by_key(|entry| (entry.waiting_since.unwrap_or(entry.scheduled_at), entry.rev));
    Ok(entries)
}

/// Publishes the current row of one consultation to its provider's and its
/// clinic's feeds.
///
/// # Errors
///
/// A store failure.
pub async fn publish_entry(state: &AppState, id: &ConsultationId) -> Result<(), ServiceError> {
    let found = consultations::dashboard_entry_of(state.store.connection(), id).await?;
    let Some((consultation, entry)) = found else {
        return Ok(());
    };
    publish_to_staff(state, &consultation, &ServerFrame::Dashboard { entry });
    Ok(())
}

/// Reads the dashboard rows of `ids` in one query, their unread counts
/// carried on from `counts`, and publishes each to its provider's and
/// clinic's feeds.
///
/// # Errors
///
/// A store failure.
pub async fn publish_entries(
    state: &AppState,
    ids: &[ConsultationId],
    counts: &mut UnreadCounts,
) -> Result<(), ServiceError> {
    for (consultation, entry) in
        dashboard_rows::dashboard_entries_of(state.store.connection(), ids, counts).await?
    {
        publish_to_staff(state, &consultation, &ServerFrame::Dashboard { entry });
    }
    Ok(())
}

/// Publishes `frame` to the consultation's provider feed and clinic feed:
/// the staff watching its "Active and Waiting" list.
pub fn publish_to_staff(state: &AppState, consultation: &Consultation, frame: &ServerFrame) {
    publish_to_feeds(
        &state.broker,
        &consultation.clinic_id,
        &consultation.provider_id,
        frame,
    );
}

/// Publishes `frame` through `broker` to `provider`'s feed and its clinic's
/// feed.
pub fn publish_to_feeds(
    broker: &crate::broker::Broker,
    clinic: &ClinicId,
    provider: &UserId,
    frame: &ServerFrame,
) {
    let provider = topics::provider_feed(clinic, provider);
    super::events::publish_through(broker, provider, None, frame);
    super::events::publish_through(broker, topics::clinic_feed(clinic), None, frame);
}

/// Publishes a row in the background, logging a failure.
pub fn spawn_publish_entry(state: std::sync::Arc<AppState>, id: ConsultationId) {
    let tracker = state.tracker.clone();
    tracker.spawn(async move {
        if let Err(error) = publish_entry(&state, &id).await {
            tracing::error!(error = %error, consultation = %id, "dashboard delta failed");
        }
    });
}
