//! Hub and Redis processes started by the harness.
//!
//! [`SpawnedHub`] runs the real `consult-hub` binary in a temporary folder
//! with load-test settings (a known API key, JWT secret and cluster key, rate limits out
//! of the way) and kills it on drop; [`SpawnedRedis`] does the same for a
//! private `redis-server`. Everything listens on 127.0.0.1 only. This module
//! knows how to start and stop processes, not what the scenarios do.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// API key a spawned hub accepts.
pub const LOAD_API_KEY: &str = "load-test-api-key-not-for-production-0123";
/// HS256 secret a spawned hub signs and checks tokens with.
const LOAD_JWT_SECRET: &str = "load-test-secret-not-for-production-0123456789";
/// The cluster key the hubs of a load test sign their Redis envelopes with.
pub(crate) const LOAD_CLUSTER_KEY: &str = "load-test-cluster-key-not-for-production-0123456789";
/// How long a spawned hub or Redis may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for a hub whose port was taken to fail its bind and exit.
const BIND_SETTLE: Duration = Duration::from_millis(200);
/// Starts tried when the port turns out to be taken.
const START_ATTEMPTS: u32 = 3;
/// Commands per second per connection a spawned hub allows: providers in
/// the load scenarios send thousands a second on one connection.
const LOAD_RATE_LIMIT: &str = "1000000";

/// How to start one hub node.
#[derive(Debug, Clone)]
pub struct HubSpawn {
    /// The `consult-hub` binary.
    pub binary: PathBuf,
    /// `database.url`; `None` for a SQLite file in the hub's temporary folder.
    pub database_url: Option<String>,
    /// `broker.redis_url`; when set the hub uses the Redis broker.
    pub redis_url: Option<String>,
    /// Extra `CONSULT_…` settings as `(name, value)`, applied last.
    pub extra_env: Vec<(String, String)>,
}

/// A running hub process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct SpawnedHub {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub http_base: String,
    /// Where its log (stdout and stderr) goes.
    pub log_path: PathBuf,
    /// The SQLite URL it was given, so a second node can share the file.
    pub database_url: String,
    /// Whether its database is the SQLite file in its own folder.
    owns_sqlite_file: bool,
    _dir: TempDir,
}

impl SpawnedHub {
    /// Starts a hub and waits until `/readyz` answers 200.
    ///
    /// # Errors
    ///
    /// When the binary cannot be started, exits early, or is not ready in
    /// time (the error carries the end of its log).
    pub async fn start(spec: &HubSpawn) -> Result<Self> {
        // The free port is found by binding and closing a socket; another
        // process may take it before the hub binds it. Such a hub exits at
        // once, and is started again on another port.
        let mut attempt = 1;
        loop {
            match Self::start_once(spec).await {
                Err(error) if attempt < START_ATTEMPTS && error.to_string().contains("in use") => {
                    tracing::debug!(%error, "hub port taken; starting it again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(spec: &HubSpawn) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("consult-load-hub-")
            .tempdir()
            .context("creating the hub's temporary folder")?;
        let port = free_port()?;
        let database_url = spec.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display())
        });
        let log_path = dir.path().join("hub.log");
        let log = std::fs::File::create(&log_path).context("creating the hub log")?;
        // The hub runs in its temporary folder, so a relative path must be
        // resolved first; a bare name is left to the PATH search.
        let binary = if spec.binary.components().count() > 1 {
            std::fs::canonicalize(&spec.binary)
                .with_context(|| format!("finding {}", spec.binary.display()))?
        } else {
            spec.binary.clone()
        };
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the hub log handle")?)
            .stderr(log);
        // The hub refuses unknown CONSULT_ variables (such as the test
        // suite's CONSULT_TEST_…), so it gets only the ones set here.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSULT_") {
                command.env_remove(name);
            }
        }
        for (name, value) in hub_env(spec, port, &database_url, dir.path()) {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let mut hub = Self {
            child,
            http_base: format!("http://127.0.0.1:{port}"),
            log_path,
            database_url,
            owns_sqlite_file: spec.database_url.is_none(),
            _dir: dir,
        };
        hub.wait_ready().await?;
        Ok(hub)
    }

    /// The folder holding the hub's SQLite file, when it was given none
    /// of its own.
    pub fn sqlite_folder(&self) -> Option<&Path> {
        self.owns_sqlite_file.then(|| self._dir.path())
    }

    /// The temporary folder it runs in, whatever its database.
    pub fn folder(&self) -> &Path {
        self._dir.path()
    }

    /// The hub's process id, for `/proc` sampling.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.http_base);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("checking the hub process")? {
                bail!(
                    "hub exited during start ({status}); log:\n{}",
                    log_tail(&self.log_path)
                );
            }
            let ready = http.get(&url).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                // Another hub may hold this port and have answered; this
                // one then fails to bind and exits within moments.
                tokio::time::sleep(BIND_SETTLE).await;
                if let Some(status) = self.child.try_wait().context("checking the hub process")? {
                    bail!(
                        "hub exited during start ({status}); log:\n{}",
                        log_tail(&self.log_path)
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "hub not ready after {READY_TIMEOUT:?}; log:\n{}",
                    log_tail(&self.log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SpawnedHub {
    fn drop(&mut self) {
        // A hub that exited by itself during the run is a finding: say how,
        // with the end of its log, before the folder holding it is removed.
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!(
                "consult-load: the hub exited by itself ({status}); the end of its log:\n{}",
                log_tail(&self.log_path)
            );
        }
        // Nothing is left to save: the database lives in the temporary folder.
        if let Err(error) = self.child.kill() {
            tracing::debug!(%error, "hub already gone");
        }
        if let Err(error) = self.child.wait() {
            tracing::debug!(%error, "could not reap hub");
        }
    }
}

/// The `CONSULT_…` settings a started hub gets: its port, database, the
/// load-test keys, the broker when `spec` names Redis, then `spec`'s own.
pub fn hub_env(
    spec: &HubSpawn,
    port: u16,
    database_url: &str,
    dir: &Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("CONSULT_LISTEN", format!("127.0.0.1:{port}")),
        ("CONSULT_DATABASE__URL", database_url.to_owned()),
        ("CONSULT_AUTH__API_KEYS", format!("[\"{LOAD_API_KEY}\"]")),
        ("CONSULT_AUTH__JWT_SECRET", format!("\"{LOAD_JWT_SECRET}\"")),
        (
            "CONSULT_AUTH__KEY_FILE",
            dir.join("hub.key").display().to_string(),
        ),
        (
            "CONSULT_SESSION__RATE_LIMIT_PER_SEC",
            LOAD_RATE_LIMIT.into(),
        ),
        ("CONSULT_SESSION__RATE_LIMIT_BURST", LOAD_RATE_LIMIT.into()),
        ("CONSULT_LOG__FILTER", "warn".into()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    if let Some(redis_url) = &spec.redis_url {
        env.push(("CONSULT_BROKER__KIND".into(), "redis".into()));
        env.push(("CONSULT_BROKER__REDIS_URL".into(), redis_url.clone()));
        env.push((
            "CONSULT_BROKER__CLUSTER_KEY".into(),
            format!("\"{LOAD_CLUSTER_KEY}\""),
        ));
    }
    env.extend(spec.extra_env.iter().cloned());
    env
}

/// A `redis-server` command for 127.0.0.1:`port`: no persistence, at most
/// 10,000 clients, no output.
pub(crate) fn redis_command(binary: &Path, port: u16) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--maxclients", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Waits until something listens on 127.0.0.1:`port`.
///
/// # Errors
///
/// When nothing does within `limit`.
pub(crate) async fn wait_listening(port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("nothing listened on port {port} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A private `redis-server` on a free port, without persistence; killed
/// when dropped.
#[derive(Debug)]
pub struct SpawnedRedis {
    child: Child,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
}

impl SpawnedRedis {
    /// Starts `binary` (for example `redis-server`) and waits until it
    /// accepts connections.
    ///
    /// # Errors
    ///
    /// When it cannot be started or does not listen in time.
    pub async fn start(binary: &Path) -> Result<Self> {
        let port = free_port()?;
        let child = redis_command(binary, port)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let redis = Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        wait_listening(port, READY_TIMEOUT).await?;
        Ok(redis)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedRedis {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            tracing::debug!(%error, "redis-server already gone");
        }
        if let Err(error) = self.child.wait() {
            tracing::debug!(%error, "could not reap redis-server");
        }
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on right now.
///
/// # Errors
///
/// When no socket can be bound.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

/// The last 30 lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Finds a built `consult-hub` binary: `$CONSULT_HUB_BIN`, else
/// `<target>/<profile>/consult-hub` where `<target>` is
/// `$CARGO_TARGET_DIR` or the nearest `target` folder above the running
/// executable. `profile` is `debug` or `release`.
pub fn locate_hub_binary(profile: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CONSULT_HUB_BIN") {
        return Some(PathBuf::from(path));
    }
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        roots.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(
            exe.ancestors()
                .filter(|dir| dir.file_name().is_some_and(|name| name == "target"))
                .map(Path::to_path_buf),
        );
    }
    roots
        .into_iter()
        .map(|root| root.join(profile).join("consult-hub"))
        .find(|path| path.is_file())
}

/// Raises this process's soft open-file limit to its hard limit, so that it
/// and the hubs and workers it starts (which inherit it) can hold as many
/// sockets as the machine allows. Returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
