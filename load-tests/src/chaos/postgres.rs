//! A private PostgreSQL cluster for the fault campaign and the cluster run
//! (`scenario::cluster`, with `fsync` on): a throwaway cluster
//! made with `initdb` in a temporary folder (trust authentication, a free
//! port on 127.0.0.1), started, stopped and started again with `pg_ctl`.
//! `initdb` refuses to run as root, so as root the cluster runs as the
//! `postgres` user (through `runuser`), as `scripts/test` does. This module
//! owns that cluster and nothing else.

use crate::hub_process::free_port;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tempfile::TempDir;
use tokio::process::Command;

/// The user a root process runs the cluster as.
const CLUSTER_OWNER: &str = "postgres";

/// Finds a folder holding `initdb`, `pg_ctl` and `postgres`: `$PG_BINDIR`,
/// then `/usr/lib/postgresql/<version>/bin` (newest first), then the folder
/// of an `initdb` on `PATH`.
///
/// # Errors
///
/// When none is found, with what was looked at.
pub fn find_bindir() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        candidates.push(PathBuf::from(dir));
    }
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let version = name
                        .split('.')
                        .map(|part| part.parse().unwrap_or(0))
                        .collect();
                    (version, entry.path().join("bin"))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    candidates.extend(versions.into_iter().map(|(_, dir)| dir));
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    candidates.push(parent.to_path_buf());
                }
            }
        }
    }
    candidates
        .iter()
        .find(|dir| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|bin| dir.join(bin).is_file())
        })
        .cloned()
        .with_context(|| {
            format!(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in \
                 $PG_BINDIR, /usr/lib/postgresql/*/bin and PATH ({} places); install \
                 postgresql or set PG_BINDIR",
                candidates.len()
            )
        })
}

/// A running private cluster; stopped (immediately) and removed on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    owner: Option<&'static str>,
    durable: bool,
    _dir: TempDir,
}

impl PrivatePostgres {
    /// Makes a cluster with `initdb` and starts it, `fsync` off (see
    /// [`Self::configure`]).
    ///
    /// # Errors
    ///
    /// When the binaries are missing, `initdb` fails, or the server does
    /// not start (the error carries the end of its log).
    pub async fn start() -> Result<Self> {
        Self::start_with(false).await
    }

    /// Like [`Self::start`]; `durable` keeps PostgreSQL's own defaults
    /// (`fsync` and full-page writes on), as a benchmark wants.
    ///
    /// # Errors
    ///
    /// As [`Self::start`].
    pub async fn start_with(durable: bool) -> Result<Self> {
        let bin = find_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("consult-chaos-pg-")
            .tempdir()
            .context("creating the PostgreSQL folder")?;
        let owner = if is_root().await {
            Some(CLUSTER_OWNER)
        } else {
            None
        };
        if let Some(owner) = owner {
            let status = std::process::Command::new("chown")
                .arg(format!("{owner}:"))
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !status.success() {
                bail!("chown {owner} {} failed", dir.path().display());
            }
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let initdb_log = dir.path().join("initdb.log");
        let pg = Self {
            bin,
            data,
            log,
            port: free_port()?,
            owner,
            durable,
            _dir: dir,
        };
        let output = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"])
            .output()
            .await
            .context("running initdb")?;
        if !output.status.success() {
            std::fs::write(&initdb_log, &output.stderr).ok();
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        pg.configure()?;
        pg.start_server().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`, the cluster itself.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server: `immediate` as a crash (recovery from the WAL at
    /// the next start), otherwise a fast, clean shutdown.
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    pub async fn stop(&self, immediate: bool) -> Result<()> {
        let mode = if immediate { "immediate" } else { "fast" };
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("running pg_ctl stop")?;
        if !status.success() {
            bail!("pg_ctl stop -m {mode} failed ({status})");
        }
        Ok(())
    }

    /// Starts the (stopped) server again on the same port.
    ///
    /// # Errors
    ///
    /// When it does not start in time.
    pub async fn start_server(&self) -> Result<()> {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("running pg_ctl start")?;
        if !status.success() {
            bail!(
                "PostgreSQL did not start ({status}); log:\n{}",
                crate::hub_process::log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Unless `durable`, durable enough for crashes of processes (the
    /// campaign's faults) and fast on a shared machine: `fsync` off (the OS
    /// keeps what was written), but `synchronous_commit` stays on, so a
    /// commit the hub saw is in the WAL before its `ok`, and an immediate
    /// stop loses nothing acknowledged.
    fn configure(&self) -> Result<()> {
        let relaxed = if self.durable {
            ""
        } else {
            "fsync = off\nfull_page_writes = off\n"
        };
        let conf = format!(
            "\n# written by consult-load\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n{relaxed}",
            self.port,
            self.socket_dir().display()
        );
        let path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.push_str(&conf);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Runs one SQL statement with `psql` and returns its rows, unaligned
    /// (`|` between fields, one row per line).
    ///
    /// # Errors
    ///
    /// When `psql` fails.
    pub async fn query(&self, sql: &str) -> Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAt", "-c", sql])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running psql")?;
        if !output.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn socket_dir(&self) -> &Path {
        self.data.parent().unwrap_or(&self.data)
    }

    fn command(&self, program: &str) -> Command {
        let binary = self.bin.join(program);
        let mut command = match self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let binary = self.bin.join("pg_ctl");
        let mut command = match self.owner {
            Some(owner) => {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        let stopped = command
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(error) = stopped {
            tracing::debug!(%error, "could not stop PostgreSQL");
        }
    }
}

async fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .await
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}
