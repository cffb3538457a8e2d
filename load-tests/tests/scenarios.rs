//! Each scenario runs briefly against a real hub started from its binary,
//! and its numbers are sane: everything sent is delivered, nothing is
//! missed, latencies are positive, files are written. Nothing here times
//! performance.
//!
//! The hub binary is found under the target folder (`cargo test
//! --workspace` builds it); when it is missing it is built once with
//! `cargo build -p consult-hub` into a separate target folder, so the
//! build does not wait on the lock this test run holds.

use consult_load::hub_process::{locate_hub_binary, raise_open_file_limit};
use consult_load::scenario::dashboard::{self, DashboardOptions};
use consult_load::scenario::idle::{self, IdleOptions};
use consult_load::scenario::storm::{self, StormOptions};
use consult_load::target::{Target, TargetSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `consult-hub` binary to start.
fn hub_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| locate_hub_binary("debug").unwrap_or_else(build_hub))
        .clone()
}

// A test helper: a hub that cannot be built fails the test.
#[allow(clippy::expect_used)]
fn build_hub() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = workspace.join("target").join("load-tests-hub");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "-p", "consult-hub", "--bin", "consult-hub"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(&workspace)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p consult-hub failed");
    target_dir.join("debug").join("consult-hub")
}

/// Runs `consult-load fanout` against a spawned debug hub with `args`,
/// writing its results under `dir`; the results JSON and what it printed.
/// A test helper: a run that cannot start or write its results fails the
/// test.
fn fanout(dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    fanout_on(&hub_binary(), dir, args)
}

/// [`fanout`] against `binary` (a hub or the floor).
#[allow(clippy::unwrap_used)]
fn fanout_on(binary: &Path, dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let out = dir.join("results.json");
    let run = Command::new(env!("CARGO_BIN_EXE_consult-load"))
        .arg("fanout")
        .arg("--spawn-hub")
        .arg(binary)
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "consult-load failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (json, String::from_utf8_lossy(&run.stdout).into_owned())
}

// A test helper: a hub that cannot start fails the test.
#[allow(clippy::expect_used)]
async fn spawned_hub() -> Target {
    raise_open_file_limit();
    let spec = TargetSpec {
        spawn_hub: Some(hub_binary()),
        nodes: 1,
        ..TargetSpec::default()
    };
    Target::open(&spec).await.expect("hub starts")
}

#[test]
fn fanout_delivers_every_message_and_writes_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let report_arg = report.to_str().unwrap().to_owned();
    let (json, _) = fanout(
        dir.path(),
        &[
            "--rooms",
            "2",
            "--members",
            "2",
            "--messages",
            "50",
            "--rate",
            "200",
            "--report-dir",
            &report_arg,
        ],
    );
    let result = &json["result"];
    assert_eq!(json["scenario"], "fanout");
    assert_eq!(result["sent"]["ok"], 50);
    assert_eq!(result["expected"], 100);
    assert_eq!(result["delivered"], 100);
    assert_eq!(result["lost"], 0);
    assert_eq!(result["gaps"], 0);
    assert!(result["latency"]["p50_us"].as_u64().unwrap() > 0);
    assert!(result["latency"]["max_us"].as_u64() >= result["latency"]["p99_us"].as_u64());
    assert!(result["hub_cpu_us_per_delivered"].as_f64().unwrap() > 0.0);
    assert!(result["hub"]["end"]["rss_kib"].as_u64().unwrap() > 0);
    // The started hub's SQLite file had the disk probed beside it.
    assert!(result["disk_sync"]["count"].as_u64().unwrap() > 0);
    assert!(result["disk_sync"]["p99_us"].as_u64().unwrap() > 0);
    // Its slow syncs, if any, are listed with when they began.
    let slow = result["disk_sync_slow"].as_array().unwrap();
    assert!(slow.len() as u64 <= result["disk_sync"]["count"].as_u64().unwrap());
    for sync in slow {
        assert!(sync["took_us"].as_u64().unwrap() >= 20_000, "{sync}");
        assert!(sync["at_unix_us"].as_u64().unwrap() > 0, "{sync}");
    }
    for file in ["fanout.md", "fanout-latency.svg", "fanout-throughput.svg"] {
        assert!(report.join(file).is_file(), "{file} written");
    }
}

/// The floor is started and measured as a hub is, in both directions.
#[test]
fn fanout_against_the_floor_delivers_every_message_both_ways() {
    let floor = Path::new(env!("CARGO_BIN_EXE_consult-floor"));
    for direction in [None, Some("--patients-send")] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--rooms", "3", "--messages", "60", "--rate", "300"];
        args.extend(direction);
        let (json, _) = fanout_on(floor, dir.path(), &args);
        let result = &json["result"];
        assert_eq!(result["sent"]["ok"], 60, "{direction:?}");
        assert_eq!(result["expected"], 60, "{direction:?}");
        assert_eq!(result["delivered"], 60, "{direction:?}");
        assert_eq!(result["lost"], 0, "{direction:?}");
        assert_eq!(result["gaps"], 0, "{direction:?}");
        // The floor's process was sampled as a hub's is (its CPU for 60
        // messages may round to no clock tick at all).
        assert!(result["hub"]["end"]["rss_kib"].as_u64().unwrap() > 0);
        assert!(result["hub_cpu_us_per_delivered"].as_f64().is_some());
    }
}

/// With `--receipts` the floor answers every member's `ack` (and sends the
/// room its `receipt` frame) while every message still arrives.
#[test]
fn fanout_with_receipts_against_the_floor_answers_every_receipt() {
    let floor = Path::new(env!("CARGO_BIN_EXE_consult-floor"));
    let dir = tempfile::tempdir().unwrap();
    let (json, _) = fanout_on(
        floor,
        dir.path(),
        &[
            "--rooms",
            "3",
            "--messages",
            "60",
            "--rate",
            "300",
            "--receipts",
        ],
    );
    let result = &json["result"];
    assert_eq!(result["delivered"], 60);
    assert_eq!(result["lost"], 0);
    // A `delivered` receipt for each message and a `read` for every fourth.
    let receipts = &result["receipts"];
    assert_eq!(receipts["sent"], 75, "{receipts}");
    assert_eq!(receipts["ok"], 75, "{receipts}");
    assert_eq!(receipts["refused"], 0, "{receipts}");
}

/// The default shape is the consultation's (one provider, one patient);
/// `--patients-send` turns the direction round.
#[test]
fn fanout_with_patients_sending_delivers_every_message_to_the_providers() {
    let dir = tempfile::tempdir().unwrap();
    let (json, stdout) = fanout(
        dir.path(),
        &[
            "--rooms",
            "3",
            "--messages",
            "30",
            "--rate",
            "200",
            "--patients-send",
        ],
    );
    let result = &json["result"];
    assert_eq!(result["options"]["members"], 1);
    assert_eq!(result["options"]["senders_join"], true);
    assert_eq!(result["options"]["patients_send"], true);
    assert_eq!(result["sent"]["ok"], 30);
    assert_eq!(result["delivered"], 30);
    assert_eq!(result["lost"], 0);
    assert!(stdout.contains("patients send (joined)"), "{stdout}");
}

/// A count from the JSON, 0 when absent.
fn count_of(value: &serde_json::Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// The honest load is delivered whole beside the attackers, and the hub's
/// defences show in what they met, as the attackers saw it and as the hub
/// counted it: flood connections closed for saying no `hello` (4000) and
/// for talking before it (4001), half-sent requests closed, the device
/// flooder's connections past the per-user cap refused (4007) and its
/// registrations past the limit refused, the slow reader dropped. The hub
/// is started with small limits so that all of it happens within seconds.
#[test]
#[allow(clippy::unwrap_used)]
fn abuse_delivers_the_honest_load_and_reports_what_the_attackers_met() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("abuse.json");
    let run = Command::new(env!("CARGO_BIN_EXE_consult-load"))
        .arg("abuse")
        .arg("--spawn-hub")
        .arg(hub_binary())
        .args(["--rooms", "5", "--rate", "50", "--duration-secs", "3"])
        .args(["--handshake-flood-per-sec", "20", "--half-open", "3"])
        .args(["--slow-readers", "1", "--slow-reader-rate", "18"])
        .args(["--device-floods", "1", "--device-flood-connections", "3"])
        .args(["--hub-env", "CONSULT_SESSION__HANDSHAKE_TIMEOUT_MS=300"])
        .args(["--hub-env", "CONSULT_HTTP__HEADER_READ_TIMEOUT_SECS=1"])
        .args(["--hub-env", "CONSULT_HTTP__MAX_CONNECTIONS_PER_USER=2"])
        .args(["--hub-env", "CONSULT_HTTP__SOCKET_SEND_BUFFER_BYTES=4096"])
        .args(["--hub-env", "CONSULT_SESSION__OUTBOUND_QUEUE_CAPACITY=8"])
        .args(["--hub-env", "CONSULT_SESSION__WRITE_TIMEOUT_SECS=1"])
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "consult-load failed: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let round = &json["result"]["rounds"][0];
    for phase in ["calm", "attacked"] {
        let honest = &round[phase]["honest"];
        assert_eq!(honest["sent"]["ok"], 150, "{phase}: {stdout}");
        assert_eq!(honest["delivered"], 150, "{phase}: {stdout}");
        assert_eq!(honest["lost"], 0, "{phase}: {stdout}");
        assert_eq!(honest["connect_failures"], 0, "{phase}: {stdout}");
        assert!(count_of(&honest["latency"]["p99_us"]) > 0, "{phase}");
        assert!(honest["hub"]["cpu_us"].as_u64().is_some(), "{phase}");
    }
    // Without attackers the hub closed and refused nothing.
    let calm = &round["calm"]["hub_counts"];
    for code in ["4000", "4001", "4003", "4007"] {
        let key = format!("session_closes{{code=\"{code}\"}}");
        assert_eq!(count_of(&calm[&key]), 0, "{calm}");
    }
    // With them, the hub counted what the attackers met.
    let hub = &round["attacked"]["hub_counts"];
    for code in ["4000", "4001", "4007"] {
        let key = format!("session_closes{{code=\"{code}\"}}");
        assert!(count_of(&hub[&key]) >= 1, "{key}: {hub}");
    }
    assert!(
        count_of(&hub["client_errors{code=\"rate_limited\"}"]) >= 1,
        "{hub}"
    );
    let tally = &round["tally"];
    assert!(
        count_of(&tally["flood_outcomes"]["silent close 4000"]) >= 1,
        "{tally}"
    );
    assert!(
        count_of(&tally["flood_outcomes"]["chatty close 4001"]) >= 1,
        "{tally}"
    );
    assert!(count_of(&tally["flood_held"]["peak"]) >= 1, "{tally}");
    assert!(count_of(&tally["half_open_closed"]) >= 1, "{tally}");
    let devices = &tally["device_answers"];
    assert!(count_of(&devices["ok"]) >= 1, "{tally}");
    assert!(count_of(&devices["rate_limited"]) >= 1, "{tally}");
    assert!(count_of(&devices["close 4007"]) >= 1, "{tally}");
    assert_eq!(count_of(&tally["device_held"]["peak"]), 2, "{tally}");
    assert!(count_of(&tally["slow_reader_joined"]) >= 1, "{tally}");
    let slow_dropped = tally["slow_reader_dropped_after_secs"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(slow_dropped >= 1, "{tally}");
    assert!(count_of(&hub["slow_consumer_kicks"]) >= 1, "{hub}");
    assert!(
        stdout.contains("round 1 attacked: delivered 150/150 (lost 0)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn idle_connections_in_worker_processes_are_counted_and_measured() {
    let target = spawned_hub().await;
    let options = IdleOptions {
        clients: 40,
        rooms: 4,
        processes: 2,
        sources: 2,
        connect_concurrency: 16,
        settle_secs: 0,
        hold_secs: 0,
        worker_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_consult-load"))),
    };
    let result = idle::run(&target, &options, true).await.unwrap();
    assert_eq!(result.connected, 40, "{:?}", result.first_error);
    assert_eq!(result.failed, 0);
    assert!(result.connect_latency.p50_us > 0);
    assert!(result.rss_bytes_per_connection.is_some());
    assert!(result.cpu_us_per_connect.is_some_and(|cpu| cpu >= 0.0));
    assert!(result.held.unwrap().fds >= 40);
}

#[tokio::test]
async fn storm_resumes_every_follower_without_missing_a_message() {
    let target = spawned_hub().await;
    let options = StormOptions {
        clients: 60,
        rooms: 6,
        providers: 2,
        rate: 100.0,
        before_secs: 1,
        after_secs: 1,
        processes: 1,
        sources: 2,
        connect_concurrency: 32,
        finish_timeout_secs: 20,
        body_bytes: 64,
        worker_exe: None,
    };
    let result = storm::run(&target, &options, true).await.unwrap();
    assert_eq!(result.connected, 60);
    assert_eq!(result.resumed, 60, "{:?}", result.first_resume_error);
    assert!(result.time_to_resume_all_secs > 0.0);
    assert_eq!(result.sent.failed, 0);
    assert!(result.sent.ok > 0);
    assert_eq!(result.finish.followers, 60);
    assert_eq!(result.finish.missed, 0);
    assert_eq!(result.finish.gaps, 0);
    // Ten followers per room, each saw every message of its room.
    assert_eq!(result.finish.received, result.sent.ok * 10);
    assert!(result.delivery_latency.p50_us > 0);
}

#[tokio::test]
async fn dashboard_delivers_one_delta_per_change_to_every_watcher() {
    let target = spawned_hub().await;
    let options = DashboardOptions {
        watchers: 3,
        pairs: 2,
        cycles: 6,
        drain_timeout_secs: 10,
    };
    let result = dashboard::run(&target, &options, true).await.unwrap();
    assert_eq!(result.changes_failed, 0, "{:?}", result.first_error);
    assert_eq!(result.changes_ok, 24);
    assert_eq!(result.deltas_expected, 72);
    assert_eq!(result.deltas_received, 72);
    assert!(result.delta_latency.p50_us > 0);
    assert!(result.command_latency.p50_us > 0);
}
