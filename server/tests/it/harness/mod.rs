//! Test harness: start a hub in-process on 127.0.0.1:0 against a fresh
//! database, mint tokens, connect clients, call the REST API.

pub(crate) mod cluster;
pub(crate) mod db;
pub(crate) mod providers;
pub(crate) mod proxy;
pub(crate) mod raw;
pub(crate) mod redis;
pub(crate) mod redis_cluster;
pub(crate) mod tls;

use consult_client::{Client, ClientConfig, Welcome};
use consult_hub::auth::Principal;
use consult_hub::{App, AppState, Config};
use consult_protocol::{ClinicId, ConsultationView, Role, UserId};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The API key every test hub accepts.
pub(crate) const API_KEY: &str = "test-api-key-0123456789abcdef0123456789";
/// The HS256 secret of every test hub (at least 32 bytes, as the hub demands).
pub(crate) const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// The clinic most tests use.
pub(crate) const CLINIC: &str = "clinic-1";

/// A running hub and what it needs.
pub(crate) struct TestHub {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub(crate) http: reqwest::Client,
    _db: db::TestDb,
    _dir: tempfile::TempDir,
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_default())
            .with_test_writer()
            .try_init();
    }
}

/// The configuration tests start from.
pub(crate) fn test_config(database_url: String, dir: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.database.url = database_url;
    config.database.max_connections = 5;
    config.auth.jwt_secret = Some(SecretString::from(JWT_SECRET.to_owned()));
    config.auth.api_keys = vec![SecretString::from(API_KEY.to_owned())];
    config.auth.key_file = dir.join("hub.key");
    config.shutdown.drain_timeout_secs = 5;
    config
}

impl TestHub {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let db = db::TestDb::create(dir.path()).await;
        Self::start_on(dir, db, adjust).await
    }

    /// Starts a hub on an existing database and folder (key file).
    async fn start_on(
        dir: tempfile::TempDir,
        db: db::TestDb,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = test_config(db.url.clone(), dir.path());
        adjust(&mut config);
        // Bound as the binary binds it.
        let listener = consult_hub::app::bind_listener(
            config.listen,
            config.listen_backlog,
            config.http.socket_send_buffer_bytes,
        )
        .unwrap();
        let app = App::build(config).await.expect("hub builds");
        let state = app.state().clone();
        let addr = listener.local_addr().unwrap();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(listener, async move {
            let _ = shutdown_rx.await;
        }));
        Self {
            addr,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
            http: reqwest::Client::new(),
            _db: db,
            _dir: dir,
        }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn token(&self, user: &str, role: Role, clinic: &str) -> String {
        self.state
            .auth
            .issue(
                &Principal {
                    user: UserId::from(user),
                    role,
                    clinic: ClinicId::from(clinic),
                },
                600,
            )
            .unwrap()
    }

    /// Connects and authenticates as `user` in [`CLINIC`].
    pub(crate) async fn connect(&self, user: &str, role: Role) -> Client {
        self.connect_in(user, role, CLINIC).await
    }

    pub(crate) async fn connect_in(&self, user: &str, role: Role, clinic: &str) -> Client {
        let (client, welcome): (Client, Welcome) =
            Client::connect(&self.ws_url(), &self.token(user, role, clinic))
                .await
                .expect("connects");
        assert_eq!(welcome.user.as_str(), user);
        client
    }

    pub(crate) async fn connect_with(
        &self,
        user: &str,
        role: Role,
        config: ClientConfig,
    ) -> Client {
        Client::connect_with(&self.ws_url(), &self.token(user, role, CLINIC), config)
            .await
            .expect("connects")
            .0
    }

    /// POSTs JSON to the API with the key; returns status and body.
    pub(crate) async fn api_post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// PUTs JSON to the API with the key; returns status and body.
    pub(crate) async fn api_put(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .put(self.url(path))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs from the API with the key; returns status and body.
    pub(crate) async fn api_get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a consultation between `provider` and `patient` in [`CLINIC`].
    pub(crate) async fn consultation(
        &self,
        provider: &str,
        patient: &str,
        status: &str,
    ) -> ConsultationView {
        self.consultation_in(CLINIC, provider, patient, status)
            .await
    }

    /// Creates a consultation between `provider` and `patient` in `clinic`.
    pub(crate) async fn consultation_in(
        &self,
        clinic: &str,
        provider: &str,
        patient: &str,
        status: &str,
    ) -> ConsultationView {
        let (code, body) = self
            .api_post(
                "/v1/consultations",
                json!({
                    "clinic_id": clinic,
                    "provider": { "id": provider, "display_name": format!("Dr. {provider}") },
                    "patient": { "id": patient, "display_name": format!("Patient {patient}"), "phone": "+15550001111" },
                    "status": status,
                }),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// Triggers graceful shutdown and waits for it.
    pub(crate) async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Triggers graceful shutdown without waiting; [`TestHub::shutdown`]
    /// then waits for it.
    pub(crate) fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Shuts down gracefully, then starts a new hub on the same database
    /// and key file, with `adjust` applied to the test configuration.
    pub(crate) async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        self.stop().await;
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        let db = db::TestDb {
            url: self._db.url.clone(),
        };
        Self::start_on(dir, db, adjust).await
    }

    /// The database this hub runs on.
    pub(crate) fn database_url(&self) -> &str {
        &self._db.url
    }

    /// The `/metrics` text.
    pub(crate) async fn metrics_text(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.unwrap()
    }

    /// The value of the unlabelled metric `name`; 0 before it is recorded.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics_text().await, name)
    }

    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("shutdown finishes")
                .expect("run task")
                .expect("run result");
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Waits for the next event matching `pick`, skipping others, up to 5 s.
pub(crate) async fn expect_event<T>(
    client: &Client,
    mut pick: impl FnMut(&consult_protocol::ServerFrame) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("event arrives within 5 s")
            .expect("connection open");
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

/// Asserts no event matching `pick` arrives within `wait`.
pub(crate) async fn expect_no_event(
    client: &Client,
    wait: Duration,
    mut pick: impl FnMut(&consult_protocol::ServerFrame) -> bool,
) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
        assert!(!pick(&event), "unexpected event {event:?}");
    }
}

/// The value of the unlabelled sample `name` in Prometheus text; 0 when it
/// is absent (a counter not yet incremented).
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A chat message as a sender hands it to the store: no notifications, no
/// audit entry.
pub(crate) fn new_chat_message(
    consultation: &consult_protocol::ConsultationId,
    sender: &str,
    role: Role,
    client_msg_id: Option<&str>,
    body: &str,
) -> consult_hub::store::messages::NewMessage {
    consult_hub::store::messages::NewMessage {
        consultation_id: consultation.clone(),
        sender: UserId::from(sender),
        sender_role: role,
        kind: consult_protocol::MessageKind::Chat,
        body: body.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        notifications: Vec::new(),
        audit: None,
    }
}
