//! The campaign's private `redis-server`: on a port fixed for the run, so
//! that it can be killed and started again where the nodes' proxies point,
//! without persistence (a restart loses every key and subscription, as a
//! failover to an empty replica would). Owns that one process.

use crate::hub_process::free_port;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long it may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The server; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `binary` on a free port.
    ///
    /// # Errors
    ///
    /// When it cannot be started or does not listen in time.
    pub async fn start(binary: PathBuf) -> Result<Self> {
        let mut server = Self {
            binary,
            port: free_port()?,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                tracing::debug!(%error, "redis-server already gone");
            }
            if let Err(error) = child.wait() {
                tracing::debug!(%error, "could not reap redis-server");
            }
        }
    }

    /// Starts it (again) on its port and waits until it listens.
    ///
    /// # Errors
    ///
    /// When it cannot be started or does not listen in time.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--maxclients", "10000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on port {} in time", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
