//! Who takes part in a cluster run, and where each one connects.
//!
//! - **Patients**: one consultation each, spread over the clinics; patient
//!   `r` joins consultation `r` on node `r mod N`.
//! - **Providers**: provider `p` owns consultations `p·k … p·k + k − 1`
//!   (`k` = patients per provider), all in one clinic. It connects only
//!   when some of its consultations chat, watches its own dashboard and
//!   joins those, on a node none of their patients use when it can (from
//!   node `p + N/2` on, so providers spread evenly), so that chat crosses
//!   nodes.
//! - **Chatting rooms**: a share of the consultations, spread evenly
//!   (consultation `r` chats when `r·P mod 100 < P`); in those both the
//!   patient and the provider send.
//! - **Admins**: a few per clinic, each watching its clinic's dashboard.

use super::ClusterOptions;
use crate::api::{Api, NewConsultation, TokenRequest};
use crate::fleet::FollowerPlan;
use crate::progress;
use crate::raw::loopback_sources;
use anyhow::Result;
use consult_protocol::{ConsultationId, Role};
use serde::Serialize;

/// How many of each kind were planned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Census {
    /// Patient connections.
    pub patients: u64,
    /// Provider connections.
    pub providers: u64,
    /// Admin connections watching a clinic's dashboard.
    pub admins: u64,
    /// Consultations in which both members chat.
    pub chatting_rooms: u64,
}

impl Census {
    /// Every connection.
    pub fn connections(&self) -> u64 {
        self.patients + self.providers + self.admins
    }
}

/// Whether consultation `room` chats, `percent` of them evenly spread.
pub fn chats(room: usize, percent: u32) -> bool {
    (room as u64 * u64::from(percent)) % 100 < u64::from(percent)
}

/// Creates the consultations and tokens; returns every follower's plan.
///
/// # Errors
///
/// When a REST call fails.
pub async fn plan(
    api: &Api,
    options: &ClusterOptions,
    tag: &str,
    quiet: bool,
) -> Result<(Vec<FollowerPlan>, Census)> {
    let per_provider = options.patients_per_provider.max(1);
    let providers = options.patients.div_ceil(per_provider);
    let clinics = options.clinics.max(1);
    let clinic_of_provider = |p: usize| format!("load-cluster-{tag}-c{}", p % clinics);
    let provider_id = |p: usize| format!("cl-{tag}-prov-{p}");
    let patient_id = |r: usize| format!("cl-{tag}-pat-{r}");
    let specs: Vec<NewConsultation> = (0..options.patients)
        .map(|r| NewConsultation {
            clinic: clinic_of_provider(r / per_provider),
            provider: provider_id(r / per_provider),
            patient: patient_id(r),
        })
        .collect();
    let bar = progress::bar(specs.len() as u64, "consultations", quiet);
    let rooms = api.create_consultations(&specs, || bar.inc(1)).await?;
    bar.finish_and_clear();

    let nodes = options.nodes.max(1);
    let mut census = Census::default();
    let mut requests = Vec::new();
    // (node, rooms, chat, watch) per follower, in the order of `requests`.
    let mut placements: Vec<(usize, Vec<ConsultationId>, bool, bool)> = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let chat = chats(r, options.chat_percent);
        census.patients += 1;
        census.chatting_rooms += u64::from(chat);
        requests.push(TokenRequest {
            user: patient_id(r),
            role: Role::Patient,
            clinic: clinic_of_provider(r / per_provider),
        });
        placements.push((r % nodes, vec![room.clone()], chat, false));
    }
    for p in 0..providers {
        let first = p * per_provider;
        let owned = first..(first + per_provider).min(rooms.len());
        let chatting: Vec<usize> = owned.filter(|r| chats(*r, options.chat_percent)).collect();
        if chatting.is_empty() {
            continue;
        }
        let node = (0..nodes)
            .map(|k| (p + nodes / 2 + k) % nodes)
            .find(|node| chatting.iter().all(|r| r % nodes != *node))
            .unwrap_or((first + 1) % nodes);
        census.providers += 1;
        requests.push(TokenRequest {
            user: provider_id(p),
            role: Role::Provider,
            clinic: clinic_of_provider(p),
        });
        let joined = chatting.iter().map(|r| rooms[*r].clone()).collect();
        placements.push((node, joined, true, true));
    }
    for c in 0..clinics.min(providers) {
        for a in 0..options.admins_per_clinic {
            census.admins += 1;
            requests.push(TokenRequest {
                user: format!("cl-{tag}-adm-{c}-{a}"),
                role: Role::Admin,
                clinic: clinic_of_provider(c),
            });
            placements.push(((c + a) % nodes, Vec::new(), false, true));
        }
    }
    let bar = progress::bar(requests.len() as u64, "tokens", quiet);
    let tokens = api.issue_tokens(&requests, || bar.inc(1)).await?;
    bar.finish_and_clear();
    let sources = loopback_sources(options.sources);
    let plans = tokens
        .into_iter()
        .zip(placements)
        .enumerate()
        .map(
            |(i, (token, (node, rooms, chat, watch_dashboard)))| FollowerPlan {
                node,
                source: sources[i % sources.len()],
                token,
                rooms,
                chat,
                watch_dashboard,
            },
        )
        .collect();
    Ok((plans, census))
}

#[cfg(test)]
mod tests {
    use super::chats;

    #[test]
    fn the_chatting_share_is_spread_evenly() {
        let chatting: Vec<usize> = (0..20).filter(|r| chats(*r, 20)).collect();
        assert_eq!(chatting, vec![0, 5, 10, 15]);
        assert_eq!((0..1000).filter(|r| chats(*r, 37)).count(), 370);
        assert_eq!((0..100).filter(|r| chats(*r, 0)).count(), 0);
        assert_eq!((0..100).filter(|r| chats(*r, 100)).count(), 100);
    }
}
