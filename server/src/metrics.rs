//! The Prometheus recorder and the names of the hub's metrics.
//!
//! Metric names are prefixed `consult_`. The recorder is process-wide; it is
//! installed once, however many hubs a process (a test) starts, with a thread
//! of its own that folds recorded histogram samples into their summaries
//! every [`UPKEEP_EVERY`]: the recorder keeps each sample until then (or
//! until `/metrics` is read), so a hub nobody scrapes would otherwise hold
//! every sample it ever recorded.

use consult_protocol::{CloseCode, ConsultationStatus, ErrorCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often recorded histogram samples are folded into their summaries
/// (what the exporter's own upkeep task does, at its default interval).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The name of the thread that does it.
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Installs the recorder on first call and returns the rendering handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            register_zeros();
            let upkept = handle.clone();
            if let Err(error) = spawn_upkeep(UPKEEP_EVERY, move || upkept.run_upkeep()) {
                tracing::error!(%error, "metrics upkeep thread not started; histogram samples are kept until /metrics is read");
            }
            handle
        })
        .clone()
}

/// Runs `upkeep` every `every` on a thread of its own, for the life of the
/// process (the recorder lives as long). Without the thread the hub still
/// runs, and each read of `/metrics` folds the samples as before.
///
/// # Errors
///
/// When the thread cannot be started.
fn spawn_upkeep(
    every: Duration,
    upkeep: impl Fn() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(UPKEEP_THREAD.to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                upkeep();
            }
        })
}

fn describe() {
    metrics::describe_gauge!(
        "consult_messages_default_partition_rows",
        "PostgreSQL: message rows in the default partition at the last partition pass (should be 0)."
    );
    metrics::describe_counter!(
        "consult_partition_analyzes_total",
        "PostgreSQL: message partitions analyzed because they doubled since their statistics were taken."
    );
    metrics::describe_counter!(
        "consult_retention_consultations_total",
        "Consultations whose messages retention deleted."
    );
    metrics::describe_counter!(
        "consult_retention_messages_deleted_total",
        "Messages retention deleted."
    );
    metrics::describe_gauge!(
        "consult_build_info",
        "Always 1; the labels name the hub's version and the commit it was built from."
    );
    metrics::describe_gauge!(
        "consult_connections_active",
        "Authenticated WebSocket connections."
    );
    metrics::describe_counter!(
        "consult_connections_total",
        "WebSocket connections accepted."
    );
    metrics::describe_gauge!(
        "consult_connection_slots_open",
        "WebSocket connections open, counted against http.max_connections."
    );
    metrics::describe_counter!(
        "consult_connections_refused_total",
        "WebSocket upgrades refused at a connection cap, by code."
    );
    metrics::describe_counter!(
        "consult_accept_errors_total",
        "Failed accepts (out of descriptors, say)."
    );
    metrics::describe_counter!(
        "consult_http_header_timeouts_total",
        "Connections closed for sending no request within the header read timeout."
    );
    metrics::describe_counter!(
        "consult_node_id_conflicts_total",
        "Times the presence heartbeat found another node holding this node's broker.node_id."
    );
    metrics::describe_counter!(
        "consult_worker_restarts_total",
        "Background workers restarted after a failure, by worker."
    );
    metrics::describe_gauge!(
        "consult_worker_up",
        "1 while a background worker runs, 0 while it waits to be restarted."
    );
    metrics::describe_counter!("consult_messages_stored_total", "Messages persisted.");
    metrics::describe_counter!(
        "consult_receipts_total",
        "Delivered and read receipts recorded (answered after their flush committed)."
    );
    metrics::describe_counter!(
        "consult_receipt_flushes_total",
        "Receipt flushes committed (one per flush of the receipt batcher; on a SQLite file inside the message writer's transactions)."
    );
    metrics::describe_counter!(
        "consult_frames_fanned_out_total",
        "Frames queued to local subscribers."
    );
    metrics::describe_counter!(
        "consult_slow_consumer_kicks_total",
        "Connections closed because their outbound queue was full."
    );
    metrics::describe_counter!(
        "consult_revocations_unreadable_total",
        "Messages on the revocation control topic that were not a revocation."
    );
    metrics::describe_counter!(
        "consult_client_errors_total",
        "Error frames sent to clients, by code."
    );
    metrics::describe_counter!(
        "consult_session_closes_total",
        "Sessions closed, by close code."
    );
    metrics::describe_counter!(
        "consult_status_changes_total",
        "Consultation status changes."
    );
    metrics::describe_histogram!(
        "consult_append_batch_size",
        "Messages per group-commit transaction."
    );
    metrics::describe_histogram!(
        "consult_append_queue_seconds",
        "Time a message waited in the group-commit writer's queue before its batch began."
    );
    metrics::describe_histogram!(
        "consult_command_seconds",
        "Time from a command's frame being decoded to its answer written, by command."
    );
    metrics::describe_histogram!(
        "consult_sqlite_commit_seconds",
        "Time the SQLite writer thread took per batch, waits for the lock included."
    );
    metrics::describe_histogram!(
        "consult_sqlite_checkpoint_seconds",
        "Time a SQLite WAL checkpoint took, by mode."
    );
    metrics::describe_counter!(
        "consult_broker_publish_failures_total",
        "Events the broker failed to publish."
    );
    metrics::describe_counter!(
        "consult_broker_dropped_total",
        "Events dropped because the Redis publish queue was full."
    );
    metrics::describe_counter!(
        "consult_broker_resync_markers_total",
        "Resync markers published after events could not be."
    );
    metrics::describe_counter!(
        "consult_broker_disconnects_total",
        "Times the Redis subscriber lost its connection (on a Redis Cluster: a node connection, or a subscription Redis dropped as its slot moved)."
    );
    metrics::describe_counter!(
        "consult_resyncs_total",
        "Hub-wide resyncs after a reconnect."
    );
    metrics::describe_counter!(
        "consult_gap_fills_total",
        "Sequence gaps a session filled from the database."
    );
    metrics::describe_counter!(
        "consult_events_not_in_database_total",
        "Broker events dropped because the database does not hold their seq."
    );
    metrics::describe_counter!(
        "consult_broker_rejected_total",
        "Events from Redis dropped as not authentic, by reason."
    );
    metrics::describe_counter!(
        "consult_notifications_total",
        "Notification outcomes, by channel and status."
    );
    metrics::describe_counter!(
        "consult_sms_keywords_total",
        "Inbound SMS carrier keywords applied (STOP, START), by keyword."
    );
    metrics::describe_gauge!(
        "consult_outbox_due_rows",
        "Pending notification rows due now and not yet claimed, deployment-wide."
    );
    metrics::describe_gauge!(
        "consult_outbox_oldest_due_seconds",
        "How long the oldest due pending notification row has waited, deployment-wide."
    );
}

/// Counters without labels, registered at zero on start.
const UNLABELLED_COUNTERS: &[&str] = &[
    "consult_connections_total",
    "consult_messages_stored_total",
    "consult_receipts_total",
    "consult_receipt_flushes_total",
    "consult_frames_fanned_out_total",
    "consult_slow_consumer_kicks_total",
    "consult_broker_publish_failures_total",
    "consult_broker_dropped_total",
    "consult_broker_resync_markers_total",
    "consult_broker_disconnects_total",
    "consult_resyncs_total",
    "consult_gap_fills_total",
    "consult_events_not_in_database_total",
    "consult_revocations_unreadable_total",
    "consult_accept_errors_total",
    "consult_node_id_conflicts_total",
    "consult_http_header_timeouts_total",
    "consult_retention_consultations_total",
    "consult_retention_messages_deleted_total",
    "consult_partition_analyzes_total",
];

/// Every counter family (with its known label values) and gauge at zero,
/// and `consult_build_info` at one, so a fresh hub's `/metrics` already
/// lists what dashboards and alerts query: "no data" then means a broken
/// scrape, not a quiet hub, and the first increment is not lost to
/// `rate()`. Histograms are registered empty, with every label value.
fn register_zeros() {
    for name in UNLABELLED_COUNTERS {
        metrics::counter!(*name).absolute(0);
    }
    metrics::gauge!("consult_connections_active").set(0.0);
    metrics::gauge!("consult_messages_default_partition_rows").set(0.0);
    crate::supervisor::register_metrics();
    // Histograms too, empty (`_count 0`), with every label value.
    for name in [
        "consult_append_batch_size",
        "consult_append_queue_seconds",
        "consult_sqlite_commit_seconds",
    ] {
        let _registered = metrics::histogram!(name);
    }
    for command in consult_protocol::ClientFrame::KINDS {
        let _registered = metrics::histogram!("consult_command_seconds", "command" => command);
    }
    for mode in ["PASSIVE", "RESTART"] {
        let _registered = metrics::histogram!("consult_sqlite_checkpoint_seconds", "mode" => mode);
    }
    metrics::gauge!("consult_connection_slots_open").set(0.0);
    for code in ["too_many_connections", "too_many_connections_from_address"] {
        metrics::counter!("consult_connections_refused_total", "code" => code).absolute(0);
    }
    for code in ErrorCode::ALL {
        metrics::counter!("consult_client_errors_total", "code" => code.as_str()).absolute(0);
    }
    for code in CloseCode::ALL {
        metrics::counter!("consult_session_closes_total", "code" => code.code().to_string())
            .absolute(0);
    }
    metrics::counter!("consult_session_closes_total", "code" => "gone").absolute(0);
    for channel in ["push", "sms"] {
        for status in ["sent", "pending", "failed", "cancelled"] {
            metrics::counter!("consult_notifications_total", "channel" => channel, "status" => status)
                .absolute(0);
        }
    }
    for reason in ["malformed", "unsigned", "bad_signature", "stale"] {
        metrics::counter!("consult_broker_rejected_total", "reason" => reason).absolute(0);
    }
    for outcome in ["accepted", "replayed"] {
        metrics::counter!("consult_sms_inbound_total", "outcome" => outcome).absolute(0);
    }
    for keyword in ["stop", "start"] {
        metrics::counter!("consult_sms_keywords_total", "keyword" => keyword).absolute(0);
    }
    metrics::gauge!("consult_outbox_due_rows").set(0.0);
    metrics::gauge!("consult_outbox_oldest_due_seconds").set(0.0);
    for status in [
        ConsultationStatus::WaitingForPatient,
        ConsultationStatus::PatientReady,
        ConsultationStatus::InProgress,
        ConsultationStatus::Ended,
        ConsultationStatus::Cancelled,
    ] {
        metrics::counter!("consult_status_changes_total", "to" => status.as_str()).absolute(0);
    }
    metrics::gauge!(
        "consult_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => option_env!("CONSULT_BUILD_COMMIT").unwrap_or("unknown")
    )
    .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::{UPKEEP_THREAD, spawn_upkeep};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[test]
    fn upkeep_runs_again_and_again_on_a_thread_of_its_own() {
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let record = Arc::clone(&seen);
        spawn_upkeep(Duration::from_millis(5), move || {
            let name = std::thread::current().name().map(str::to_owned);
            record.lock().unwrap().push(name);
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 3 {
            assert!(
                Instant::now() < deadline,
                "upkeep ran {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter()
                .all(|name| name.as_deref() == Some(UPKEEP_THREAD)),
            "{seen:?}"
        );
    }
}
