//! The campaign's private `redis-server`: on a port fixed for the run, so
//! that it can be killed and started again where the nodes' proxies point,
//! without persistence (a restart loses every key and subscription, as a
//! failover to an empty replica would). Owns that one process.

use crate::hub_process::{free_port, redis_command, wait_listening};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

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
        let child = redis_command(&self.binary, self.port)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        wait_listening(self.port, READY_TIMEOUT).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
