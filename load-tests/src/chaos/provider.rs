//! The push/SMS provider of the fault campaign: a local HTTP server playing
//! the hub's `webhook` provider (`POST {url}` with an `Idempotency-Key`
//! header; any 2xx accepts, 5xx is a retryable failure). Each node posts to
//! its own path (`/node/<index>`), so every request is known by key and by
//! sender. Its [`ProviderMode`] makes it answer at once, slowly (within the
//! hub's request timeout), with 503, or only after the hub has given up.
//! It records every request; it never looks at the text.

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Largest request body read, bytes.
const MAX_BODY: usize = 64 * 1024;

/// How the provider answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderMode {
    /// 200 at once.
    Normal,
    /// 200 after a pause shorter than the hub's request timeout.
    Slow,
    /// 503 at once.
    Failing,
    /// 200 after the hub's request timeout has passed: the provider took
    /// the notification, the hub saw a timeout.
    Late,
}

/// One request the provider received.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderRequest {
    /// The `Idempotency-Key` header (the outbox row's key).
    pub key: String,
    /// The node that posted it (from the path), if the path named one.
    pub node: Option<usize>,
    /// When it arrived, ms since the campaign started.
    pub at_ms: u64,
    /// How it was answered.
    pub mode: ProviderMode,
    /// Whether the answer was a 2xx (the provider took the notification).
    pub accepted: bool,
    /// Whether the 2xx came before the hub's request timeout, so that the
    /// hub could see it.
    pub accepted_in_time: bool,
}

/// The running provider; stops when dropped.
#[derive(Debug)]
pub struct FakeProvider {
    port: u16,
    mode: watch::Sender<ProviderMode>,
    requests: Arc<Mutex<Vec<ProviderRequest>>>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct Shared {
    started: Instant,
    hub_timeout: Duration,
    requests: Arc<Mutex<Vec<ProviderRequest>>>,
    rng: Mutex<StdRng>,
}

impl FakeProvider {
    /// Listens on a free port of 127.0.0.1. `hub_timeout` is the hub's
    /// webhook request timeout: slow answers stay well within it, late
    /// ones come a second after it.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start(started: Instant, hub_timeout: Duration, seed: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the provider")?;
        let port = listener.local_addr().context("provider address")?.port();
        let (mode, modes) = watch::channel(ProviderMode::Normal);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            started,
            hub_timeout,
            requests: requests.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        });
        let stop = CancellationToken::new();
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                if let Ok((stream, _)) = accepted {
                    let shared = shared.clone();
                    let modes = modes.clone();
                    let stop = accept_stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = serve(stream, shared, modes) => {}
                        }
                    });
                }
            }
        });
        Ok(Self {
            port,
            mode,
            requests,
            stop,
        })
    }

    /// The URL node `index` posts to.
    pub fn url_for(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}/node/{index}", self.port)
    }

    /// Answers in `mode` from now on.
    pub fn set(&self, mode: ProviderMode) {
        self.mode.send_replace(mode);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ProviderRequest> {
        self.requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One keep-alive connection: requests one after another.
async fn serve(stream: TcpStream, shared: Arc<Shared>, modes: watch::Receiver<ProviderMode>) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some((path, key)) = read_request(&mut reader).await else {
            return;
        };
        let mode = *modes.borrow();
        let at_ms = elapsed_ms(shared.started);
        let pause = match mode {
            ProviderMode::Normal | ProviderMode::Failing => Duration::ZERO,
            ProviderMode::Slow => {
                let ceiling = (shared.hub_timeout.as_millis() as u64 / 2).max(100);
                let ms = shared
                    .rng
                    .lock()
                    .map(|mut rng| rng.random_range(50..=ceiling))
                    .unwrap_or(ceiling);
                Duration::from_millis(ms)
            }
            ProviderMode::Late => shared.hub_timeout + Duration::from_secs(1),
        };
        tokio::time::sleep(pause).await;
        let accepted = mode != ProviderMode::Failing;
        let node = path
            .strip_prefix("/node/")
            .and_then(|index| index.parse().ok());
        let serial = {
            let mut requests = shared
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            requests.push(ProviderRequest {
                key,
                node,
                at_ms,
                mode,
                accepted,
                accepted_in_time: accepted && mode != ProviderMode::Late,
            });
            requests.len()
        };
        let response = if accepted {
            let body = format!("{{\"id\":\"p-{serial}\"}}");
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_owned()
        };
        if reader
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads one request: its path and `Idempotency-Key` (empty when absent).
/// `None` at the end of the connection or on a malformed request.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0_usize;
    let mut key = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            value.trim().clone_into(&mut key);
        }
    }
    if length > MAX_BODY {
        return None;
    }
    let mut body = vec![0_u8; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((path, key))
}

/// Milliseconds since `started`.
pub fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
