//! Builds the hub from a [`Config`] and runs it until shutdown.
//!
//! [`App::build`] opens the store, runs migrations, wires the hub, broker and
//! presence, and starts the group-commit writer (which publishes what it
//! stores) and the receipt batcher (which publishes the receipts that
//! moved).
//! [`App::run`] serves HTTP and WebSocket on a listener until the shutdown
//! future resolves, then shuts down in order: readiness goes 503 and the
//! listener stops accepting; sessions are told to reconnect and flush; the
//! receipt batcher and the writer drain; the outbox sends what is due; the
//! database closes.

use crate::auth::Authenticator;
use crate::broker::envelope::ClusterKeys;
use crate::broker::{
    Broker, BrokerError, LocalBroker, RedisBroker, RedisConnection, redis_client,
    redis_cluster_clients,
};
use crate::config::{BrokerKind, Config};
use crate::hub::Hub;
use crate::notify::Notifier;
use crate::notify::worker::OutboxWorker;
use crate::presence::{LocalPresence, Presence, RedisPresence};
use crate::service::publisher;
use crate::service::reach::ReachCache;
use crate::store::Store;
use crate::store::appender::{self, Appender, WriterHandle};
use crate::store::receipt_batch::{self, ReceiptBatcher, ReceiptBatcherHandle, ReceiptSink};
use crate::supervisor::{Worker, Workers};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds the hub's listener with an explicit accept backlog
/// ([`Config::listen_backlog`]); `TcpListener::bind` always asks for 128.
/// A non-zero `send_buffer_bytes` (`http.socket_send_buffer_bytes`) is set
/// on the listener, which every accepted connection inherits.
///
/// # Errors
///
/// Fails when the address cannot be bound.
pub fn bind_listener(
    address: SocketAddr,
    backlog: u32,
    send_buffer_bytes: u32,
) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted hub can bind at once.
    socket.set_reuseaddr(true)?;
    if send_buffer_bytes > 0 {
        socket.set_send_buffer_size(send_buffer_bytes)?;
    }
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Everything a request or session needs, shared behind an `Arc`.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the hub runs with.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The group-commit message writer.
    pub appender: Appender,
    /// Writes delivered and read receipts, many per transaction.
    pub receipts: ReceiptBatcher,
    /// This node's registry.
    pub hub: Arc<Hub>,
    /// Cross-node transport.
    pub broker: Broker,
    /// Who is connected.
    pub presence: Presence,
    /// Token and API-key checks.
    pub auth: Authenticator,
    /// Revoked tokens, and this node's sessions they may close.
    pub revocations: crate::auth::revocation::Revocations,
    /// Push and SMS provider clients.
    pub notifier: Notifier,
    /// Cached contacts and clinic policies.
    pub reach: ReachCache,
    /// The clinic each registered user id belongs to, as `hello` checks it.
    pub registered_clinics: crate::service::registered_clinics::RegisteredClinics,
    /// Open WebSocket connections against their caps.
    pub connection_slots: Arc<crate::connection_slots::ConnectionSlots>,
    /// Device registrations per patient on this node.
    pub device_registrations: crate::service::registrations::DeviceRegistrations,
    /// Wakes the outbox worker when notifications are queued.
    pub outbox_wakeup: tokio::sync::Notify,
    /// Set when shutdown begins: the moment notification sends are cut
    /// short (`shutdown.drain_timeout_secs` after it).
    pub outbox_deadline: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The background workers, restarted when they fail.
    pub workers: Arc<Workers>,
    /// Tracks sessions and background tasks.
    pub tracker: TaskTracker,
    /// Cancelled when sessions must close.
    pub sessions_shutdown: CancellationToken,
    ready: AtomicBool,
    next_conn_id: AtomicU64,
}

impl AppState {
    /// True until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A fresh connection id, unique on this node.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Failure to build the app.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Secrets or keys could not be loaded.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    /// A push or SMS provider could not be set up.
    #[error(transparent)]
    Notify(#[from] crate::notify::providers::ProviderSetupError),
    /// The broker or presence could not be set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Another running node uses this node's `broker.node_id`.
    #[error(transparent)]
    NodeId(#[from] crate::broker::NodeIdInUse),
}

/// A built hub, ready to [`run`](App::run).
#[derive(Debug)]
pub struct App {
    state: Arc<AppState>,
    writer: WriterHandle,
    receipts: ReceiptBatcherHandle,
    dashboards: tokio::task::JoinHandle<()>,
    outbox_stop: CancellationToken,
    outbox: tokio::task::JoinHandle<()>,
    cluster_stop: CancellationToken,
}

impl App {
    /// Opens the store, migrates it, and wires every part.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when the database, the secrets or a configured part
    /// cannot be set up.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let store = Store::connect(&config.database).await?;
        store.migrate().await?;
        let auth = Authenticator::from_config(&config.auth)?;
        let notifier = Notifier::from_config(&config.notify)?;
        let hub = Arc::new(Hub::new());
        let workers = Workers::new();
        let cluster_stop = CancellationToken::new();
        auth.start_jwks(
            Duration::from_secs(config.auth.jwks_refresh_secs),
            cluster_stop.clone(),
            &workers,
        )
        .await;
        let (broker, presence) = cluster_parts(&config, &hub, &cluster_stop, &workers)?;
        if let Presence::Redis(presence) = &presence {
            presence.claim_node_id().await?;
        }
        let (dashboards_tx, dashboards_rx) = tokio::sync::mpsc::unbounded_channel();
        let backend = appender::Backend::for_store(&store, &config.database, &workers).await?;
        let batching = appender::Batching {
            max: config.database.append_batch_max,
            linger: config.database.append_linger(backend.writer()),
        };
        let appender::Writer {
            appender,
            receipts: receipt_writer,
            handle: writer,
        } = appender::start(
            backend,
            batching,
            publisher::on_commit(broker.clone(), dashboards_tx.clone()),
            &workers,
        )?;
        // On a SQLite file receipts are written by the message writer (one
        // writer per file); the batcher is stopped before it.
        let receipt_sink = match receipt_writer {
            Some(writer) => ReceiptSink::Writer(writer),
            None => ReceiptSink::Pool(store.connection().clone()),
        };
        let (receipts, receipts_handle) = receipt_batch::start(
            store.connection().clone(),
            receipt_sink,
            publisher::on_receipt_commit(broker.clone(), dashboards_tx),
            &workers,
        );
        let descriptors = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(rlimit::INFINITY);
        let connection_slots = Arc::new(crate::connection_slots::ConnectionSlots::new(
            config.http.connection_cap(descriptors),
            config.http.max_connections_per_ip,
            config.http.max_connections_per_user,
        ));
        tracing::info!(
            cap = connection_slots.cap(),
            descriptors,
            "WebSocket connection cap"
        );
        let state = Arc::new(AppState {
            config,
            store,
            appender,
            receipts,
            hub,
            broker,
            presence,
            auth,
            revocations: crate::auth::revocation::Revocations::new(),
            notifier,
            reach: ReachCache::default(),
            registered_clinics: crate::service::registered_clinics::RegisteredClinics::default(),
            connection_slots,
            device_registrations: Default::default(),
            outbox_wakeup: tokio::sync::Notify::new(),
            outbox_deadline: tokio::sync::watch::Sender::new(None),
            metrics: crate::metrics::install(),
            workers,
            tracker: TaskTracker::new(),
            sessions_shutdown: CancellationToken::new(),
            ready: AtomicBool::new(true),
            next_conn_id: AtomicU64::new(1),
        });
        crate::service::revocations::load(
            &state.store,
            &state.revocations,
            state.auth.leeway_secs(),
        )
        .await?;
        {
            // One subscriber id for every run: a restarted listener takes
            // the failed one's place on the control topic.
            let (state, stop) = (state.clone(), cluster_stop.clone());
            let conn_id = state.next_conn_id();
            state.workers.clone().spawn(Worker::Revocations, move || {
                crate::service::revocations::listen(state.clone(), stop.clone(), conn_id)
            });
        }
        let dashboards = {
            // A failed run's lock is released with it: the next run takes
            // over the queue.
            let queue = Arc::new(tokio::sync::Mutex::new(dashboards_rx));
            let state = state.clone();
            state.workers.clone().spawn(Worker::Dashboards, move || {
                publisher::refresh_dashboards(state.clone(), Arc::clone(&queue))
            })
        };
        if state.config.is_postgres() {
            // The current month's partition and the next ones exist before
            // the first message; the worker keeps them ahead.
            crate::service::partitions::pass(
                &state.store,
                state.config.database.partition_months_ahead,
            )
            .await?;
            let (state, stop) = (state.clone(), cluster_stop.clone());
            state.workers.clone().spawn(Worker::Partitions, move || {
                crate::service::partitions::run(state.clone(), stop.clone())
            });
        }
        {
            let (state, stop) = (state.clone(), cluster_stop.clone());
            state.workers.clone().spawn(Worker::Retention, move || {
                crate::service::retention::run(state.clone(), stop.clone())
            });
        }
        let outbox_stop = CancellationToken::new();
        let outbox = {
            let (state, stop) = (state.clone(), outbox_stop.clone());
            state.workers.clone().spawn(Worker::Outbox, move || {
                OutboxWorker::new(state.clone()).run(stop.clone())
            })
        };
        Ok(Self {
            state,
            writer,
            receipts: receipts_handle,
            dashboards,
            outbox_stop,
            outbox,
            cluster_stop,
        })
    }

    /// The shared state, for subcommands and tests.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves, then shuts down in
    /// order.
    ///
    /// # Errors
    ///
    /// Fails when the listener fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let stop_accepting = CancellationToken::new();
        let router = crate::http::router(state.clone());
        let server = tokio::spawn(crate::http::serve::serve(
            listener,
            router,
            Duration::from_secs(state.config.http.header_read_timeout_secs),
            stop_accepting.clone(),
        ));

        shutdown.await;
        tracing::info!("shutting down: readiness off, closing sessions");
        state.ready.store(false, Ordering::Release);
        let grace = Duration::from_millis(state.config.shutdown.unready_grace_ms);
        let drain = Duration::from_secs(state.config.shutdown.drain_timeout_secs);
        // Notification sends get the same time as sessions: one still
        // waiting for its provider then is cut short and its row given back.
        state
            .outbox_deadline
            .send_replace(Some(tokio::time::Instant::now() + grace + drain));
        if !grace.is_zero() {
            // Still serving, but reporting 503, so the balancer moves away
            // before connections are refused.
            tokio::time::sleep(grace).await;
        }
        stop_accepting.cancel();
        state.sessions_shutdown.cancel();
        state.tracker.close();
        if tokio::time::timeout(drain, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions did not finish within the drain timeout");
        }
        // Idle HTTP connections may hold the server open; give it a moment.
        let served = match tokio::time::timeout(Duration::from_secs(2), server).await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(join_error)) => Err(std::io::Error::other(join_error)),
        };
        // Receipts still queued are written (and published) before the
        // dashboard refresher, which they may feed, ends.
        self.receipts.stop().await;
        self.writer.stop().await;
        if let Err(error) = self.dashboards.await {
            tracing::error!(error = %error, "dashboard refresher panicked");
        }
        // Flush what is due now, then stop the worker; later rows wait in
        // the outbox for the next start (or another node).
        self.outbox_stop.cancel();
        if let Err(error) = self.outbox.await {
            tracing::error!(error = %error, "outbox worker panicked");
        }
        if let Err(error) = OutboxWorker::new(state.clone()).step().await {
            tracing::warn!(error = %error, "final outbox pass failed");
        }
        if let Presence::Redis(presence) = &state.presence {
            presence.release_node_id().await;
        }
        self.cluster_stop.cancel();
        if let Err(error) = state.store.clone().close().await {
            tracing::warn!(error = %error, "closing the database failed");
        }
        tracing::info!("shutdown complete");
        served
    }
}

/// The broker and presence the configuration asks for.
fn cluster_parts(
    config: &Config,
    hub: &Arc<Hub>,
    stop: &CancellationToken,
    workers: &Arc<Workers>,
) -> Result<(Broker, Presence), BuildError> {
    if !config.broker.kind.is_redis() {
        return Ok((
            Broker::Local(LocalBroker::new(hub.clone())),
            Presence::Local(LocalPresence::new()),
        ));
    }
    let node_id = config
        .broker
        .node_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let keys = ClusterKeys::from_config(&config.broker)?;
    if !keys.is_enabled() {
        tracing::warn!("broker.insecure_no_cluster_key: events from redis are not authenticated");
    }
    let unavailable = |error: redis::RedisError| BrokerError::Unavailable(error.to_string());
    let (broker, connection) = if config.broker.kind == BrokerKind::RedisCluster {
        tracing::info!(node = %node_id, "joining the cluster through a redis cluster");
        let clients = redis_cluster_clients(&config.broker)?;
        let connection = RedisConnection::Cluster(
            clients
                .commands
                .get_pending_async_connection_with_config(Default::default()),
        );
        let broker = RedisBroker::start_cluster(
            clients,
            node_id.clone(),
            keys,
            hub.clone(),
            stop.clone(),
            workers,
        );
        (broker, connection)
    } else {
        tracing::info!(node = %node_id, "joining the cluster through redis");
        let client = redis_client(&config.broker)?;
        let broker = RedisBroker::start(
            client.clone(),
            node_id.clone(),
            keys,
            hub.clone(),
            stop.clone(),
            workers,
        )?;
        (
            broker,
            RedisConnection::single(client, 1).map_err(unavailable)?,
        )
    };
    let ttl = Duration::from_millis(config.broker.presence_ttl_ms);
    let remote_cache = Duration::from_millis(config.broker.presence_cache_ms);
    let presence = RedisPresence::start(
        connection,
        &node_id,
        ttl,
        remote_cache,
        stop.clone(),
        workers,
    );
    Ok((Broker::Redis(broker), Presence::Redis(presence)))
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
