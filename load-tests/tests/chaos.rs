//! The runs that start a whole deployment of real processes: a short
//! seeded fault campaign (`consult-load chaos`: three debug hub nodes, a
//! private PostgreSQL and Redis, faults for 50 seconds, then the checker;
//! it must find no anomaly), and a small `consult-load cluster` run (a
//! drain and a kill under chat; nothing may be lost).
//!
//! It needs the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`;
//! `scripts/test` installs them) and `redis-server`
//! (`$CONSULT_TEST_REDIS_SERVER`, else `redis-server` on `PATH`); when one
//! is missing the test fails and says which. The hub binary is found as
//! `tests/scenarios.rs` finds it.

use consult_load::chaos::postgres::find_bindir;
use consult_load::hub_process::locate_hub_binary;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The seed of the test's campaign.
const SEED: &str = "17";

// A test helper: a hub that cannot be built fails the test.
#[allow(clippy::expect_used)]
fn hub_binary() -> PathBuf {
    if let Some(binary) = locate_hub_binary("debug") {
        return binary;
    }
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

fn redis_server() -> PathBuf {
    std::env::var_os("CONSULT_TEST_REDIS_SERVER")
        .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

/// Runs `consult-load SUBCOMMAND --hub … --redis-server … ARGS --out
/// DIR/SUBCOMMAND.json`, requires success, and returns the results and
/// what it printed.
#[allow(clippy::unwrap_used)]
fn run_load(subcommand: &str, dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let out = dir.join(format!("{subcommand}.json"));
    let run = Command::new(env!("CARGO_BIN_EXE_consult-load"))
        .arg(subcommand)
        .arg("--hub")
        .arg(hub_binary())
        .arg("--redis-server")
        .arg(redis_server())
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "consult-load {subcommand} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (json, stdout)
}

#[test]
#[allow(clippy::unwrap_used)]
fn a_short_seeded_campaign_finds_no_anomaly() {
    if let Err(error) = find_bindir() {
        panic!("the chaos campaign needs PostgreSQL: {error:#}");
    }
    let redis = redis_server();
    assert!(
        Command::new(&redis).arg("--version").output().is_ok(),
        "the chaos campaign needs redis-server ({} did not run); install redis-server \
         or set CONSULT_TEST_REDIS_SERVER",
        redis.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (json, stdout) = run_load(
        "chaos",
        dir.path(),
        &["--seed", SEED, "--duration-secs", "50", "--rooms", "4"],
    );
    assert_eq!(json["anomalies_total"], 0, "{stdout}");
    assert_eq!(json["seed"], 17);
    // The run did something worth checking: messages acknowledged and
    // stored, faults of several kinds, notifications sent.
    assert!(
        json["findings"]["stored_messages"].as_u64().unwrap() > 50,
        "{stdout}"
    );
    assert!(json["faults"].as_object().unwrap().len() >= 3, "{stdout}");
    assert!(
        json["operations"]["chat ok"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert!(
        json["findings"]["notifications_by_status"]["sent"]
            .as_u64()
            .unwrap()
            > 0,
        "{stdout}"
    );
}

/// `consult-load cluster`, small: three nodes on a Redis Cluster and a
/// private PostgreSQL, patients, providers and admins, chat both ways; node
/// 0 is drained and node 1 killed while they chat. Every moved client
/// resumes on another node and no acknowledged message is lost.
#[test]
#[allow(clippy::unwrap_used)]
fn a_small_cluster_run_moves_every_client_of_a_drained_and_a_killed_node_and_loses_nothing() {
    if let Err(error) = find_bindir() {
        panic!("the cluster run needs PostgreSQL: {error:#}");
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let (json, stdout) = run_load(
        "cluster",
        dir.path(),
        &[
            "--broker",
            "redis-cluster",
            "--nodes",
            "3",
            "--patients",
            "300",
            "--patients-per-provider",
            "5",
            "--clinics",
            "2",
            "--messages-per-minute",
            "60",
            "--steady-secs",
            "5",
            "--between-secs",
            "2",
            "--after-secs",
            "5",
            "--quiet",
            "--report-dir",
            report.to_str().unwrap(),
        ],
    );
    let count = |value: &serde_json::Value| value.as_u64().unwrap();
    // 300 patients, 60 chatting rooms: 20 % of 5 per provider is one each.
    assert_eq!(count(&json["census"]["patients"]), 300, "{stdout}");
    assert_eq!(count(&json["census"]["providers"]), 60, "{stdout}");
    assert_eq!(count(&json["census"]["admins"]), 4, "{stdout}");
    assert_eq!(count(&json["connected"]), 364, "{stdout}");
    assert_eq!(count(&json["lost"]), 0, "{stdout}");
    assert_eq!(count(&json["gaps"]), 0, "{stdout}");
    assert_eq!(count(&json["disconnected_at_end"]), 0, "{stdout}");
    for fault in ["drain", "kill"] {
        let lost = count(&json[fault]["lost"]);
        assert!(lost > 50, "{fault}: only {lost} moved\n{stdout}");
        assert_eq!(count(&json[fault]["resumed"]), lost, "{fault}\n{stdout}");
        assert_eq!(count(&json[fault]["resume_failed"]), 0, "{fault}\n{stdout}");
    }
    assert!(
        json["drain"]["exited_by_itself"].as_bool().unwrap(),
        "{stdout}"
    );
    // Both members of 60 rooms sent about one message a second.
    assert!(count(&json["chat"]["acknowledged"]) > 500, "{stdout}");
    assert!(count(&json["received"]) > 1000, "{stdout}");
    assert!(
        count(&json["steady"]["delivery"]["count"]) > 100,
        "{stdout}"
    );
    assert!(
        json["steady"]["dashboard_deltas_per_sec"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );
    assert!(
        json["steady"]["window"]["redis_commands_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{stdout}"
    );
    assert!(
        json["steady"]["window"]["postgres_rows_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{stdout}"
    );
    for svg in ["sessions", "cpu", "latency", "resume"] {
        let path = report.join(format!("cluster-{svg}.svg"));
        assert!(path.is_file(), "{} missing", path.display());
    }
}
