//! `consult-load`: the command line of the load harness. Parses flags,
//! opens the target hub, runs one scenario, prints its summary and writes
//! the JSON results and report. Everything else lives in the library.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use consult_load::hub_process::raise_open_file_limit;
use consult_load::report::{self, Plot};
use consult_load::scenario::abuse::{self, AbuseOptions};
use consult_load::scenario::cluster::{self, ClusterOptions};
use consult_load::scenario::dashboard::{self, DashboardOptions};
use consult_load::scenario::fanout::{self, FanoutOptions};
use consult_load::scenario::idle::{self, IdleOptions};
use consult_load::scenario::storm::{self, StormOptions};
use consult_load::target::{Target, TargetSpec};
use serde::Serialize;
use std::path::PathBuf;

/// Followers per worker process when `--processes` is left at 0 (auto):
/// well under the 20,000 open files one process may hold.
const FOLLOWERS_PER_PROCESS: usize = 8000;

#[derive(Debug, Parser)]
#[command(
    name = "consult-load",
    version,
    about = "Load tests and benchmarks for consult-hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// R rooms, a provider per room sending at an aggregate rate, K members
    /// per room receiving: throughput, loss, latency, hub CPU per message.
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Rooms (consultations), one sending provider each.
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        /// Receiving members per room besides the sender (the patient, then
        /// admins). The default, 1, is the shape consultations have: one
        /// provider, one patient.
        #[arg(long, default_value_t = 1)]
        members: usize,
        /// Messages sent per second, all rooms together (delivered = rate × members).
        #[arg(long, default_value_t = 5000.0)]
        rate: f64,
        /// Messages to send in total (default: rate × duration).
        #[arg(long)]
        messages: Option<u64>,
        /// Sending time when --messages is not given, seconds.
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        /// Message body length, bytes.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        /// Sends awaiting their answer at once, at most.
        #[arg(long, default_value_t = 20_000)]
        max_in_flight: usize,
        /// Time members get to receive everything after the last answer, seconds.
        #[arg(long, default_value_t = 10)]
        drain_timeout_secs: u64,
        /// Providers join their room before sending, as the console does
        /// (the default; `--senders-join false` sends without joining, so
        /// the sender gets no copy of its own message).
        #[arg(long, default_value_t = true, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        senders_join: bool,
        /// The patient of each room sends and its provider receives.
        #[arg(long)]
        patients_send: bool,
        /// Members acknowledge every message they receive, as the patient
        /// app does: a `delivered` receipt each, and a `read` one for every
        /// fourth; the summary counts them and the hub's receipt writes.
        #[arg(long)]
        receipts: bool,
    },
    /// N joined, silent connections: hub memory per connection, CPU per connect.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Connections.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Rooms they join, round-robin.
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        /// Wait after the last join before measuring, seconds.
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
        /// Hold the connections this long after measuring, seconds.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// The honest 1:1 chat load alone, then beside attackers (handshake
    /// floods, half-open HTTP, slow readers, device floods), in rounds:
    /// what the attack costs honest users and what the hub refused.
    Abuse {
        #[command(flatten)]
        common: Common,
        /// Rooms of the honest load (a provider sends, the patient receives).
        #[arg(long, default_value_t = 200)]
        rooms: usize,
        /// Honest messages per second, all rooms together.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Honest sending time per phase, seconds.
        #[arg(long, default_value_t = 15)]
        duration_secs: u64,
        /// Rounds of (without, with) the attack.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// WebSocket upgrades per second that never say hello (one in four
        /// sends commands instead of nothing).
        #[arg(long, default_value_t = 200.0)]
        handshake_flood_per_sec: f64,
        /// Half-sent HTTP requests held open.
        #[arg(long, default_value_t = 200)]
        half_open: usize,
        /// Patients that never read, each in a room its provider fills.
        #[arg(long, default_value_t = 20)]
        slow_readers: usize,
        /// Messages per second into each slow reader's room (3,900 bytes
        /// each; keep it under the command rate limit, 20/s by default).
        #[arg(long, default_value_t = 19.0)]
        slow_reader_rate: f64,
        /// Patients registering devices without pause.
        #[arg(long, default_value_t = 1)]
        device_floods: usize,
        /// Connections each of those patients floods over at once (past the
        /// hub's 20 per user, the rest are refused with 4007).
        #[arg(long, default_value_t = 24)]
        device_flood_connections: usize,
    },
    /// N followers drop their connections at once and resume while
    /// providers keep sending: time to resume, messages missed.
    Storm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Followers.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Rooms they follow, round-robin.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Provider connections sending into the rooms.
        #[arg(long, default_value_t = 10)]
        providers: usize,
        /// Messages per second sent throughout, all rooms together.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Sending time before the drop, seconds.
        #[arg(long, default_value_t = 3)]
        before_secs: u64,
        /// Sending time after everyone resumed, seconds.
        #[arg(long, default_value_t = 3)]
        after_secs: u64,
        /// Time followers get to catch up at the end, seconds.
        #[arg(long, default_value_t = 30)]
        finish_timeout_secs: u64,
        /// Message body length, bytes.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
    },
    /// Open/ready/enter/end cycles under dashboard watchers: delta latency and counts.
    Dashboard {
        #[command(flatten)]
        common: Common,
        /// Admins watching the clinic's dashboard.
        #[arg(long, default_value_t = 20)]
        watchers: usize,
        /// Provider/patient pairs driving cycles concurrently.
        #[arg(long, default_value_t = 20)]
        pairs: usize,
        /// Consultations taken through a full cycle.
        #[arg(long, default_value_t = 500)]
        cycles: usize,
        /// Time watchers get after the last change, seconds.
        #[arg(long, default_value_t = 10)]
        drain_timeout_secs: u64,
    },
    /// The whole deployment at scale: starts PostgreSQL, Redis (or a Redis
    /// Cluster) and N nodes, connects patients, providers and watching
    /// admins, chats in a share of the consultations, drains one node and
    /// kills another, and reports per node and in total. Exits non-zero
    /// when a message was lost.
    Cluster(ClusterArgs),
    /// The fault campaign: three nodes, PostgreSQL, Redis and a provider
    /// under seeded faults while a mixed workload runs; checks that nothing
    /// acknowledged is lost or sent twice. Exits non-zero on any anomaly.
    Chaos(consult_load::chaos::ChaosOptions),
    /// Internal: one fleet shard, driven over stdin/stdout by a parent run.
    #[command(hide = true)]
    Worker {
        /// The shard plan written by the parent.
        #[arg(long)]
        plan: PathBuf,
    },
}

/// Where the hub is, and where results go.
#[derive(Debug, Args)]
struct Common {
    /// Start this consult-hub binary (in a temporary folder) instead of using --url.
    #[arg(long, value_name = "PATH")]
    spawn_hub: Option<PathBuf>,
    /// Hub nodes to start with --spawn-hub (more than one needs Redis).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// database.url for started hubs (default: one SQLite file in a temporary folder, shared).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Redis URL for started hubs' broker.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Start a private redis-server (this binary) for the broker.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "redis-server")]
    spawn_redis: Option<PathBuf>,
    /// Extra setting for started hubs, as CONSULT_NAME=VALUE (repeatable).
    #[arg(long = "hub-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    hub_env: Vec<(String, String)>,
    /// A running hub node's base URL, http://HOST:PORT (repeat for several nodes).
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// API key of the running hub.
    #[arg(long, env = "CONSULT_LOAD_API_KEY")]
    api_key: Option<String>,
    /// Process id of a running hub node, to sample its CPU and memory (repeatable).
    #[arg(long = "hub-pid", value_name = "PID")]
    hub_pids: Vec<u32>,
    #[command(flatten)]
    output: ResultFiles,
}

/// Where a run's results go.
#[derive(Debug, Args)]
struct ResultFiles {
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write a Markdown report with SVG plots into this folder.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// No progress bars or notes.
    #[arg(long)]
    quiet: bool,
}

/// Parameters of `consult-load cluster`.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// The consult-hub binary (default: target/release, then target/debug).
    #[arg(long, value_name = "PATH")]
    hub: Option<PathBuf>,
    /// The redis-server binary (redis-cli is looked for beside it).
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    redis_server: PathBuf,
    /// The broker topology.
    #[arg(long, value_enum, default_value = "redis")]
    broker: cluster::Broker,
    /// A PostgreSQL URL for the hubs (default: start a private one, fsync on).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Hub nodes (each must stay under the open-file limit after clients move).
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Patients, one consultation each.
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Consultations per provider.
    #[arg(long, default_value_t = 10)]
    patients_per_provider: usize,
    /// Clinics the providers are spread over.
    #[arg(long, default_value_t = 10)]
    clinics: usize,
    /// Admins watching each clinic's dashboard.
    #[arg(long, default_value_t = 2)]
    admins_per_clinic: usize,
    /// Share of consultations that chat, percent.
    #[arg(long, default_value_t = 20)]
    chat_percent: u32,
    /// Messages per minute each member of a chatting consultation sends.
    #[arg(long, default_value_t = 2.0)]
    messages_per_minute: f64,
    /// Chat message body length, bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Measured steady state before the faults, seconds.
    #[arg(long, default_value_t = 60)]
    steady_secs: u64,
    /// Between restarting the drained node and the kill, seconds.
    #[arg(long, default_value_t = 20)]
    between_secs: u64,
    /// Measured steady state after the kill, seconds.
    #[arg(long, default_value_t = 60)]
    after_secs: u64,
    /// Extra setting for every node, as CONSULT_NAME=VALUE (repeatable).
    #[arg(long = "hub-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    hub_env: Vec<(String, String)>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    output: ResultFiles,
}

/// How followers are spread.
#[derive(Debug, Args)]
struct FleetArgs {
    /// Worker processes holding the connections (0: one per 8,000).
    #[arg(long, default_value_t = 0)]
    processes: usize,
    /// 127.0.0.x source addresses to spread connections over (127.0.0.2 up).
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// Connects in flight at once, all processes together.
    #[arg(long, default_value_t = 512)]
    connect_concurrency: usize,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if name.starts_with("CONSULT_") => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected CONSULT_NAME=VALUE, got {text}")),
    }
}

impl Common {
    fn target_spec(&self) -> TargetSpec {
        TargetSpec {
            spawn_hub: self.spawn_hub.clone(),
            nodes: self.nodes,
            database_url: self.database.clone(),
            redis_url: self.redis_url.clone(),
            spawn_redis: self.spawn_redis.clone(),
            hub_env: self.hub_env.clone(),
            urls: self.urls.clone(),
            api_key: self.api_key.clone(),
            hub_pids: self.hub_pids.clone(),
        }
    }
}

fn processes(requested: usize, clients: usize) -> usize {
    match requested {
        0 => clients.div_ceil(FOLLOWERS_PER_PROCESS).max(1),
        n => n,
    }
}

/// The JSON written by `--out`.
#[derive(Serialize)]
struct Output<'a, T> {
    scenario: &'a str,
    nodes: usize,
    redis: bool,
    spawned: bool,
    finished_at: String,
    result: &'a T,
}

fn finish<T: Serialize>(
    common: &Common,
    target: &Target,
    scenario: &str,
    result: &T,
    lines: Vec<String>,
    plots: Vec<Plot>,
) -> Result<()> {
    for line in &lines {
        println!("{line}");
    }
    if let Some(out) = &common.output.out {
        let output = Output {
            scenario,
            nodes: target.nodes.len(),
            redis: target.redis,
            spawned: target.spawned,
            finished_at: chrono::Utc::now().to_rfc3339(),
            result,
        };
        report::write_json(out, &output)?;
        println!("results: {}", out.display());
    }
    if let Some(dir) = &common.output.report_dir {
        let path = report::write_report(dir, scenario, &lines, &plots)?;
        println!("report: {}", path.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let limit = raise_open_file_limit();
    tracing::debug!(limit, "open-file limit");
    let cli = Cli::parse();
    if let Scenario::Worker { plan } = &cli.command {
        consult_load::fleet::run_child(plan).await?;
        // Do not wait for the stdin reader, which may block until the
        // parent closes the pipe.
        std::process::exit(0);
    }
    run(cli.command).await
}

async fn run(scenario: Scenario) -> Result<()> {
    match scenario {
        Scenario::Fanout {
            common,
            rooms,
            members,
            rate,
            messages,
            duration_secs,
            body_bytes,
            max_in_flight,
            drain_timeout_secs,
            senders_join,
            patients_send,
            receipts,
        } => {
            if rate <= 0.0 || rooms == 0 || members == 0 {
                bail!("--rate, --rooms and --members must be positive");
            }
            let options = FanoutOptions {
                rooms,
                members,
                rate,
                messages: messages.unwrap_or((rate * duration_secs as f64) as u64),
                body_bytes,
                max_in_flight,
                drain_timeout_secs,
                senders_join,
                patients_send,
                connect_attempts: 1,
                receipts,
            };
            let target = Target::open(&common.target_spec()).await?;
            let result = fanout::run(&target, &options, common.output.quiet).await?;
            finish(
                &common,
                &target,
                "fanout",
                &result,
                result.summary_lines(),
                result.plots(),
            )
        }
        Scenario::Idle {
            common,
            fleet,
            clients,
            rooms,
            settle_secs,
            hold_secs,
        } => {
            let options = IdleOptions {
                clients,
                rooms,
                processes: processes(fleet.processes, clients),
                sources: fleet.sources,
                connect_concurrency: fleet.connect_concurrency,
                settle_secs,
                hold_secs,
                worker_exe: None,
            };
            let target = Target::open(&common.target_spec()).await?;
            let result = idle::run(&target, &options, common.output.quiet).await?;
            finish(
                &common,
                &target,
                "idle",
                &result,
                result.summary_lines(),
                result.plots(),
            )
        }
        Scenario::Abuse {
            common,
            rooms,
            rate,
            duration_secs,
            rounds,
            handshake_flood_per_sec,
            half_open,
            slow_readers,
            slow_reader_rate,
            device_floods,
            device_flood_connections,
        } => {
            if rate <= 0.0 || rooms == 0 {
                bail!("--rate and --rooms must be positive");
            }
            let options = AbuseOptions {
                honest: FanoutOptions {
                    rooms,
                    members: 1,
                    rate,
                    messages: (rate * duration_secs as f64) as u64,
                    body_bytes: 64,
                    max_in_flight: 20_000,
                    drain_timeout_secs: 10,
                    senders_join: true,
                    patients_send: false,
                    connect_attempts: abuse::HONEST_CONNECT_ATTEMPTS,
                    receipts: false,
                },
                rounds,
                handshake_flood_per_sec,
                half_open,
                slow_readers,
                slow_reader_rate,
                device_floods,
                device_flood_connections,
            };
            // A started hub keeps the default command rate limit here (the
            // other scenarios raise it out of the way): it is one of the
            // defences under test. --hub-env still overrides it.
            let mut spec = common.target_spec();
            for (name, value) in abuse::DEFAULT_LIMITS {
                spec.hub_env
                    .insert(0, ((*name).to_owned(), (*value).to_owned()));
            }
            let target = Target::open(&spec).await?;
            let result = abuse::run(&target, &options, common.output.quiet).await?;
            finish(
                &common,
                &target,
                "abuse",
                &result,
                result.summary_lines(),
                Vec::new(),
            )?;
            if result.lost() > 0 {
                bail!("{} honest messages lost", result.lost());
            }
            Ok(())
        }
        Scenario::Storm {
            common,
            fleet,
            clients,
            rooms,
            providers,
            rate,
            before_secs,
            after_secs,
            finish_timeout_secs,
            body_bytes,
        } => {
            if rate <= 0.0 {
                bail!("--rate must be positive");
            }
            let options = StormOptions {
                clients,
                rooms,
                providers,
                rate,
                before_secs,
                after_secs,
                processes: processes(fleet.processes, clients),
                sources: fleet.sources,
                connect_concurrency: fleet.connect_concurrency,
                finish_timeout_secs,
                body_bytes,
                worker_exe: None,
            };
            let target = Target::open(&common.target_spec()).await?;
            let result = storm::run(&target, &options, common.output.quiet).await?;
            finish(
                &common,
                &target,
                "storm",
                &result,
                result.summary_lines(),
                result.plots(),
            )
        }
        Scenario::Dashboard {
            common,
            watchers,
            pairs,
            cycles,
            drain_timeout_secs,
        } => {
            let options = DashboardOptions {
                watchers,
                pairs,
                cycles,
                drain_timeout_secs,
            };
            let target = Target::open(&common.target_spec()).await?;
            let result = dashboard::run(&target, &options, common.output.quiet).await?;
            finish(
                &common,
                &target,
                "dashboard",
                &result,
                result.summary_lines(),
                result.plots(),
            )
        }
        Scenario::Cluster(args) => cluster_run(args).await,
        Scenario::Chaos(options) => chaos(&options).await,
        Scenario::Worker { .. } => unreachable_worker(),
    }
}

/// The hub binary given, else the release build, else the debug one.
fn hub_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(hub) => Ok(hub),
        None => consult_load::hub_process::locate_hub_binary("release")
            .or_else(|| consult_load::hub_process::locate_hub_binary("debug"))
            .context("no consult-hub binary found; build it or give --hub PATH"),
    }
}

/// Runs `cluster`, prints its summary, writes its files, and fails when a
/// message was lost.
async fn cluster_run(args: ClusterArgs) -> Result<()> {
    if args.patients == 0 || args.messages_per_minute <= 0.0 || args.chat_percent > 100 {
        bail!("--patients and --messages-per-minute must be positive, --chat-percent at most 100");
    }
    let hub = hub_binary(args.hub)?;
    let connections = args.patients + args.patients.div_ceil(args.patients_per_provider.max(1));
    let options = ClusterOptions {
        hub,
        redis_server: args.redis_server,
        broker: args.broker,
        database_url: args.database,
        nodes: args.nodes,
        patients: args.patients,
        patients_per_provider: args.patients_per_provider,
        clinics: args.clinics,
        admins_per_clinic: args.admins_per_clinic,
        chat_percent: args.chat_percent,
        messages_per_minute: args.messages_per_minute,
        body_bytes: args.body_bytes,
        processes: processes(args.fleet.processes, connections),
        sources: args.fleet.sources,
        connect_concurrency: args.fleet.connect_concurrency,
        steady_secs: args.steady_secs,
        between_secs: args.between_secs,
        after_secs: args.after_secs,
        hub_env: args.hub_env,
        worker_exe: None,
    };
    let result = cluster::run(&options, args.output.quiet).await?;
    let lines = result.summary_lines();
    for line in &lines {
        println!("{line}");
    }
    if let Some(out) = &args.output.out {
        report::write_json(out, &result)?;
        println!("results: {}", out.display());
    }
    if let Some(dir) = &args.output.report_dir {
        let path = report::write_report(dir, "cluster", &lines, &result.plots())?;
        println!("report: {}", path.display());
    }
    if result.lost > 0 {
        bail!("{} acknowledged messages lost", result.lost);
    }
    Ok(())
}

/// Runs the fault campaign, prints its summary, writes its files, and
/// fails when it found an anomaly.
async fn chaos(options: &consult_load::chaos::ChaosOptions) -> Result<()> {
    let hub = hub_binary(options.hub.clone())?;
    let seed = consult_load::chaos::seed_or_clock(options.seed);
    println!("chaos: seed {seed}");
    let (result, journal) = consult_load::chaos::run(options, hub, seed).await?;
    for line in result.summary_lines() {
        println!("{line}");
    }
    for anomaly in result.anomalies.iter().take(20) {
        println!("  {}: {}", anomaly.kind, anomaly.detail);
    }
    if let Some(out) = &options.out {
        report::write_json(out, &result)?;
        println!("results: {}", out.display());
    }
    if let Some(path) = &options.journal {
        report::write_json(path, &*journal.lock())?;
        println!("journal: {}", path.display());
    }
    if result.anomalies_total > 0 {
        bail!("{} anomalies (seed {seed})", result.anomalies_total);
    }
    Ok(())
}

fn unreachable_worker() -> Result<()> {
    // `main` handles `worker` before calling `run`.
    Err(anyhow::anyhow!("worker is handled in main")).context("internal")
}
