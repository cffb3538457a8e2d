//! The real `consult-hub` binary, each test in its own temporary working
//! directory (so the default SQLite file and key file land there): `token`,
//! `serve`, `serve --demo`, `migrate`, SIGTERM, a bad configuration and
//! `config --print-defaults`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use consult_client::{Client, ClientError, ClosedBy};
use consult_protocol::{ErrorCode, Role};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const BIN: &str = env!("CARGO_BIN_EXE_consult-hub");

#[path = "cli/config_reference.rs"]
mod config_reference;
#[path = "cli/phi_in_logs.rs"]
mod phi_in_logs;

/// The binary with `dir` as its working directory and none of the caller's
/// `CONSULT_…` variables (the test runner sets some for itself).
fn hub_command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSULT_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs a subcommand to completion, within 60 s.
async fn run(dir: &Path, args: &[&str]) -> Output {
    timeout(
        Duration::from_secs(60),
        hub_command(dir).args(args).output(),
    )
    .await
    .expect("the command finishes within 60 s")
    .expect("the binary starts")
}

/// Times `serve` is started when its port turns out to be taken.
const STARTS: u32 = 3;

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `consult-hub serve`, killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    /// Every stdout and stderr line so far, for failure messages.
    output: Arc<Mutex<Vec<String>>>,
    /// Stdout lines as they come.
    stdout_rx: mpsc::UnboundedReceiver<String>,
}

impl Served {
    /// Starts `serve` with `extra` flags in `dir` and waits until `/readyz`
    /// answers 200. The port is found free a moment before the hub binds
    /// it; should another process take it meanwhile, the hub exits and is
    /// started again on another port.
    async fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with(dir, extra, &[]).await
    }

    /// [`Served::start`] with extra environment variables (set after the
    /// caller's `CONSULT_…` ones are removed; `RUST_LOG` may be among them).
    async fn start_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut attempt = 1;
        loop {
            let mut served = Self::spawn(dir, extra, env);
            match served.wait_ready().await {
                Ok(()) => return served,
                Err(output) if attempt < STARTS && output.contains("Address already in use") => {
                    attempt += 1;
                }
                Err(output) => panic!("serve exited before it was ready:\n{output}"),
            }
        }
    }

    /// Starts `serve` on a free port, without waiting.
    fn spawn(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let listen = addr.to_string();
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(extra);
        let mut child = hub_command(dir)
            .envs(env.iter().copied())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (stdout_tx, stdout_rx) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(collect(stdout, output.clone(), Some(stdout_tx)));
        tokio::spawn(collect(stderr, output.clone(), None));
        Self {
            child,
            addr,
            output,
            stdout_rx,
        }
    }

    /// Waits until `/readyz` answers 200; the output if the process exits
    /// first.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(self.url("/readyz")).send().await {
                if response.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the output readers take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!("exit {status}:\n{}", self.output()));
            }
            assert!(
                Instant::now() < deadline,
                "not ready within 30 s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The next stdout line, within 10 s.
    async fn next_line(&mut self) -> String {
        match timeout(Duration::from_secs(10), self.stdout_rx.recv()).await {
            Ok(Some(line)) => line,
            _ => panic!("no further output:\n{}", self.output()),
        }
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        match timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("still running after {limit:?}:\n{}", self.output()),
        }
    }
}

async fn collect(
    stream: impl tokio::io::AsyncRead + Unpin,
    output: Arc<Mutex<Vec<String>>>,
    lines_tx: Option<mpsc::UnboundedSender<String>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        output.lock().unwrap().push(line.clone());
        if let Some(lines_tx) = &lines_tx {
            let _ = lines_tx.send(line);
        }
    }
}

/// True for three non-empty base64url parts joined by dots.
fn looks_like_jwt(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Runs `token` in `dir` and returns the printed token.
async fn issue_token(dir: &Path, role: &str, user: &str, clinic: &str) -> String {
    let output = run(
        dir,
        &["token", "--role", role, "--user", user, "--clinic", clinic],
    )
    .await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = stdout.trim();
    assert!(looks_like_jwt(token), "stdout is exactly a JWT: {stdout:?}");
    token.to_owned()
}

#[tokio::test]
async fn a_token_printed_by_the_cli_is_accepted_by_serve_with_the_same_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = issue_token(dir.path(), "provider", "dr-1", "c1").await;
    assert!(
        dir.path().join("consult-hub.key").is_file(),
        "the key file is generated in the working directory"
    );

    let served = Served::start(dir.path(), &[]).await;
    let (client, welcome) = Client::connect(&served.ws_url(), &token).await.unwrap();
    assert_eq!(welcome.user.as_str(), "dr-1");
    assert_eq!(welcome.role, Role::Provider);
    assert_eq!(welcome.clinic.as_str(), "c1");
    client.ping().await.unwrap();

    let elsewhere = tempfile::tempdir().unwrap();
    let foreign = issue_token(elsewhere.path(), "provider", "dr-1", "c1").await;
    match Client::connect(&served.ws_url(), &foreign).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::InvalidToken),
        other => panic!("a token signed with another key file: {other:?}"),
    }
}

#[tokio::test]
async fn serve_demo_prints_tokens_and_consultations_the_provider_dashboard_shows() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = Served::start(dir.path(), &["--demo"]).await;

    // Consultation lines: `  <id>  patient <user> <status>`; token lines
    // follow their `  <role> <user> <name>` line.
    let mut consultations = Vec::new();
    let mut tokens = Vec::new();
    let mut previous = String::new();
    while tokens.len() < 5 {
        let line = served.next_line().await;
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [id, "patient", patient, status] = words[..] {
            consultations.push((id.to_owned(), patient.to_owned(), status.to_owned()));
        }
        if words.len() == 1 && looks_like_jwt(words[0]) {
            let header: Vec<&str> = previous.split_whitespace().collect();
            tokens.push((
                header[0].to_owned(),
                header[1].to_owned(),
                words[0].to_owned(),
            ));
        }
        previous = line;
    }
    assert_eq!(consultations.len(), 3, "{}", served.output());
    let roles: Vec<&str> = tokens.iter().map(|(role, _, _)| role.as_str()).collect();
    assert!(roles.contains(&"provider") && roles.contains(&"patient") && roles.contains(&"admin"));

    let ready = reqwest::get(served.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    for warning in [
        "SQLite page cache left unguarded",
        "SQLite log frames written one by one",
    ] {
        assert!(
            !served.output().contains(warning),
            "the binary prepares SQLite before it opens the database:\n{}",
            served.output()
        );
    }

    let (_, user, provider_token) = tokens
        .iter()
        .find(|(role, _, _)| role == "provider")
        .unwrap();
    let (provider, _) = Client::connect(&served.ws_url(), provider_token)
        .await
        .unwrap();
    let entries = provider.watch_dashboard(None).await.unwrap();
    let mut shown: Vec<String> = entries
        .iter()
        .map(|entry| {
            assert_eq!(entry.provider_id.as_str(), user);
            entry.consultation_id.to_string()
        })
        .collect();
    let mut expected: Vec<String> = consultations
        .iter()
        .filter(|(_, _, status)| status != "scheduled")
        .map(|(id, _, _)| id.clone())
        .collect();
    shown.sort();
    expected.sort();
    assert!(!expected.is_empty(), "the demo has active consultations");
    assert_eq!(
        shown, expected,
        "the dashboard lists the active and waiting ones"
    );
}

#[tokio::test]
async fn sigterm_closes_clients_with_going_away_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let token = issue_token(dir.path(), "patient", "pat-1", "c1").await;
    let mut served = Served::start(dir.path(), &[]).await;
    let (client, _) = Client::connect(&served.ws_url(), &token).await.unwrap();
    client.ping().await.unwrap();

    served.terminate();
    let info = timeout(Duration::from_secs(5), client.closed())
        .await
        .expect("the client is closed within 5 s");
    assert_eq!(info.by, ClosedBy::Hub, "{info}");
    assert_eq!(info.code, Some(1001), "{info}");
    let status = served.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}:\n{}", served.output());
}

#[tokio::test]
async fn migrate_creates_the_sqlite_database_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("consult-hub.db");
    for _ in 0..2 {
        let output = run(dir.path(), &["migrate"]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("migrations applied"), "{stdout}");
        assert!(
            std::fs::metadata(&database).unwrap().len() > 0,
            "the database file holds the schema"
        );
    }
}

/// Runs `serve` in `dir` with `env`, expects it to exit non-zero before
/// serving, and returns its standard error.
async fn serve_refused(dir: &Path, env: &[(&str, &str)]) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let output = timeout(
        Duration::from_secs(60),
        hub_command(dir)
            .envs(env.iter().copied())
            .args(["serve", "--listen", &listen])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_short_jwt_secret_stops_the_hub_and_an_empty_one_means_generated() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = serve_refused(dir.path(), &[("CONSULT_AUTH__JWT_SECRET", "hunter2")]).await;
    assert!(
        stderr.contains("auth.jwt_secret must be at least 32 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the value is never printed: {stderr}"
    );

    // Set but empty: the generated key file's secret signs and verifies.
    let token = issue_token(dir.path(), "provider", "dr-1", "c1").await;
    let served = Served::start_with(dir.path(), &[], &[("CONSULT_AUTH__JWT_SECRET", "")]).await;
    let (client, _) = Client::connect(&served.ws_url(), &token).await.unwrap();
    client.ping().await.unwrap();
}

#[tokio::test]
async fn a_bad_config_exits_non_zero_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = serve_refused(
        dir.path(),
        &[
            ("CONSULT_DATABASE__URL", "mysql://x"),
            ("CONSULT_SESSION__OUTBOUND_QUEUE_CAPACITY", "0"),
        ],
    )
    .await;
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(stderr.contains("database.url"), "{stderr}");
    assert!(
        stderr.contains("session.outbound_queue_capacity"),
        "every problem is listed: {stderr}"
    );
    assert!(
        !dir.path().join("consult-hub.db").exists(),
        "nothing was started"
    );

    let output = timeout(
        Duration::from_secs(60),
        hub_command(dir.path())
            .env("CONSULT_SESSION__QUEUE_SIZE", "10")
            .args(["migrate"])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("queue_size"),
        "the unknown key is named: {stderr}"
    );
}
