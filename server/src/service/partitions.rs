//! The `partitions` worker (PostgreSQL only): every
//! `database.partition_interval_secs` it makes sure the message partitions
//! of the current month and the `database.partition_months_ahead` after it
//! exist, gives the months found in the default partition theirs (moving
//! those rows), and reports the default partition's rows in
//! `consult_messages_default_partition_rows`, which should stay 0. The hub
//! runs the same pass once at start, before serving. Every
//! `database.partition_analyze_interval_secs` it also analyzes the
//! partitions that doubled since their statistics were taken, so the
//! writers' plans follow a month's partition as it fills. The work itself
//! is `store::partitions`.

use crate::app::AppState;
use crate::store::partitions::{self, Report};
use crate::store::{Store, StoreError};
use crate::supervisor::Worker;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One pass: creates what is due and records the gauge.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn pass(store: &Store, ahead: u32) -> Result<Report, StoreError> {
    let report = partitions::maintain(store.connection(), Utc::now().date_naive(), ahead).await?;
    #[allow(clippy::cast_precision_loss)] // A row count far below 2^52.
    metrics::gauge!("consult_messages_default_partition_rows").set(report.default_rows as f64);
    if report.default_rows > 0 {
        tracing::warn!(
            rows = report.default_rows,
            "message rows left in the default partition"
        );
    }
    Ok(report)
}

/// Analyzes the partitions that doubled since their statistics were taken
/// (see [`partitions::refresh_statistics`]), counting each analyze in
/// `consult_partition_analyzes_total`.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn refresh_statistics(store: &Store) -> Result<Vec<String>, StoreError> {
    let analyzed = partitions::refresh_statistics(store.connection()).await?;
    metrics::counter!("consult_partition_analyzes_total").increment(analyzed.len() as u64);
    Ok(analyzed)
}

/// Every `database.partition_interval_secs` runs a pass, and every
/// `database.partition_analyze_interval_secs` refreshes the statistics of
/// the partitions that grew, until `stop`.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let database = &state.config.database;
    let pass_every = Duration::from_secs(database.partition_interval_secs);
    let analyze_every = Duration::from_secs(database.partition_analyze_interval_secs);
    let mut next_pass = Instant::now() + pass_every;
    let mut next_analyze = Instant::now() + analyze_every;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next_pass.min(next_analyze)) => {}
        }
        let now = Instant::now();
        if now >= next_pass {
            next_pass = now + pass_every;
            if let Err(error) = pass(&state.store, database.partition_months_ahead).await {
                tracing::warn!(
                    worker = Worker::Partitions.name(),
                    error = %error,
                    "partition pass failed; retrying at the next one"
                );
            }
        }
        if now >= next_analyze {
            next_analyze = now + analyze_every;
            if let Err(error) = refresh_statistics(&state.store).await {
                tracing::warn!(
                    worker = Worker::Partitions.name(),
                    error = %error,
                    "partition statistics refresh failed; retrying at the next one"
                );
            }
        }
    }
}
