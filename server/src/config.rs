//! One `Config` tree for the whole hub: defaults, file, environment, flags.
//!
//! Precedence, lowest first: the defaults below, a TOML file (`--config`),
//! `CONSULT_…` environment variables with `__` for nesting
//! (`CONSULT_SESSION__OUTBOUND_QUEUE_CAPACITY=512`), then CLI flags, which
//! `main.rs` applies to the loaded struct. [`Config::validate`] reports every
//! problem at once. Secrets are [`SecretString`]s so they never print, and
//! serialize as set or unset, never as their value. [`defaults_toml`] prints
//! every setting with its default and the help of [`reference`](mod@reference).

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod http;
mod notify;
mod print;
mod redact;
pub mod reference;
mod retention;

pub use http::{
    DESCRIPTOR_RESERVE, HEADER_READ_TIMEOUT_SECS, HttpConfig, MAX_CONNECTIONS_PER_USER,
    SOCKET_SEND_BUFFER_BYTES,
};
pub use notify::{
    MAX_DEVICES_PER_PATIENT, NotifyConfig, OFFLINE_GRACE_MS, OUTBOX_LEASE_SECS,
    OUTBOX_MAX_ATTEMPTS, OUTBOX_POLL_MS, OUTBOX_RETRY_BASE_MS, PUSH_AFTER_MS, PushRoute,
    REACH_CACHE_MS, RateLimit, SmsRoute,
};
pub use print::defaults_toml;
pub use redact::REDACTED;
pub use reference::ReferenceError;
pub use retention::{RETENTION_INTERVAL_SECS, RetentionConfig};

/// Default wait of a SQLite file's group-commit batch for more messages:
/// at 5,000 messages/s it cut the hub's CPU per message by 18 % and its p99
/// (fewer commits, fewer syncs to queue behind) for 0.4 ms more median
/// latency (benchmarks.md, "Group-commit linger").
pub const SQLITE_APPEND_LINGER_US: u64 = 500;
/// The group-commit linger of the PostgreSQL writer when unset: each
/// statement costs PostgreSQL far more than each message it carries
/// (docs/benchmarks.md, "PostgreSQL: the writer waits 2 ms for a batch").
pub const POSTGRES_APPEND_LINGER_US: u64 = 2_000;

/// Default listen address: loopback only, for the embedded default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://consult-hub.db?mode=rwc";
/// Default file holding the generated JWT secret and API key.
pub const DEFAULT_KEY_FILE: &str = "consult-hub.key";
/// Time a new connection has to send `hello`.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Interval between server pings.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 20;
/// Silence after which a connection is closed.
pub const IDLE_TIMEOUT_SECS: u64 = 60;
/// Largest text frame accepted, in bytes; larger ones get `frame_too_large`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Hard cap enforced by the WebSocket codec; beyond it the stream closes 1009.
pub const HARD_MESSAGE_BYTES: usize = 256 * 1024;
/// Frames queued for one connection before it counts as a slow consumer.
pub const OUTBOUND_QUEUE_CAPACITY: usize = 256;
/// Sustained commands per second per connection.
pub const RATE_LIMIT_PER_SEC: u32 = 20;
/// Burst of commands per connection above the sustained rate.
pub const RATE_LIMIT_BURST: u32 = 40;
/// Rate-limit refusals in a row after which the connection is closed.
pub const RATE_LIMIT_STRIKES: u32 = 50;
/// Longest time one socket write may take before the connection is dropped.
pub const WRITE_TIMEOUT_SECS: u64 = 10;
/// Per-connection read buffer of the WebSocket codec, in bytes. Small, so
/// idle connections stay cheap; larger frames grow it while they last.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Per-connection write buffer of the WebSocket codec, in bytes.
pub const WRITE_BUFFER_BYTES: usize = 1024;
/// Longest chat message body, in characters.
pub const MAX_BODY_CHARS: usize = 4_000;
/// Lifetime of a node's presence entries in Redis (milliseconds).
pub const PRESENCE_TTL_MS: u64 = 6_000;
/// How long other nodes' presence of a user is reused (milliseconds).
pub const PRESENCE_CACHE_MS: u64 = 500;
/// Time sessions get to flush and close during shutdown.
pub const DRAIN_TIMEOUT_SECS: u64 = 10;
/// Listen backlog (the standard library's and mio's default is 128).
pub const LISTEN_BACKLOG: u32 = 4096;
/// Messages written in one group-commit transaction at most.
pub const APPEND_BATCH_MAX: usize = 256;
/// Spacing of SQLite passive checkpoints while messages are written
/// (milliseconds), in both durability modes: a checkpoint copies each page
/// the log holds once, however often it was written since the last one, so
/// rare checkpoints copy less (docs/benchmarks.md, "Checkpoints in the
/// durable mode" and "The log synced between checkpoints").
pub const SQLITE_CHECKPOINT_INTERVAL_MS: u64 = 1000;
/// With `synchronous = normal`, the spacing of the checkpoint thread's syncs
/// of the log between checkpoints (milliseconds): each sync stays small, so
/// a commit appending to a page the kernel is writing out waits less.
pub const SQLITE_LOG_SYNC_INTERVAL_MS: u64 = 25;
/// The longest allowed spacing of SQLite checkpoints and log syncs
/// (milliseconds).
pub const SQLITE_CHECKPOINT_INTERVAL_MAX_MS: u64 = 60_000;
/// PostgreSQL: months of message partitions kept created after the current
/// one.
pub const PARTITION_MONTHS_AHEAD: u32 = 3;
/// The most months of message partitions that may be created ahead.
pub const PARTITION_MONTHS_AHEAD_MAX: u32 = 24;
/// PostgreSQL: seconds between two checks of the message partitions.
pub const PARTITION_INTERVAL_SECS: u64 = 86_400;

/// Default seconds between two looks at the message partitions' sizes, to
/// analyze those that doubled since their statistics were taken.
pub const PARTITION_ANALYZE_INTERVAL_SECS: u64 = 5;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP and WebSocket server binds.
    pub listen: SocketAddr,
    /// Connections the kernel completes before the hub accepts them (capped
    /// by `net.core.somaxconn`). A reconnect storm larger than this loses
    /// SYNs, and those clients retry only after a second or more.
    pub listen_backlog: u32,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Token and API-key settings.
    pub auth: AuthConfig,
    /// Per-connection limits.
    pub session: SessionConfig,
    /// Cross-node event transport.
    pub broker: BrokerConfig,
    /// Shutdown behaviour.
    pub shutdown: ShutdownConfig,
    /// Static web console.
    pub web: WebConfig,
    /// Logging.
    pub log: LogConfig,
    /// Push, SMS and escalation.
    pub notify: NotifyConfig,
    /// HTTP serving limits.
    pub http: HttpConfig,
    /// Message retention.
    pub retention: RetentionConfig,
}

/// Database settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://FILE?mode=rwc` or `postgres://USER@HOST:PORT/DB`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// Messages per group-commit transaction at most.
    pub append_batch_max: usize,
    /// Microseconds a group-commit batch's first message waits for others
    /// before the batch is written (0: none; at most 10,000). Unset: 500 on
    /// a SQLite file and 2,000 on PostgreSQL (each commit or statement there
    /// costs far more than each message it carries), 0 on in-memory SQLite.
    pub append_linger_us: Option<u64>,
    /// For a SQLite file: how often, at most, the log written since the last
    /// checkpoint is copied into the database file (a passive checkpoint,
    /// then a sync of the database file). Unset: 1 s in both durability
    /// modes (a checkpoint copies each page once however often the log holds
    /// it, so rare checkpoints copy less).
    pub sqlite_checkpoint_interval_ms: Option<u64>,
    /// For a SQLite file with `synchronous = normal`: how often, at most,
    /// the checkpoint thread syncs the log between checkpoints, so that each
    /// sync stays small and a commit waits less on the disk behind it.
    /// Unset: 25 ms. Ignored with `full`, where every commit syncs the log.
    pub sqlite_log_sync_interval_ms: Option<u64>,
    /// For a SQLite file: whether a commit waits for its log write to reach
    /// the disk (`full`, the default: an acknowledged message survives a
    /// power failure) or only for the write to the operating system
    /// (`normal`: survives a crash of the process, not of the machine).
    pub sqlite_synchronous: SqliteSync,
    /// For PostgreSQL: months of message partitions created after the
    /// current one, at start and by the `partitions` worker.
    pub partition_months_ahead: u32,
    /// For PostgreSQL: seconds between two checks of the message partitions
    /// by the `partitions` worker.
    pub partition_interval_secs: u64,
    /// For PostgreSQL: seconds between two looks by the `partitions` worker
    /// at the partitions' sizes; one that has doubled since its statistics
    /// were taken is analyzed.
    pub partition_analyze_interval_secs: u64,
}

/// How a SQLite commit waits for the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// `fsync` of the log at every commit: durable across power loss.
    #[default]
    Full,
    /// The log is synced only at checkpoints: a power loss may lose the
    /// last commits (and their sequence numbers may be issued again).
    Normal,
}

impl SqliteSync {
    /// The `PRAGMA synchronous` value.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Token and API-key settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret. When unset, one is generated into `key_file`.
    #[serde(serialize_with = "redact::hidden")]
    pub jwt_secret: Option<SecretString>,
    /// PEM public keys also accepted for RS256/ES256 tokens.
    pub public_keys: Vec<PublicKeyConfig>,
    /// API keys for the host platform's back end. When empty, one is
    /// generated into `key_file`.
    #[serde(serialize_with = "redact::hidden_each")]
    pub api_keys: Vec<SecretString>,
    /// Where generated secrets are kept (mode 0600).
    pub key_file: PathBuf,
    /// Clock skew tolerated when checking `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Longest lifetime (`exp - iat`) a token may have, in seconds.
    pub max_token_lifetime_secs: u64,
    /// When set, every token must carry this `iss`; tokens the hub issues
    /// carry it.
    pub issuer: Option<String>,
    /// When set, every token's `aud` must name it; tokens the hub issues
    /// carry it. When unset, a token's `aud` is not checked.
    pub audience: Option<String>,
    /// The identity provider's JWKS URL: its keys verify tokens by `kid`.
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched again, in seconds.
    pub jwks_refresh_secs: u64,
}

/// A public key for verifying asymmetric tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// `RS256` or `ES256`.
    pub algorithm: String,
    /// Path of the PEM file.
    pub pem_file: PathBuf,
}

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Time to send `hello`, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Server ping interval, in seconds.
    pub heartbeat_interval_secs: u64,
    /// Silence before closing, in seconds.
    pub idle_timeout_secs: u64,
    /// Largest accepted text frame, in bytes.
    pub max_message_bytes: usize,
    /// Hard cap in the codec, in bytes.
    pub hard_message_bytes: usize,
    /// Outbound queue capacity, in frames.
    pub outbound_queue_capacity: usize,
    /// Sustained commands per second.
    pub rate_limit_per_sec: u32,
    /// Command burst.
    pub rate_limit_burst: u32,
    /// Refusals in a row before closing.
    pub rate_limit_strikes: u32,
    /// Socket write timeout, in seconds.
    pub write_timeout_secs: u64,
    /// Codec read buffer, in bytes.
    pub read_buffer_bytes: usize,
    /// Codec write buffer, in bytes.
    pub write_buffer_bytes: usize,
    /// Longest message body, in characters.
    pub max_body_chars: usize,
}

/// Which broker carries events between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// In-process: one node.
    Local,
    /// Redis pub/sub: many nodes.
    Redis,
    /// Redis Cluster with sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`): many
    /// nodes.
    #[serde(rename = "redis-cluster")]
    RedisCluster,
}

impl BrokerKind {
    /// True for either Redis kind.
    pub fn is_redis(self) -> bool {
        matches!(self, Self::Redis | Self::RedisCluster)
    }
}

/// Cross-node event transport.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `local`, `redis` or `redis-cluster`.
    pub kind: BrokerKind,
    /// `redis://HOST:PORT` or, over TLS, `rediss://HOST:PORT` when
    /// `kind = "redis"`; may carry `USER:PASSWORD@`.
    pub redis_url: Option<String>,
    /// Nodes of the Redis Cluster when `kind = "redis-cluster"`, each
    /// `redis://HOST:PORT` or `rediss://HOST:PORT` (one is enough; the
    /// others are discovered).
    pub cluster_urls: Vec<String>,
    /// Redis ACL user; wins over one in the URL.
    pub redis_username: Option<String>,
    /// Password of the Redis user; wins over one in the URL.
    #[serde(serialize_with = "redact::hidden")]
    pub redis_password: Option<SecretString>,
    /// PEM file of the CA that signed the Redis server's certificate
    /// (`rediss://`); unset: the system's roots.
    pub redis_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; with
    /// `redis_tls_key_file`.
    pub redis_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `redis_tls_cert_file`.
    pub redis_tls_key_file: Option<PathBuf>,
    /// The cluster key: signs every envelope this node publishes and checks
    /// every one it receives. Required with `kind = "redis"`; the same on
    /// every node; at least 32 bytes.
    #[serde(serialize_with = "redact::hidden")]
    pub cluster_key: Option<SecretString>,
    /// A second key accepted (never used to sign) while the cluster key is
    /// rotated.
    #[serde(serialize_with = "redact::hidden")]
    pub cluster_key_secondary: Option<SecretString>,
    /// Runs a Redis cluster without a cluster key: events from Redis are
    /// then not authenticated. Only where nothing but the hub can publish
    /// on that Redis.
    pub insecure_no_cluster_key: bool,
    /// This node's name in the cluster; a random one when unset.
    pub node_id: Option<String>,
    /// How long a node's presence entries live without a heartbeat
    /// (milliseconds); a dead node's patients read as offline after this.
    pub presence_ttl_ms: u64,
    /// How long other nodes' presence of a user, once read, is used before
    /// Redis is asked again (milliseconds; 0: always ask).
    pub presence_cache_ms: u64,
}

impl BrokerConfig {
    /// Adds what is wrong with `cluster_urls` (for `kind = "redis-cluster"`)
    /// to `problems`; `files`: TLS files are set.
    fn validate_cluster_urls(&self, files: bool, problems: &mut Vec<String>) {
        if self.redis_url.is_some() {
            problems.push(
                "broker.redis_url is for broker.kind = \"redis\"; \
                 broker.kind = \"redis-cluster\" uses broker.cluster_urls"
                    .into(),
            );
        }
        if self.cluster_urls.is_empty() {
            problems.push(
                "broker.cluster_urls is required when broker.kind = \"redis-cluster\" \
                 (at least one node of the cluster)"
                    .into(),
            );
            return;
        }
        let tls: Vec<bool> = self
            .cluster_urls
            .iter()
            .map(|url| url.starts_with("rediss://"))
            .collect();
        if self
            .cluster_urls
            .iter()
            .any(|url| !(url.starts_with("redis://") || url.starts_with("rediss://")))
        {
            problems.push("broker.cluster_urls must each start with redis:// or rediss://".into());
        }
        if tls.iter().any(|each| *each != tls[0]) {
            problems.push("broker.cluster_urls mixes redis:// and rediss://".into());
        }
        if files && !tls[0] {
            problems.push("broker.redis_tls_* files need rediss:// broker.cluster_urls".into());
        }
    }

    /// Adds what is wrong with the Redis settings to `problems`.
    fn validate(&self, problems: &mut Vec<String>) {
        use secrecy::ExposeSecret;
        let secret = |value: &Option<SecretString>| {
            value
                .as_ref()
                .map(|key| key.expose_secret().len())
                .filter(|len| *len > 0)
        };
        let (primary, secondary) = (
            secret(&self.cluster_key),
            secret(&self.cluster_key_secondary),
        );
        let min = crate::broker::envelope::MIN_KEY_BYTES;
        for (name, len) in [
            ("cluster_key", primary),
            ("cluster_key_secondary", secondary),
        ] {
            if len.is_some_and(|len| len < min) {
                problems.push(format!("broker.{name} must be at least {min} bytes"));
            }
        }
        if secondary.is_some() && primary.is_none() {
            problems.push("broker.cluster_key_secondary needs broker.cluster_key".into());
        }
        if self.insecure_no_cluster_key && primary.is_some() {
            problems.push(
                "broker.insecure_no_cluster_key contradicts broker.cluster_key; unset one".into(),
            );
        }
        let kind = match self.kind {
            BrokerKind::Local => return,
            BrokerKind::Redis => "redis",
            BrokerKind::RedisCluster => "redis-cluster",
        };
        let files = self.redis_tls_ca_file.is_some()
            || self.redis_tls_cert_file.is_some()
            || self.redis_tls_key_file.is_some();
        if self.kind == BrokerKind::Redis {
            if !self.cluster_urls.is_empty() {
                problems.push(
                    "broker.cluster_urls is for broker.kind = \"redis-cluster\"; \
                     broker.kind = \"redis\" uses broker.redis_url"
                        .into(),
                );
            }
            match self.redis_url.as_deref() {
                None => {
                    problems
                        .push("broker.redis_url is required when broker.kind = \"redis\"".into());
                }
                Some(url) => {
                    let tls = url.starts_with("rediss://");
                    if !(tls || url.starts_with("redis://")) {
                        problems
                            .push("broker.redis_url must start with redis:// or rediss://".into());
                    }
                    if files && !tls {
                        problems.push(
                            "broker.redis_tls_* files need a rediss:// broker.redis_url".into(),
                        );
                    }
                }
            }
        } else {
            self.validate_cluster_urls(files, problems);
        }
        if self.redis_tls_cert_file.is_some() != self.redis_tls_key_file.is_some() {
            problems.push(
                "broker.redis_tls_cert_file and broker.redis_tls_key_file go together".into(),
            );
        }
        if primary.is_none() && !self.insecure_no_cluster_key {
            problems.push(format!(
                "broker.cluster_key is required when broker.kind = \"{kind}\": the same secret of \
                 at least {min} bytes on every node (e.g. `openssl rand -hex 32`), so that events \
                 from redis are authenticated; set broker.insecure_no_cluster_key = true only if \
                 nothing but the hub can publish on that redis"
            ));
        }
    }
}

/// The longest token lifetime accepted by default: one day.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// The shortest HS256 secret or API key accepted, in bytes: anything
/// shorter can be guessed or brute-forced offline from one signed token.
pub const MIN_SECRET_BYTES: usize = 32;

impl AuthConfig {
    /// The configured HS256 secret, an empty value counting as unset.
    pub fn jwt_secret(&self) -> Option<&SecretString> {
        self.jwt_secret
            .as_ref()
            .filter(|secret| !secret.expose_secret().is_empty())
    }

    /// Adds this section's problems to `problems`; names settings, never
    /// values.
    fn validate(&self, problems: &mut Vec<String>) {
        if self
            .jwt_secret()
            .is_some_and(|secret| secret.expose_secret().len() < MIN_SECRET_BYTES)
        {
            problems.push(format!(
                "auth.jwt_secret must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand \
                 -hex 32`); anyone who guesses it can sign admin tokens. Leave it unset to use a \
                 generated one from auth.key_file"
            ));
        }
        if let Some(url) = &self.jwks_url {
            match url::Url::parse(url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => problems.push("auth.jwks_url must be an http(s) URL".into()),
            }
        }
        if self.jwks_refresh_secs == 0 {
            problems.push("auth.jwks_refresh_secs must be at least 1".into());
        }
        if self.max_token_lifetime_secs == 0 {
            problems.push("auth.max_token_lifetime_secs must be at least 1".into());
        }
        for (name, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value
                .as_deref()
                .is_some_and(|value| value.trim().is_empty())
            {
                problems.push(format!("auth.{name} must not be empty when set"));
            }
        }
        for (index, key) in self.api_keys.iter().enumerate() {
            if key.expose_secret().len() < MIN_SECRET_BYTES {
                problems.push(format!(
                    "auth.api_keys[{index}] must be at least {MIN_SECRET_BYTES} bytes (e.g. \
                     `openssl rand -hex 32`)"
                ));
            }
        }
    }
}

/// Shutdown behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Time sessions get to flush and close, in seconds.
    pub drain_timeout_secs: u64,
    /// Time between `/readyz` turning 503 and the listener closing, so a
    /// load balancer stops routing here first (milliseconds; 0 for none).
    pub unready_grace_ms: u64,
}

/// Static web console.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Folder with `console/` and `patient/`; unset serves none.
    pub static_dir: Option<PathBuf>,
    /// Folder with the JavaScript SDK (`consult.js`), served at `/sdk`.
    pub sdk_dir: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info,consult_hub=debug`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            listen_backlog: LISTEN_BACKLOG,
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            session: SessionConfig::default(),
            broker: BrokerConfig::default(),
            shutdown: ShutdownConfig::default(),
            web: WebConfig::default(),
            log: LogConfig::default(),
            notify: NotifyConfig::default(),
            http: HttpConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl SessionConfig {
    /// The most a connection's unsent writes may hold before the socket is
    /// dropped: four hard frame limits (1 MiB by default).
    #[must_use]
    pub fn write_ceiling_bytes(&self) -> usize {
        self.hard_message_bytes.saturating_mul(4)
    }

    /// The most one listing answer (a `history` page, a notification list)
    /// carries: half the write ceiling (512 KiB by default).
    #[must_use]
    pub fn answer_budget_bytes(&self) -> usize {
        self.write_ceiling_bytes() / 2
    }

    /// The largest answer the hub sends at all: the write ceiling less one
    /// hard frame limit (768 KiB by default), leaving room for the events
    /// written with it. A larger one is replaced by an `answer_too_large`
    /// error.
    #[must_use]
    pub fn answer_ceiling_bytes(&self) -> usize {
        self.write_ceiling_bytes()
            .saturating_sub(self.hard_message_bytes)
    }
}

/// Which group-commit writer a setting is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendWriter {
    /// The writer thread of a SQLite file.
    SqliteFile,
    /// The pool writer on PostgreSQL.
    Postgres,
    /// The pool writer on in-memory SQLite (tests, demos).
    SqliteInMemory,
}

impl DatabaseConfig {
    /// How long a group-commit batch's first message waits for others: the
    /// setting, else [`SQLITE_APPEND_LINGER_US`] for the SQLite file writer,
    /// [`POSTGRES_APPEND_LINGER_US`] for PostgreSQL's and none for in-memory
    /// SQLite's.
    #[must_use]
    pub fn append_linger(&self, writer: AppendWriter) -> Duration {
        let default = match writer {
            AppendWriter::SqliteFile => SQLITE_APPEND_LINGER_US,
            AppendWriter::Postgres => POSTGRES_APPEND_LINGER_US,
            AppendWriter::SqliteInMemory => 0,
        };
        Duration::from_micros(self.append_linger_us.unwrap_or(default))
    }

    /// The spacing of SQLite checkpoints while messages are written: the
    /// setting, else [`SQLITE_CHECKPOINT_INTERVAL_MS`].
    #[must_use]
    pub fn sqlite_checkpoint_interval(&self) -> Duration {
        Duration::from_millis(
            self.sqlite_checkpoint_interval_ms
                .unwrap_or(SQLITE_CHECKPOINT_INTERVAL_MS),
        )
    }

    /// The spacing of the checkpoint thread's log syncs between checkpoints:
    /// `None` with `synchronous = full` (every commit syncs the log), else
    /// the setting or [`SQLITE_LOG_SYNC_INTERVAL_MS`].
    #[must_use]
    pub fn sqlite_log_sync_interval(&self) -> Option<Duration> {
        match self.sqlite_synchronous {
            SqliteSync::Full => None,
            SqliteSync::Normal => Some(Duration::from_millis(
                self.sqlite_log_sync_interval_ms
                    .unwrap_or(SQLITE_LOG_SYNC_INTERVAL_MS),
            )),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_DATABASE_URL.to_owned(),
            max_connections: 16,
            append_batch_max: APPEND_BATCH_MAX,
            append_linger_us: None,
            sqlite_checkpoint_interval_ms: None,
            sqlite_log_sync_interval_ms: None,
            sqlite_synchronous: SqliteSync::default(),
            partition_months_ahead: PARTITION_MONTHS_AHEAD,
            partition_interval_secs: PARTITION_INTERVAL_SECS,
            partition_analyze_interval_secs: PARTITION_ANALYZE_INTERVAL_SECS,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            public_keys: Vec::new(),
            api_keys: Vec::new(),
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            leeway_secs: 30,
            max_token_lifetime_secs: MAX_TOKEN_LIFETIME_SECS,
            issuer: None,
            audience: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            heartbeat_interval_secs: HEARTBEAT_INTERVAL_SECS,
            idle_timeout_secs: IDLE_TIMEOUT_SECS,
            max_message_bytes: MAX_MESSAGE_BYTES,
            hard_message_bytes: HARD_MESSAGE_BYTES,
            outbound_queue_capacity: OUTBOUND_QUEUE_CAPACITY,
            rate_limit_per_sec: RATE_LIMIT_PER_SEC,
            rate_limit_burst: RATE_LIMIT_BURST,
            rate_limit_strikes: RATE_LIMIT_STRIKES,
            write_timeout_secs: WRITE_TIMEOUT_SECS,
            read_buffer_bytes: READ_BUFFER_BYTES,
            write_buffer_bytes: WRITE_BUFFER_BYTES,
            max_body_chars: MAX_BODY_CHARS,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Local,
            redis_url: None,
            cluster_urls: Vec::new(),
            redis_username: None,
            redis_password: None,
            redis_tls_ca_file: None,
            redis_tls_cert_file: None,
            redis_tls_key_file: None,
            cluster_key: None,
            cluster_key_secondary: None,
            insecure_no_cluster_key: false,
            node_id: None,
            presence_ttl_ms: PRESENCE_TTL_MS,
            presence_cache_ms: PRESENCE_CACHE_MS,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_secs: DRAIN_TIMEOUT_SECS,
            unready_grace_ms: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

/// The top-level keys of [`Config`].
const SECTIONS: &[&str] = &[
    "listen",
    "listen_backlog",
    "database",
    "auth",
    "session",
    "broker",
    "shutdown",
    "web",
    "log",
    "notify",
    "http",
    "retention",
];

fn is_section(key: &str) -> bool {
    let top = key
        .split("__")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    SECTIONS.contains(&top.as_str())
}

impl Config {
    /// Loads defaults, then `file` if given, then `CONSULT_…` variables.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError`] when the file cannot be read or parsed, a key
    /// is unknown, or [`Config::validate`] finds problems.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError {
                    problems: vec![format!("config file {} does not exist", path.display())],
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only variables naming a section of this config are read, so that
        // other tools' `CONSULT_…` variables (the CLI's `CONSULT_TOKEN`, the
        // test suite's `CONSULT_TEST_…`) do not stop the hub; unknown keys
        // inside a section are still refused.
        figment = figment.merge(
            Env::prefixed("CONSULT_")
                .filter(|key| is_section(key.as_str()))
                .split("__"),
        );
        let config: Config = figment.extract().map_err(|error| ConfigError {
            problems: error.into_iter().map(|e| e.to_string()).collect(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense together.
    ///
    /// # Errors
    ///
    /// Returns every problem found, one per line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.http.validate(&mut problems);
        let session = &self.session;
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            problems
                .push("database.url must start with sqlite:, postgres:// or postgresql://".into());
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".into());
        }
        if self.listen_backlog == 0 {
            problems.push("listen_backlog must be at least 1".into());
        }
        if self.database.append_batch_max == 0 {
            problems.push("database.append_batch_max must be at least 1".into());
        }
        if self.database.append_linger_us.is_some_and(|us| us > 10_000) {
            problems.push("database.append_linger_us must be at most 10000 (10 ms)".into());
        }
        for (key, value) in [
            (
                "sqlite_checkpoint_interval_ms",
                self.database.sqlite_checkpoint_interval_ms,
            ),
            (
                "sqlite_log_sync_interval_ms",
                self.database.sqlite_log_sync_interval_ms,
            ),
        ] {
            if value.is_some_and(|ms| !(1..=SQLITE_CHECKPOINT_INTERVAL_MAX_MS).contains(&ms)) {
                problems.push(format!(
                    "database.{key} must be between 1 and {SQLITE_CHECKPOINT_INTERVAL_MAX_MS}"
                ));
            }
        }
        if session.max_message_bytes == 0 || session.max_message_bytes > session.hard_message_bytes
        {
            problems.push(
                "session.max_message_bytes must be between 1 and session.hard_message_bytes".into(),
            );
        }
        if session.outbound_queue_capacity == 0 {
            problems.push("session.outbound_queue_capacity must be at least 1".into());
        }
        if session.heartbeat_interval_secs == 0 {
            problems.push("session.heartbeat_interval_secs must be at least 1".into());
        }
        if session.idle_timeout_secs <= session.heartbeat_interval_secs {
            problems.push(
                "session.idle_timeout_secs must be longer than session.heartbeat_interval_secs"
                    .into(),
            );
        }
        if session.rate_limit_per_sec == 0 || session.rate_limit_burst == 0 {
            problems
                .push("session.rate_limit_per_sec and rate_limit_burst must be at least 1".into());
        }
        if session.max_body_chars == 0 {
            problems.push("session.max_body_chars must be at least 1".into());
        }
        if self.broker.presence_ttl_ms < 300 {
            problems.push("broker.presence_ttl_ms must be at least 300".into());
        }
        if self.broker.presence_cache_ms >= self.broker.presence_ttl_ms {
            problems.push("broker.presence_cache_ms must be less than presence_ttl_ms".into());
        }
        self.broker.validate(&mut problems);
        self.auth.validate(&mut problems);
        for key in &self.auth.public_keys {
            if key.algorithm != "RS256" && key.algorithm != "ES256" {
                problems.push(format!(
                    "auth.public_keys: algorithm must be RS256 or ES256, not {}",
                    key.algorithm
                ));
            }
        }
        self.notify.validate(&mut problems);
        self.retention.validate(&mut problems);
        if self.database.partition_months_ahead > PARTITION_MONTHS_AHEAD_MAX {
            problems.push(format!(
                "database.partition_months_ahead must be at most {PARTITION_MONTHS_AHEAD_MAX}"
            ));
        }
        if self.database.partition_interval_secs == 0 {
            problems.push("database.partition_interval_secs must be at least 1".into());
        }
        if self.database.partition_analyze_interval_secs == 0 {
            problems.push("database.partition_analyze_interval_secs must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// True when the database URL names PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.url.starts_with("postgres")
    }
}

#[cfg(test)]
mod tests;
