//! Async Rust client for the consult-hub WebSocket protocol.
//!
//! One [`Client`] is one authenticated connection. A background task owns
//! the socket: it routes each `ok`/`error` to the command waiting for it and
//! queues every other frame as an event for [`Client::next_event`]. The
//! server's integration tests and the load harness both use this client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), consult_client::ClientError> {
//! use consult_client::Client;
//! use consult_protocol::ConsultationId;
//!
//! let (client, welcome) = Client::connect("ws://127.0.0.1:8080/v1/ws", "jwt").await?;
//! let consultation = ConsultationId::from("k1");
//! client.join(&consultation, None).await?;
//! let (seq, _duplicate) = client.send(&consultation, "m1", "hello").await?;
//! while let Some(event) = client.next_event().await {
//!     println!("{event:?}");
//! }
//! println!("{:?}", client.close_info());
//! # drop((welcome, seq));
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `client`: [`Client`]: connect, request, events, close.
//! - `commands`: the typed commands (`join`, `send`, ...) on [`Client`].
//! - `config`: [`ClientConfig`] and its named defaults.
//! - `error`: [`ClientError`].
//! - `handshake`: the `hello` → [`Welcome`] exchange.
//! - `connection`: the socket task; [`CloseInfo`] says how it ended.
//! - `routing`: matching answers to waiting commands; command ids.
//! - `resilient`: [`ResilientClient`], the opt-in layer that reconnects
//!   with backoff and resumes rooms and the dashboard without gaps or
//!   duplicates.
//!
//! The `consult-cli` binary (`src/bin/consult-cli`) is a command-line
//! client built on [`ResilientClient`].

mod client;
mod commands;
mod config;
mod connection;
mod error;
mod handshake;
mod resilient;
mod routing;

pub use client::Client;
pub use commands::{Joined, Notified};
pub use config::{
    CLOSE_TIMEOUT, COMMANDS_CAPACITY, CONNECT_TIMEOUT, ClientConfig, EVENTS_CAPACITY, EventsFull,
    MAX_MESSAGE_BYTES, REQUEST_TIMEOUT,
};
pub use connection::{CloseInfo, ClosedBy};
pub use error::ClientError;
pub use handshake::Welcome;
pub use resilient::{
    BACKOFF_BASE, BACKOFF_JITTER, BACKOFF_MAX, Backoff, ConnectionState, KEEPALIVE_INTERVAL,
    REFRESH_BEFORE, RETRY_TIMEOUT, ResilientClient, ResilientConfig, ResilientEvent,
    ResilientStats, STABLE_AFTER, TokenProvider,
};
