//! consult-hub: a real-time messaging hub for telehealth consultations.
//!
//! Each consultation is a room. Providers, clinic admins and patients connect
//! over WebSocket (`/v1/ws`); chat messages, status changes, receipts,
//! typing and presence reach every member at once. The host platform's back
//! end uses the REST API under `/v1/`.
//!
//! # Layout
//!
//! - [`config`]: one `Config` tree from defaults, file, environment, flags.
//! - [`app`]: builds the hub from a config, runs it, shuts it down in order.
//! - [`auth`]: JWT → [`auth::Principal`]; API keys for servers.
//! - [`http`]: the axum router (WebSocket upgrade, REST, health, metrics).
//! - [`session`]: one WebSocket connection, one task owning its socket.
//! - [`hub`]: this node's topic registry and local fan-out.
//! - [`broker`]: cross-node event transport (in-process today).
//! - [`presence`]: who is connected.
//! - [`domain`]: pure rules: access, status machine, text validation.
//! - [`service`]: use cases shared by sessions and the REST API.
//! - [`store`]: sea-orm entities, migrations, repositories, group commit.
//! - [`demo`]: demo data for the embedded default.
//! - [`metrics`]: the Prometheus recorder.
//! - [`supervisor`]: restarts failed background workers; readiness sees them.

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection_slots;
pub mod demo;
pub mod domain;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod notify;
pub mod presence;
mod secrets;
pub mod service;
pub mod session;
pub mod store;
pub mod supervisor;
pub mod telemetry;

pub use app::{App, AppState, shutdown_signal};
pub use config::Config;
