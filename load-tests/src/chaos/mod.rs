//! `consult-load chaos`: the fault campaign. Starts three hub nodes, a
//! private PostgreSQL and Redis (each node reaching them through fault
//! proxies of its own) and a fake push/SMS provider; runs a mixed workload
//! in every room while injecting faults drawn from a seeded generator;
//! then stops the faults, lets every member resume, and checks what was
//! acknowledged, stored, delivered and sent (see [`check`]) and that
//! presence converges. Documented in `docs/reliability.md`.
//!
//! - [`cluster`]: the parts and their settings; healing everything.
//! - [`nodes`], [`postgres`], [`redis`]: the processes.
//! - [`proxy`]: the TCP fault proxy; [`provider`]: the fake provider.
//! - [`faults`]: the seeded fault schedule.
//! - [`workload`]: the actors; [`journal`]: the record.
//! - [`settle`]: the end phase (resume, presence, notifications).
//! - [`check`]: the rules.

pub mod check;
pub mod cluster;
pub mod faults;
pub mod journal;
pub mod nodes;
pub mod postgres;
pub mod provider;
pub mod proxy;
pub mod redis;
pub mod rest;
pub mod settle;
pub mod workload;

use crate::api::{Api, NewConsultation, TokenRequest};
use crate::hub_process::LOAD_API_KEY;
use anyhow::{Context, Result, bail};
use check::{Findings, MemberFacts, RoomFacts};
use cluster::Cluster;
use consult_protocol::{ConsultationId, Role};
use journal::{Anomaly, Journal, count_by};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rest::Rest;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use workload::{Actor, ActorSpec, Shared};

/// Hub nodes the campaign runs.
pub const NODES: usize = 3;
/// Anomalies listed one by one in the results (all are counted).
const ANOMALIES_LISTED: usize = 200;

/// The campaign's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosOptions {
    /// The consult-hub binary (default: target/release, else target/debug).
    #[arg(long, value_name = "PATH")]
    pub hub: Option<PathBuf>,
    /// The redis-server binary.
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// Seed of every random choice (faults, actors); default: from the clock, printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long faults are injected under load, seconds.
    #[arg(long, default_value_t = 1800)]
    pub duration_secs: u64,
    /// Rooms (consultations), each with a provider and a patient.
    #[arg(long, default_value_t = 12)]
    pub rooms: usize,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write the whole record (operations, frames, faults) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// What a campaign found.
#[derive(Debug, Serialize)]
pub struct ChaosResult {
    /// The seed.
    pub seed: u64,
    /// Seconds of faults under load.
    pub duration_secs: u64,
    /// Rooms.
    pub rooms: usize,
    /// Hub nodes.
    pub nodes: usize,
    /// Commands by kind and outcome (`chat ok`, `alert unknown`, …).
    pub operations: BTreeMap<String, u64>,
    /// Commands in all.
    pub operations_total: u64,
    /// Frames received, all members.
    pub frames_received: u64,
    /// Faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Anomalies by kind.
    pub anomalies_by_kind: BTreeMap<String, u64>,
    /// Anomalies in all.
    pub anomalies_total: u64,
    /// The first anomalies, with where.
    pub anomalies: Vec<Anomaly>,
    /// What the checker counted.
    pub findings: Findings,
    /// Milliseconds until presence matched on every node, per phase.
    pub presence_convergence_ms: BTreeMap<String, u64>,
    /// Wall time of the whole run, seconds.
    pub wall_secs: f64,
}

impl ChaosResult {
    /// The summary printed at the end.
    pub fn summary_lines(&self) -> Vec<String> {
        let join = |map: &BTreeMap<String, u64>| {
            if map.is_empty() {
                "none".to_owned()
            } else {
                map.iter()
                    .map(|(kind, count)| format!("{kind} {count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let f = &self.findings;
        vec![
            format!(
                "chaos: seed {}, {} s of faults, {} rooms on {} nodes, {:.0} s in all",
                self.seed, self.duration_secs, self.rooms, self.nodes, self.wall_secs
            ),
            format!(
                "operations: {} ({})",
                self.operations_total,
                join(&self.operations)
            ),
            format!(
                "frames received: {}; messages stored: {}",
                self.frames_received, f.stored_messages
            ),
            format!(
                "faults: {} ({})",
                self.faults.values().sum::<u64>(),
                join(&self.faults)
            ),
            format!(
                "notifications: {}; provider requests {} ({} accepted), at most {} per key; documented re-sends: {}",
                join(&f.notifications_by_status),
                f.provider_requests,
                f.provider_accepted,
                f.max_requests_per_key,
                join(&f.documented_resends)
            ),
            format!(
                "presence converged (ms): {}",
                join(&self.presence_convergence_ms)
            ),
            format!(
                "anomalies: {} ({})",
                self.anomalies_total,
                join(&self.anomalies_by_kind)
            ),
        ]
    }
}

/// The seed to use: the one given, or one from the clock.
pub fn seed_or_clock(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(1)
    })
}

/// One room's people.
#[derive(Debug, Clone)]
struct Room {
    consultation: ConsultationId,
    provider: String,
    patient: String,
}

/// Runs the campaign.
///
/// # Errors
///
/// When a part does not start or the hub cannot be read at the end;
/// anomalies are results, not errors.
pub async fn run(
    options: &ChaosOptions,
    hub: PathBuf,
    seed: u64,
) -> Result<(ChaosResult, Journal)> {
    if options.rooms == 0 {
        bail!("--rooms must be positive");
    }
    let started = Instant::now();
    let journal = Journal::new(started);
    let cluster = Cluster::start(hub, options.redis_server.clone(), NODES, started, seed).await?;
    let rooms = set_up(&cluster, options.rooms, seed).await?;
    let shared = Shared {
        nodes: cluster.ws_urls.clone(),
        rooms: Arc::new(
            rooms
                .iter()
                .enumerate()
                .map(|(index, room)| (room.consultation.clone(), index))
                .collect::<HashMap<_, _>>(),
        ),
        clinic: clinic_of(seed),
        journal: journal.clone(),
        seed,
    };
    let actors = make_actors(&cluster, &rooms, &shared).await?;

    let stop_actions = CancellationToken::new();
    let running: Vec<_> = actors
        .into_iter()
        .map(|actor| tokio::spawn(actor.run(stop_actions.clone())))
        .collect();
    let stop_faults = CancellationToken::new();
    let duration = Duration::from_secs(options.duration_secs);
    let stopper = stop_faults.clone();
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        stopper.cancel();
    });
    tokio::join!(
        faults::infrastructure(&cluster, &journal, seed, stop_faults.clone()),
        faults::provider(&cluster, &journal, seed, stop_faults.clone()),
    );
    cluster.heal_all().await?;
    stop_actions.cancel();
    let mut actors = Vec::with_capacity(running.len());
    for task in running {
        actors.push(task.await.context("an actor task failed")?);
    }

    let end = settle::settle(&cluster, &rooms_ids(&rooms), &mut actors, &journal).await?;
    let rest = Rest::new(&cluster.http_bases[0], LOAD_API_KEY)?;
    let mut facts = Vec::with_capacity(rooms.len());
    for (index, room) in rooms.iter().enumerate() {
        let id = room.consultation.as_str();
        facts.push(RoomFacts {
            index,
            consultation: id.to_owned(),
            messages: rest.messages(id).await?,
            notifications: rest.notifications(id).await?,
        });
    }
    let members: Vec<MemberFacts> = actors
        .iter()
        .map(|actor| MemberFacts {
            actor: actor.spec.index,
            room: actor.spec.room,
            received: actor
                .view
                .lock()
                .map(|view| {
                    view.seen
                        .iter()
                        .map(|seen| {
                            seen.as_ref()
                                .map(|seen| (seen.sender.clone(), seen.client_msg_id.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let requests = cluster.provider.requests();
    let mut data = journal.lock();
    data.provider_requests.clone_from(&requests);
    let findings = check::check(
        &facts,
        &members,
        &data.ops,
        &requests,
        &data.faults,
        cluster::MAX_ATTEMPTS,
    );
    let mut anomalies = data.anomalies.clone();
    anomalies.extend(findings.anomalies.iter().cloned());
    let operations = count_by(&data.ops, |op| {
        let outcome = match &op.outcome {
            journal::Outcome::Ok { .. } => "ok".to_owned(),
            journal::Outcome::Refused { code } => code.clone(),
            journal::Outcome::Unknown { error } => format!("unknown:{error}"),
        };
        format!("{} {outcome}", op.kind)
    });
    let result = ChaosResult {
        seed,
        duration_secs: options.duration_secs,
        rooms: rooms.len(),
        nodes: NODES,
        operations_total: data.ops.len() as u64,
        operations,
        frames_received: data.frames.len() as u64,
        faults: count_by(&data.faults, |fault| fault.kind.to_owned()),
        anomalies_by_kind: count_by(&anomalies, |anomaly| anomaly.kind.to_owned()),
        anomalies_total: anomalies.len() as u64,
        anomalies: anomalies.into_iter().take(ANOMALIES_LISTED).collect(),
        findings,
        presence_convergence_ms: end.presence_convergence_ms,
        wall_secs: started.elapsed().as_secs_f64(),
    };
    drop(data);
    Ok((result, journal))
}

fn rooms_ids(rooms: &[Room]) -> Vec<(ConsultationId, String, String)> {
    rooms
        .iter()
        .map(|room| {
            (
                room.consultation.clone(),
                room.provider.clone(),
                room.patient.clone(),
            )
        })
        .collect()
}

fn clinic_of(seed: u64) -> String {
    format!("chaos-{seed}")
}

/// Creates the rooms and registers one to three push devices per patient.
async fn set_up(cluster: &Cluster, rooms: usize, seed: u64) -> Result<Vec<Room>> {
    let clinic = clinic_of(seed);
    let api = Api::new(&cluster.http_bases[0], LOAD_API_KEY);
    let rest = Rest::new(&cluster.http_bases[0], LOAD_API_KEY)?;
    let specs: Vec<NewConsultation> = (0..rooms)
        .map(|index| NewConsultation {
            clinic: clinic.clone(),
            provider: format!("dr-{index}"),
            patient: format!("pt-{index}"),
        })
        .collect();
    let ids = api.create_consultations(&specs, || {}).await?;
    let mut rng = StdRng::seed_from_u64(seed ^ 0xDE71_CE00);
    for spec in &specs {
        let devices = rng.random_range(1..=3);
        for device in 0..devices {
            let platform = if device % 2 == 0 { "fcm" } else { "apns" };
            let token = format!("device-{}-{device}", spec.patient);
            rest.register_device(&spec.patient, platform, &token)
                .await?;
        }
    }
    Ok(specs
        .into_iter()
        .zip(ids)
        .map(|(spec, consultation)| Room {
            consultation,
            provider: spec.provider,
            patient: spec.patient,
        })
        .collect())
}

/// A provider and a patient per room, on different home nodes, so that
/// every message crosses the broker.
async fn make_actors(cluster: &Cluster, rooms: &[Room], shared: &Shared) -> Result<Vec<Actor>> {
    let api = Api::new(&cluster.http_bases[0], LOAD_API_KEY);
    let clinic = shared.clinic.clone();
    let requests: Vec<TokenRequest> = rooms
        .iter()
        .flat_map(|room| {
            [
                TokenRequest {
                    user: room.provider.clone(),
                    role: Role::Provider,
                    clinic: clinic.clone(),
                },
                TokenRequest {
                    user: room.patient.clone(),
                    role: Role::Patient,
                    clinic: clinic.clone(),
                },
            ]
        })
        .collect();
    let tokens = api.issue_tokens(&requests, || {}).await?;
    let nodes = cluster.nodes.len();
    Ok(requests
        .into_iter()
        .zip(tokens)
        .enumerate()
        .map(|(index, (request, token))| {
            let room = index / 2;
            let spec = ActorSpec {
                index,
                room,
                consultation: rooms[room].consultation.clone(),
                role: request.role,
                token,
                home: (room + index % 2) % nodes,
            };
            Actor::new(spec, shared.clone())
        })
        .collect())
}
