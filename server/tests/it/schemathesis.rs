//! Schemathesis against a real hub: property-based requests generated from
//! the served OpenAPI document (fixed seed, bounded examples and time), with
//! the API key. No 5xx, and every status, media type, header and body must
//! be one the document describes; the stateful phase walks the document's
//! links (create a consultation → read it, its messages, its presence…).

use crate::harness::{API_KEY, TestHub};
use std::path::PathBuf;

/// `CONSULT_TEST_SCHEMATHESIS` (set by `scripts/test`, which installs it),
/// else `st` on the PATH.
fn schemathesis() -> PathBuf {
    std::env::var_os("CONSULT_TEST_SCHEMATHESIS").map_or_else(|| PathBuf::from("st"), PathBuf::from)
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_nothing_the_document_does_not_describe() {
    let hub = TestHub::start().await;
    let st = schemathesis();
    // Its own folder: Schemathesis keeps a cache of earlier failures in
    // the working directory and would replay them, so each run starts
    // from nothing but the seed.
    let workdir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(&st)
        .current_dir(workdir.path())
        .arg("run")
        .arg(hub.url("/v1/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
        ])
        // A longer exploration: CONSULT_SCHEMATHESIS_SEED and
        // CONSULT_SCHEMATHESIS_EXAMPLES override the suite's fixed ones.
        .args(["--seed", &setting("CONSULT_SCHEMATHESIS_SEED", "20261205")])
        .args(["--max-examples", &setting("CONSULT_SCHEMATHESIS_EXAMPLES", "50")])
        .args([
            // One worker: CPython 3.11's parser is not safe across the
            // threads that more workers would use.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--header",
        ])
        .arg(format!("Authorization: Bearer {API_KEY}"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} (scripts/test installs it; or set CONSULT_TEST_SCHEMATHESIS): {error}",
                st.display()
            )
        });
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "schemathesis failed:\n{stdout}\n{stderr}"
    );
    // It really exercised the API, statefully included.
    assert!(stdout.contains("Stateful"), "{stdout}");
}
