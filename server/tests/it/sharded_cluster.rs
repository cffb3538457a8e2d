//! Hubs on a real Redis Cluster (`broker.kind = "redis-cluster"`, sharded
//! pub/sub, hash-tagged presence keys): messages and presence cross nodes;
//! a primary killed mid-traffic is replaced by its replica and the other
//! node's client still receives every message exactly once, in order (what
//! the failover lost is read back from the database).

use crate::harness::cluster::{ShardedCluster, message_seqs_within, wait_until};
use consult_client::Client;
use consult_hub::broker::REDIS_CHANNEL_PREFIX;
use consult_hub::domain::PersonKey;
use consult_hub::hub::topics;
use consult_protocol::{ConsultationId, Role, UserId};
use std::time::Duration;

/// Longest wait for a whole stream of expected messages.
const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

fn person(user: &str) -> PersonKey {
    PersonKey::new(&crate::harness::CLINIC.into(), &UserId::from(user))
}

/// Every message seq of `consultation` that `client` reads until message
/// `last` arrives (see [`message_seqs_within`]).
async fn message_seqs_until(client: &Client, consultation: &ConsultationId, last: u64) -> Vec<u64> {
    message_seqs_within(client, consultation, last, STREAM_TIMEOUT).await
}

#[tokio::test]
async fn messages_and_presence_cross_nodes_on_a_redis_cluster() {
    let (_cluster, [hub_a, hub_b]) = ShardedCluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    provider.join(id, None).await.unwrap();
    assert!(!hub_a.state.presence.status(&person("pat-a")).await.online);
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    patient.join(id, None).await.unwrap();
    wait_until(
        Duration::from_secs(5),
        "node A sees the patient connected to node B",
        || async { hub_a.state.presence.status(&person("pat-a")).await.online },
    )
    .await;

    for i in 1..=10_u64 {
        let sender = if i % 2 == 0 { &patient } else { &provider };
        let (seq, _) = sender
            .send(id, format!("m-{i}"), format!("message {i}"))
            .await
            .unwrap();
        assert_eq!(seq.get(), i);
    }
    assert_eq!(
        message_seqs_until(&patient, id, 10).await,
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        message_seqs_until(&provider, id, 10).await,
        (1..=10).collect::<Vec<_>>()
    );

    patient.close().await;
    wait_until(
        Duration::from_secs(5),
        "node A sees the patient gone",
        || async { !hub_a.state.presence.status(&person("pat-a")).await.online },
    )
    .await;
}

#[tokio::test]
async fn a_primary_killed_mid_traffic_loses_no_message_and_duplicates_none() {
    let (mut cluster, [hub_a, hub_b]) = ShardedCluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    provider.join(&id, None).await.unwrap();
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    patient.join(&id, None).await.unwrap();

    const TOTAL: u64 = 60;
    const KILL_AT: u64 = 15;
    let channel = format!("{REDIS_CHANNEL_PREFIX}{}", topics::room(&id));
    let mut dead = None;
    for i in 1..=TOTAL {
        let (seq, _) = provider
            .send(&id, format!("m-{i}"), format!("message {i}"))
            .await
            .unwrap();
        assert_eq!(seq.get(), i);
        if i == KILL_AT {
            dead = Some(cluster.redis.kill_primary_of(&channel).await);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let dead = dead.expect("a primary was killed");
    cluster.redis.wait_for_failover(&channel, dead).await;

    assert_eq!(
        message_seqs_until(&patient, &id, TOTAL).await,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every message once, in order"
    );
    // Nothing (a late duplicate, a stray replay) was still on its way.
    let (seq, _) = provider.send(&id, "fence", "fence").await.unwrap();
    assert_eq!(seq.get(), TOTAL + 1);
    assert_eq!(
        message_seqs_until(&patient, &id, TOTAL + 1).await,
        [TOTAL + 1]
    );
}
