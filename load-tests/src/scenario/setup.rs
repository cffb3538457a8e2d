//! Setup and plumbing shared by the fleet scenarios (`idle`, `storm`):
//! rooms and tokens through the REST API, follower plans, worker processes,
//! and merging the shards' phase reports.

use crate::api::{Api, NewConsultation, TokenRequest};
use crate::fleet::{self, FollowerPlan, PhaseReport};
use crate::progress;
use crate::raw::loopback_sources;
use crate::stats::LatencyRecorder;
use crate::target::Target;
use anyhow::{Result, bail};
use consult_protocol::{ConsultationId, Role};
use std::path::PathBuf;

/// Who takes part in a fleet run.
#[derive(Debug, Clone)]
pub struct Population<'a> {
    /// The clinic everyone belongs to (fresh per run).
    pub clinic: &'a str,
    /// The run tag, part of every user id.
    pub tag: &'a str,
    /// The scenario's name, first part of every user id.
    pub prefix: &'a str,
    /// Rooms to create.
    pub rooms: usize,
    /// Providers owning them, round-robin.
    pub providers: usize,
    /// Followers (admins of the clinic), one token each.
    pub followers: usize,
    /// 127.0.0.x source addresses to spread followers over.
    pub sources: usize,
}

/// Creates the rooms and one admin token per follower, and plans follower
/// `i` on node `i mod nodes`, source `i mod sources`, room `i mod rooms`.
///
/// # Errors
///
/// When a REST call fails.
pub async fn followers(
    api: &Api,
    target: &Target,
    population: &Population<'_>,
    quiet: bool,
) -> Result<(Vec<ConsultationId>, Vec<FollowerPlan>)> {
    let p = population;
    let rooms = create_rooms(api, p, quiet).await?;
    let requests: Vec<TokenRequest> = (0..p.followers)
        .map(|i| TokenRequest {
            user: format!("{}-{}-{i}", p.prefix, p.tag),
            role: Role::Admin,
            clinic: p.clinic.to_owned(),
        })
        .collect();
    let bar = progress::bar(requests.len() as u64, "tokens", quiet);
    let tokens = api.issue_tokens(&requests, || bar.inc(1)).await?;
    bar.finish_and_clear();
    let sources = loopback_sources(p.sources);
    let plans = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| FollowerPlan {
            node: i % target.nodes.len(),
            source: sources[i % sources.len()],
            token,
            rooms: vec![rooms[i % rooms.len()].clone()],
            chat: false,
            watch_dashboard: false,
        })
        .collect();
    Ok((rooms, plans))
}

/// The user id of provider `index` of a population.
pub fn provider_id(population: &Population<'_>, index: usize) -> String {
    format!("{}-{}-prov-{index}", population.prefix, population.tag)
}

/// Creates the population's rooms (at least one); room `r` belongs to
/// provider `r mod providers`.
///
/// # Errors
///
/// When a REST call fails.
pub async fn create_rooms(
    api: &Api,
    population: &Population<'_>,
    quiet: bool,
) -> Result<Vec<ConsultationId>> {
    let p = population;
    let specs: Vec<NewConsultation> = (0..p.rooms.max(1))
        .map(|r| NewConsultation {
            clinic: p.clinic.to_owned(),
            provider: provider_id(p, r % p.providers.max(1)),
            patient: format!("{}-{}-pat-{r}", p.prefix, p.tag),
        })
        .collect();
    let bar = progress::bar(specs.len() as u64, "rooms", quiet);
    let ids = api.create_consultations(&specs, || bar.inc(1)).await?;
    bar.finish_and_clear();
    Ok(ids)
}

/// The executable for worker processes: none with one process (workers run
/// in this one), else the given one or this program.
///
/// # Errors
///
/// When this program's path cannot be found.
pub fn worker_exe(processes: usize, given: Option<PathBuf>) -> Result<Option<PathBuf>> {
    if processes <= 1 {
        return Ok(None);
    }
    match given {
        Some(path) => Ok(Some(path)),
        None => Ok(Some(fleet::this_executable()?)),
    }
}

/// Sums the shards' reports of one phase.
pub fn merge_phases(reports: &[PhaseReport]) -> PhaseReport {
    let mut latency = LatencyRecorder::new();
    let mut merged = PhaseReport {
        started_unix_us: reports.iter().map(|r| r.started_unix_us).min().unwrap_or(0),
        ..PhaseReport::default()
    };
    for report in reports {
        merged.ok += report.ok;
        merged.failed += report.failed;
        merged.replayed += report.replayed;
        merged.done_unix_us = merged.done_unix_us.max(report.done_unix_us);
        if merged.first_error.is_none() {
            merged.first_error.clone_from(&report.first_error);
        }
        latency.merge(&LatencyRecorder::from_buckets(&report.latency));
    }
    merged.latency = latency.to_buckets();
    merged
}

/// Fails when the hub is not known to the harness and nothing can be
/// measured.
///
/// # Errors
///
/// When no hub pid is known.
pub fn require_pids(target: &Target) -> Result<()> {
    if target.hub_pids.is_empty() {
        bail!("this scenario measures the hub process: give --hub-pid or --spawn-hub");
    }
    Ok(())
}
