//! A real redis-server per test, as redis-rs's `redis-test/src/server.rs`
//! runs one: started on a free port with persistence off, killed on `Drop`.
//! Tests can kill it and restart it on the same port to cut the cluster's
//! transport mid-traffic. [`RedisServer::start_with`] starts one that
//! speaks only TLS and/or has ACL users (see `harness::tls` for its
//! certificates).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a fresh redis-server gets to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or deliberately killed) redis-server.
pub(crate) struct RedisServer {
    port: u16,
    process: Option<Child>,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

/// How a redis-server is set up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct RedisOptions {
    /// Serve TLS only (no plain port), with these files.
    pub(crate) tls: Option<ServerTls>,
    /// Configuration directives, each a list of words, e.g. an ACL user:
    /// `["user", "hub", "on", ">secret", ...]`.
    pub(crate) directives: Vec<Vec<String>>,
}

/// The server side of TLS: its certificate and key, and the CA that client
/// certificates must chain to (clients without one are refused).
#[derive(Debug, Clone)]
pub(crate) struct ServerTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: PathBuf,
}

/// `CONSULT_TEST_REDIS_SERVER` (set by `scripts/test`), else `redis-server`
/// from `PATH`.
fn binary() -> PathBuf {
    std::env::var_os("CONSULT_TEST_REDIS_SERVER")
        .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub(crate) async fn start() -> Self {
        Self::start_with(RedisOptions::default()).await
    }

    /// Starts redis-server set up as `options` say, and waits until it
    /// is ready.
    pub(crate) async fn start_with(options: RedisOptions) -> Self {
        let mut server = Self {
            port: free_port(),
            process: None,
            dir: tempfile::tempdir().unwrap(),
            options,
        };
        // Another process may take the port between our probe and the
        // server's bind; try a few.
        for _ in 0..5 {
            if server.spawn_and_wait().await {
                return server;
            }
            server.kill();
            server.port = free_port();
        }
        panic!("redis-server ({}) did not start", binary().display());
    }

    /// `redis://127.0.0.1:<port>/`, or `rediss://…` when it speaks TLS.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// True unless it was killed.
    pub(crate) fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved)
    /// and waits until it answers PING.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        for _ in 0..20 {
            if self.spawn_and_wait().await {
                return;
            }
            // The port may linger for a moment after the kill.
            self.kill();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let mut command = Command::new(binary());
        match &self.options.tls {
            None => {
                command.arg("--port").arg(self.port.to_string());
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.client_ca)
                    .args(["--tls-auth-clients", "yes"]);
            }
        }
        for directive in &self.options.directives {
            let (name, words) = directive.split_first().expect("a directive");
            command.arg(format!("--{name}")).args(words);
        }
        let process = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {} (install redis-server or set CONSULT_TEST_REDIS_SERVER): {error}",
                    binary().display()
                )
            });
        self.process = Some(process);
    }

    /// Spawns the server; true once it answers PING, false if it exited.
    async fn spawn_and_wait(&mut self) -> bool {
        self.spawn();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Some(process) = self.process.as_mut() {
                if process.try_wait().unwrap().is_some() {
                    self.process = None;
                    return false;
                }
            }
            if self.ready().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// How many times `command` (lower case) was run, from `INFO
    /// commandstats`.
    pub(crate) async fn command_calls(&self, command: &str) -> u64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// True when the server answers: PING when it speaks plain RESP to
    /// anyone; otherwise (TLS, or ACL users) once it accepts connections,
    /// which redis-server does only after it has loaded its configuration.
    async fn ready(&self) -> bool {
        if self.options.tls.is_none() && self.options.directives.is_empty() {
            return self.ping().await;
        }
        tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
    }

    /// True when the server answers `PING` with `+PONG`.
    pub(crate) async fn ping(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut reply)).await,
            Ok(Ok(_)) if &reply == b"+PONG\r\n"
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
