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
#[allow(clippy::unwrap_used)]
fn fanout(dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let out = dir.join("results.json");
    let run = Command::new(env!("CARGO_BIN_EXE_consult-load"))
        .arg("fanout")
        .arg("--spawn-hub")
        .arg(hub_binary())
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
    for file in ["fanout.md", "fanout-latency.svg", "fanout-throughput.svg"] {
        assert!(report.join(file).is_file(), "{file} written");
    }
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

/// The honest load is delivered whole beside the attackers, and the hub's
/// defences show in what they met: a flood connection closed for saying no
/// `hello` (4000), a half-sent request closed, device registrations
/// refused.
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
        .args(["--slow-readers", "1", "--device-floods", "1"])
        .args(["--hub-env", "CONSULT_SESSION__HANDSHAKE_TIMEOUT_MS=300"])
        .args(["--hub-env", "CONSULT_HTTP__HEADER_READ_TIMEOUT_SECS=1"])
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
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let round = &json["result"]["rounds"][0];
    for phase in ["calm", "attacked"] {
        assert_eq!(round[phase]["delivered"], 150, "{phase}");
        assert_eq!(round[phase]["lost"], 0, "{phase}");
    }
    let tally = &round["tally"];
    assert!(
        tally["flood_outcomes"]["close 4000"].as_u64().unwrap_or(0) >= 1,
        "{tally}"
    );
    assert!(
        tally["half_open_closed"].as_u64().unwrap_or(0) >= 1,
        "{tally}"
    );
    assert!(
        tally["device_answers"]["ok"].as_u64().unwrap_or(0) >= 1,
        "{tally}"
    );
    assert!(
        tally["device_answers"]["rate_limited"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{tally}"
    );
    let slow: u64 = tally["slow_reader_outcomes"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(slow, 1, "{tally}");
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
