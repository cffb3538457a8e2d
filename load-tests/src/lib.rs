//! Load-test harness for consult-hub.
//!
//! Six scenarios, each a subcommand of the `consult-load` binary and a
//! `run` function here (so tests can run them briefly in-process):
//! `fanout`, `idle`, `storm`, `dashboard`, `abuse` and `cluster` (see
//! [`scenario`]). Each sets
//! up its data through the hub's REST API, drives WebSocket clients, and
//! returns a serializable result with summary lines and SVG plots. The hub
//! is either started here ([`hub_process`], `--spawn-hub`) or already
//! running (`--url`, `--api-key`, `--hub-pid`).
//!
//! This is a test harness and a CLI, so errors are `anyhow` throughout;
//! nothing the network or the hub sends is unwrapped.
//!
//! # Layout
//!
//! - [`target`]: the hub nodes of a run, started or given.
//! - [`hub_process`]: starting `consult-hub` and `redis-server`; finding
//!   the hub binary; raising the open-file limit.
//! - [`api`]: consultations and tokens through the REST API.
//! - [`pacer`]: open-loop paced sending through typed clients.
//! - [`raw`]: a minimal client that binds its own source address.
//! - [`redis_cluster`]: a private Redis Cluster; reading Redis `INFO`.
//! - [`fleet`]: thousands of raw followers, in shards and worker processes.
//! - [`payload`]: message bodies stamped with their send time.
//! - [`stats`]: histograms, timelines, `seq` tracking.
//! - [`procstat`]: hub CPU and memory from `/proc`.
//! - [`floor`]: the floor, a room hub with nothing but the protocol's
//!   message path, measured beside the hub (`consult-floor`).
//! - [`disk_probe`]: the disk's own sync latency beside a started hub.
//! - [`hub_metrics`]: the hub's own counts from its `/metrics` page.
//! - [`report`], [`svg`]: JSON results, Markdown and SVG plots.
//! - [`progress`]: progress bars.
//! - [`scenario`]: the six scenarios.
//! - [`chaos`]: the fault campaign (`consult-load chaos`): three nodes,
//!   PostgreSQL and Redis under seeded faults, and a checker.

pub mod api;
pub mod chaos;
pub mod disk_probe;
pub mod fleet;
pub mod floor;
pub mod hub_metrics;
pub mod hub_process;
pub mod pacer;
pub mod payload;
pub mod procstat;
pub mod progress;
pub mod raw;
pub mod redis_cluster;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod svg;
pub mod target;
