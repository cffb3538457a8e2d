//! A TCP proxy for tests that need a network fault between two real
//! processes: it can cut every connection open now (a drop without a
//! close), refuse new ones until told otherwise (a link that stays down),
//! and be pointed at another upstream (a restarted server).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A proxy listening on an ephemeral loopback port.
pub(crate) struct TcpProxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    refusing: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let refusing = Arc::new(AtomicBool::new(false));
        let (cut_tx, _) = watch::channel(0);
        let accept_task = tokio::spawn(accept(
            listener,
            target.clone(),
            refusing.clone(),
            cut_tx.clone(),
        ));
        Self {
            addr,
            target,
            refusing,
            cut_tx,
            accept_task,
        }
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection open now, without a close.
    pub(crate) fn cut(&self) {
        self.cut_tx.send_modify(|generation| *generation += 1);
    }

    /// Cuts every connection and closes new ones at once until [`Self::up`].
    pub(crate) fn down(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Forwards new connections again.
    pub(crate) fn up(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    /// Sends new connections to `target`.
    pub(crate) fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which ends every pipe.
        self.accept_task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: Arc<Mutex<SocketAddr>>,
    refusing: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
) {
    let mut pipes = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        if refusing.load(Ordering::SeqCst) {
            continue;
        }
        let upstream_addr = *target.lock().unwrap();
        let mut cut_rx = cut_tx.subscribe();
        pipes.spawn(async move {
            // Nothing listening upstream: dropping `inbound` closes it.
            let Ok(mut upstream) = TcpStream::connect(upstream_addr).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream) => {}
                _ = cut_rx.changed() => {}
            }
        });
        while pipes.try_join_next().is_some() {}
    }
}
