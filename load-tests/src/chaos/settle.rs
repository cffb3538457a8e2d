//! The end phase, after the faults are healed and the actors stopped:
//! every member resumes (`join … since`) until it holds every stored
//! message; presence must then match on every node within the presence
//! TTL, first with everyone connected, then with the patients gone; and
//! every notification row gets time to reach a final status.

use super::cluster::{Cluster, PRESENCE_CACHE_MS, PRESENCE_TTL_MS};
use super::journal::Journal;
use super::rest::Rest;
use super::workload::{Actor, settle as settle_actor};
use crate::hub_process::LOAD_API_KEY;
use anyhow::{Context, Result};
use consult_protocol::{ConsultationId, Role};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Time members get to catch up.
const CATCH_UP: Duration = Duration::from_secs(90);
/// Time notification rows get to reach a final status.
const NOTIFICATIONS_FINAL: Duration = Duration::from_secs(120);
/// Slack on top of the presence TTL and cache for one poll round.
const PRESENCE_SLACK: Duration = Duration::from_secs(3);

/// What the end phase measured.
#[derive(Debug, Default)]
pub struct EndState {
    /// Milliseconds until presence matched, per phase.
    pub presence_convergence_ms: BTreeMap<String, u64>,
}

/// Runs the end phase. `rooms` are (consultation, provider, patient).
///
/// # Errors
///
/// When the hub cannot be read.
pub async fn settle(
    cluster: &Cluster,
    rooms: &[(ConsultationId, String, String)],
    actors: &mut Vec<Actor>,
    journal: &Journal,
) -> Result<EndState> {
    let rest = Rest::new(&cluster.http_bases[0], LOAD_API_KEY)?;
    let mut state = EndState::default();
    // Sends still in the writers' queues when the actors stopped land now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = Instant::now() + CATCH_UP;
    let mut targets = last_seqs(&rest, rooms).await?;
    loop {
        let moved: Vec<Actor> = std::mem::take(actors);
        let tasks: Vec<_> = moved
            .into_iter()
            .map(|mut actor| {
                let target = targets[actor.spec.room];
                tokio::spawn(async move {
                    let done = settle_actor(&mut actor, target, deadline).await;
                    (actor, done)
                })
            })
            .collect();
        for task in tasks {
            let (actor, _done) = task.await.context("a settling actor failed")?;
            actors.push(actor);
        }
        let now = last_seqs(&rest, rooms).await?;
        if now == targets || Instant::now() >= deadline {
            break;
        }
        targets = now;
    }

    let started = Instant::now();
    let converged = presence_matches(cluster, rooms, true, journal, "all_online").await?;
    state.presence_convergence_ms.insert(
        "all_online".to_owned(),
        converged.unwrap_or(elapsed(started)),
    );
    for actor in actors
        .iter_mut()
        .filter(|actor| actor.spec.role == Role::Patient)
    {
        actor.disconnect().await;
    }
    let started = Instant::now();
    let converged = presence_matches(cluster, rooms, false, journal, "patients_offline").await?;
    state.presence_convergence_ms.insert(
        "patients_offline".to_owned(),
        converged.unwrap_or(elapsed(started)),
    );

    let deadline = Instant::now() + NOTIFICATIONS_FINAL;
    while Instant::now() < deadline {
        let mut open = 0;
        for (consultation, _, _) in rooms {
            open += rest
                .notifications(consultation.as_str())
                .await?
                .iter()
                .filter(|row| !matches!(row.status.as_str(), "sent" | "failed" | "cancelled"))
                .count();
        }
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for actor in actors.iter_mut() {
        actor.disconnect().await;
    }
    Ok(state)
}

async fn last_seqs(rest: &Rest, rooms: &[(ConsultationId, String, String)]) -> Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(rooms.len());
    for (consultation, _, _) in rooms {
        seqs.push(rest.last_seq(consultation.as_str()).await?);
    }
    Ok(seqs)
}

/// Polls every node until each room's provider is online and its patient
/// is `patient_online`; the milliseconds it took, or `None` (and an
/// anomaly) when the TTL and cache passed first.
async fn presence_matches(
    cluster: &Cluster,
    rooms: &[(ConsultationId, String, String)],
    patient_online: bool,
    journal: &Journal,
    phase: &'static str,
) -> Result<Option<u64>> {
    let started = Instant::now();
    let limit = Duration::from_millis(PRESENCE_TTL_MS + PRESENCE_CACHE_MS) + PRESENCE_SLACK;
    let nodes: Vec<Rest> = cluster
        .http_bases
        .iter()
        .map(|base| Rest::new(base, LOAD_API_KEY))
        .collect::<Result<_>>()?;
    loop {
        let mut wrong = Vec::new();
        for (node, rest) in nodes.iter().enumerate() {
            for (room, (consultation, provider, patient)) in rooms.iter().enumerate() {
                let members = match rest.presence(consultation.as_str()).await {
                    Ok(members) => members,
                    Err(error) => {
                        wrong.push(format!("node {node} room {room}: {error}"));
                        continue;
                    }
                };
                for member in members {
                    let expected = if &member.user == provider {
                        true
                    } else if &member.user == patient {
                        patient_online
                    } else {
                        continue;
                    };
                    if member.online != expected {
                        wrong.push(format!(
                            "node {node} room {room}: {} online {} (expected {expected})",
                            member.user, member.online
                        ));
                    }
                }
            }
        }
        if wrong.is_empty() {
            return Ok(Some(elapsed(started)));
        }
        if started.elapsed() > limit {
            journal.anomaly(
                "presence_not_converged",
                format!(
                    "{phase}: after {} ms, {} wrong: {}",
                    elapsed(started),
                    wrong.len(),
                    wrong
                        .iter()
                        .take(40)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn elapsed(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
