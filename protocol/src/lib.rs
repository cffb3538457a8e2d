//! Wire types of the consult-hub WebSocket protocol.
//!
//! This crate owns the JSON shape of every frame a client and the hub
//! exchange, the error and close codes, and the identifiers they carry. It
//! holds serde types only: no tokio, no IO, no hub logic. The server, the Rust
//! client and the load harness all speak through these types, so a change here
//! is a protocol change and belongs in `docs/protocol.md` too.
//!
//! # Layout
//!
//! - [`ids`]: identifier and sequence newtypes.
//! - [`model`]: roles, statuses and the records frames carry.
//! - [`client`]: [`ClientFrame`], what a client sends, and its decoder.
//! - [`server`]: [`ServerFrame`], what the hub sends.
//! - [`codes`]: [`ErrorCode`] and [`CloseCode`].

pub mod client;
pub mod codes;
pub mod ids;
pub mod model;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod server;

pub use client::{ClientFrame, DecodeError, decode_client_frame};
pub use codes::{CloseCode, ErrorCode};
pub use ids::{ClinicId, CommandId, ConsultationId, Seq, UserId};
pub use model::{
    AlertChannel, ChatMessage, ConsultationStatus, ConsultationView, DashboardEntry,
    DevicePlatform, Member, MessageKind, NotificationReason, NotificationStatus, NotificationView,
    QuickTemplate, ReceiptKind, Role,
};
pub use server::{CommandResult, ServerFrame};

/// Version of the protocol this crate describes, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
