//! The `partitions` worker (PostgreSQL only): every
//! `database.partition_interval_secs` it makes sure the message partitions
//! of the current month and the `database.partition_months_ahead` after it
//! exist, gives the months found in the default partition theirs (moving
//! those rows), and reports the default partition's rows in
//! `consult_messages_default_partition_rows`, which should stay 0. The hub
//! runs the same pass once at start, before serving. The work itself is
//! `store::partitions`.

use crate::app::AppState;
use crate::store::partitions::{self, Report};
use crate::store::{Store, StoreError};
use crate::supervisor::Worker;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
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

/// Waits `database.partition_interval_secs`, runs a pass, and again, until
/// `stop`.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let interval = Duration::from_secs(state.config.database.partition_interval_secs);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = pass(&state.store, state.config.database.partition_months_ahead).await {
            tracing::warn!(
                worker = Worker::Partitions.name(),
                error = %error,
                "partition pass failed; retrying at the next one"
            );
        }
    }
}
