//! A short seeded fault campaign (`consult-load chaos`): three debug hub
//! nodes, a private PostgreSQL and Redis, faults for 50 seconds, then the
//! checker. It must find no anomaly.
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
    let out = dir.path().join("chaos.json");
    let run = Command::new(env!("CARGO_BIN_EXE_consult-load"))
        .arg("chaos")
        .arg("--hub")
        .arg(hub_binary())
        .arg("--redis-server")
        .arg(&redis)
        .args(["--seed", SEED, "--duration-secs", "50", "--rooms", "4"])
        .arg("--out")
        .arg(&out)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the campaign failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
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
