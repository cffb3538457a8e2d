//! The hub's integration tests: real hub, real database (SQLite or, with
//! `CONSULT_TEST_DATABASE=postgres`, PostgreSQL), real WebSockets.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // Parts used only by some test modules.
mod harness;

mod abuse;
mod alerts;
mod api;
mod appender;
mod bad_input;
mod batch_append;
mod broker_conformance;
mod client_refresh;
mod client_resume;
mod cluster;
mod cluster_presence;
mod dashboard;
mod edge_values;
mod handshake;
mod join_race;
mod jwks;
mod lifecycle;
mod listener;
mod messages;
mod migrations;
mod notifications;
mod openapi;
mod ops_files;
mod paging;
mod pg_plans;
mod platform_messages;
mod quick_messages;
mod receipts;
mod redis_security;
mod retention;
mod revocation;
mod rooms;
mod schemathesis;
mod sharded_cluster;
mod status;
mod supervision;
mod tenant_isolation;
mod token_life;
mod unread_counts;
