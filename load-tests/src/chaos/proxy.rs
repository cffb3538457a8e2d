//! A TCP fault proxy: one listener on 127.0.0.1 in front of one upstream
//! port (a hub node's link to Redis or to PostgreSQL), forwarding bytes
//! both ways while applying the link's current [`LinkFault`]:
//!
//! - `Delay`: every chunk waits that long before it is passed on;
//! - `Loss`: a share of chunks waits 200 ms–1 s, as a lost segment waits
//!   for its retransmission, and one chunk in 1,000 resets the connection;
//! - `Partition`: nothing passes either way and new connections hang until
//!   the fault is healed; then traffic resumes, as TCP does after a
//!   partition shorter than its timeouts.
//!
//! Random choices come from a generator seeded from the campaign's seed.
//! The proxy owns its listener and connections and nothing else.

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Bytes read per chunk.
const CHUNK: usize = 16 * 1024;

/// What a link does to traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkFault {
    /// Bytes pass at once.
    None,
    /// Each chunk waits this long.
    Delay {
        /// Milliseconds per chunk.
        ms: u64,
    },
    /// This share of chunks is held back as if lost and retransmitted.
    Loss {
        /// Percent of chunks.
        percent: u32,
    },
    /// Nothing passes.
    Partition,
}

/// A running proxy; stops (closing its connections) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    fault: watch::Sender<LinkFault>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to
    /// `127.0.0.1:upstream`.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start(upstream: u16, seed: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a fault proxy")?;
        let port = listener.local_addr().context("fault proxy address")?.port();
        let (fault, faults) = watch::channel(LinkFault::None);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, upstream, faults, stop.clone(), seed));
        Ok(Self { port, fault, stop })
    }

    /// The port nodes connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Applies `fault` from now on (to open connections too).
    pub fn set(&self, fault: LinkFault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: u16,
    faults: watch::Receiver<LinkFault>,
    stop: CancellationToken,
    seed: u64,
) {
    let mut connections: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections += 1;
        let seed = seed ^ connections.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let faults = faults.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = forward(client, upstream, faults, seed) => {}
            }
        });
    }
}

/// One connection: waits out a partition, connects upstream, then pumps
/// both ways until either side ends; dropping both streams closes both.
async fn forward(
    client: TcpStream,
    upstream: u16,
    mut faults: watch::Receiver<LinkFault>,
    seed: u64,
) {
    if faults
        .wait_for(|fault| *fault != LinkFault::Partition)
        .await
        .is_err()
    {
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    // Small writes (Redis commands, PostgreSQL messages) go out at once.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, faults.clone(), seed) => {}
        () = pump(server_read, client_write, faults, seed.rotate_left(17)) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<LinkFault>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buffer = vec![0_u8; CHUNK];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let fault = *faults.borrow_and_update();
        match fault {
            LinkFault::None => {}
            LinkFault::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            LinkFault::Loss { percent } => {
                if rng.random_range(0..1000) == 0 {
                    return;
                }
                if rng.random_range(0..100) < percent {
                    let wait = rng.random_range(200..=1000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
            LinkFault::Partition => {
                if faults
                    .wait_for(|fault| *fault != LinkFault::Partition)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
