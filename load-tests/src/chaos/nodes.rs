//! The hub nodes of the fault campaign: each a `consult-hub` process on a
//! port fixed for the whole run, so that it can be killed (`SIGKILL`),
//! drained (`SIGTERM`) and started again where its clients expect it. Its
//! settings (from [`crate::hub_process::hub_env`]) point it at its own
//! fault proxies for Redis and PostgreSQL. This module starts and stops
//! processes; it does not decide when.

use crate::hub_process::{HubSpawn, free_port, hub_env, log_tail};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a node may take to answer `/readyz` with 200 after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One hub node.
#[derive(Debug)]
pub struct ChaosNode {
    /// Its index (0, 1, 2).
    pub index: usize,
    /// `http://127.0.0.1:PORT`.
    pub http_base: String,
    /// `ws://127.0.0.1:PORT/v1/ws`.
    pub ws_url: String,
    port: u16,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    child: Option<Child>,
    dir: TempDir,
}

impl ChaosNode {
    /// Prepares node `index` (not started): `spec` names the binary, its
    /// database and Redis URLs (through its proxies) and extra settings.
    ///
    /// # Errors
    ///
    /// When its folder or port cannot be had.
    pub fn new(index: usize, spec: &HubSpawn) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("consult-chaos-hub-")
            .tempdir()
            .context("creating a node's folder")?;
        let port = free_port()?;
        let database_url = spec
            .database_url
            .clone()
            .context("a chaos node needs a database URL")?;
        let env = hub_env(spec, port, &database_url, dir.path());
        let binary = if spec.binary.components().count() > 1 {
            std::fs::canonicalize(&spec.binary)
                .with_context(|| format!("finding {}", spec.binary.display()))?
        } else {
            spec.binary.clone()
        };
        Ok(Self {
            index,
            http_base: format!("http://127.0.0.1:{port}"),
            ws_url: format!("ws://127.0.0.1:{port}/v1/ws"),
            port,
            binary,
            env,
            log_path: dir.path().join("hub.log"),
            child: None,
            dir,
        })
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether its process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the process (if not running) and waits for `/readyz` 200.
    ///
    /// # Errors
    ///
    /// When it exits or is not ready in time; the process is then killed.
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("opening the node log")?;
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSULT_") {
                command.env_remove(name);
            }
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        // Errors at start are read from the log's last lines: no backtraces.
        command
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0");
        self.child = Some(command.spawn().context("starting consult-hub")?);
        if let Err(error) = self.wait_ready().await {
            self.kill();
            return Err(error);
        }
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let url = format!("{}/readyz", self.http_base);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                bail!(
                    "node {} exited during start; log:\n{}",
                    self.index,
                    log_tail(&self.log_path)
                );
            }
            let ready = http.get(&url).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready on port {} after {READY_TIMEOUT:?}; log:\n{}",
                    self.index,
                    self.port,
                    log_tail(&self.log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: the process dies at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                tracing::debug!(%error, "node already gone");
            }
            if let Err(error) = child.wait() {
                tracing::debug!(%error, "could not reap node");
            }
        }
    }

    /// `SIGTERM`, then waits for the process to exit; after `limit` it is
    /// killed. Returns how long it took and whether it exited by itself.
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent.
    pub async fn terminate(&mut self, limit: Duration) -> Result<(Duration, bool)> {
        let Some(child) = self.child.as_mut() else {
            return Ok((Duration::ZERO, true));
        };
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM failed ({status})");
        }
        while started.elapsed() < limit {
            if !matches!(child.try_wait(), Ok(None)) {
                self.child = None;
                return Ok((started.elapsed(), true));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        Ok((started.elapsed(), false))
    }

    /// The end of its log (all its runs).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }
}

impl Drop for ChaosNode {
    fn drop(&mut self) {
        self.kill();
    }
}
