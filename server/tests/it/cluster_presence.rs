//! Cluster presence costs Redis by churn, not by population: at steady
//! state a node writes no user's entry, only its own liveness; after Redis
//! loses its data every node writes its users' entries again; a dead
//! node's fields are pruned by the readers that meet them; a change made
//! while a node's link to Redis is down is written once it is back, a
//! departure included.

use crate::harness::cluster::{Cluster, PRESENCE_TTL_MS, connect_to, wait_until};
use crate::harness::proxy::TcpProxy;
use crate::harness::redis::RedisServer;
use consult_hub::broker::RedisConnection;
use consult_hub::domain::PersonKey;
use consult_hub::presence::{Presence, RedisPresence};
use consult_hub::supervisor::Workers;
use consult_protocol::{Role, UserId};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn patient(user: &str) -> PersonKey {
    PersonKey::new(&crate::harness::CLINIC.into(), &UserId::from(user))
}

#[tokio::test]
async fn at_steady_state_a_node_writes_no_users_entry_whatever_their_number() {
    let (cluster, [hub_a, hub_b]) = Cluster::start().await;
    let mut patients = Vec::new();
    for n in 0..40 {
        patients.push(hub_b.connect(&format!("pat-{n}"), Role::Patient).await);
    }
    wait_until(
        Duration::from_secs(3),
        "node A sees the last patient",
        || async { hub_a.state.presence.status(&patient("pat-39")).await.online },
    )
    .await;

    let calls = |command: &'static str| cluster.redis.command_calls(command);
    let (hset, hdel, pexpire, zadd) = (
        calls("hset").await,
        calls("hdel").await,
        calls("pexpire").await,
        calls("zadd").await,
    );
    // Three TTLs: the old design rewrote 40 entries 9 times over.
    tokio::time::sleep(Duration::from_millis(3 * PRESENCE_TTL_MS)).await;
    assert_eq!(calls("hset").await - hset, 0, "entries rewritten");
    assert_eq!(calls("hdel").await - hdel, 0);
    assert_eq!(calls("pexpire").await - pexpire, 0);
    // Each node beats every sixth of the TTL: about 18 beats each.
    let beats = calls("zadd").await - zadd;
    assert!(
        (20..=60).contains(&beats),
        "{beats} liveness writes by two nodes"
    );
    assert!(hub_a.state.presence.status(&patient("pat-0")).await.online);

    // A change is written at once, and read as it was.
    let first = patients.remove(0);
    first.close().await;
    wait_until(
        Duration::from_secs(3),
        "node A sees the patient leave",
        || async { !hub_a.state.presence.status(&patient("pat-0")).await.online },
    )
    .await;
    assert!(calls("hdel").await > hdel);
}

#[tokio::test]
async fn after_redis_loses_its_data_each_node_writes_its_users_again() {
    let (mut cluster, [hub_a, hub_b]) = Cluster::start().await;
    let _patient = hub_b.connect("pat-a", Role::Patient).await;
    wait_until(
        Duration::from_secs(3),
        "node A sees the patient",
        || async { hub_a.state.presence.status(&patient("pat-a")).await.online },
    )
    .await;

    // Data lost with the connections up (a failover to an empty replica,
    // FLUSHALL): no call fails, the node finds itself missing.
    let client = redis::Client::open(cluster.redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    wait_until(
        Duration::from_millis(3 * PRESENCE_TTL_MS + 1000),
        "node A sees the patient again after the flush",
        || async { hub_a.state.presence.status(&patient("pat-a")).await.online },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2 * PRESENCE_TTL_MS)).await;
    assert!(hub_a.state.presence.status(&patient("pat-a")).await.online);

    // Data lost with the server: calls fail, then succeed on an empty one.
    cluster.redis.restart().await;
    wait_until(
        Duration::from_millis(3 * PRESENCE_TTL_MS + 3000),
        "node A sees the patient again once node B has written it back",
        || async { hub_a.state.presence.status(&patient("pat-a")).await.online },
    )
    .await;
    // And it stays so: the entry is really there again, not a cached view.
    tokio::time::sleep(Duration::from_millis(2 * PRESENCE_TTL_MS)).await;
    assert!(hub_a.state.presence.status(&patient("pat-a")).await.online);
}

#[tokio::test]
async fn a_dead_nodes_field_is_pruned_by_the_reader_that_meets_it() {
    let (cluster, [hub_a]) = Cluster::start().await;
    let mut node_b = cluster.spawn_process("node-b").await;
    let _patient = connect_to(
        &node_b.ws_url(),
        &hub_a.token("pat-a", Role::Patient, crate::harness::CLINIC),
    )
    .await;
    wait_until(
        Duration::from_secs(3),
        "node A sees the patient",
        || async { hub_a.state.presence.status(&patient("pat-a")).await.online },
    )
    .await;
    let fields = || async {
        let client = redis::Client::open(cluster.redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let count: u64 = redis::cmd("HLEN")
            .arg("presence:{clinic-1:pat-a}")
            .query_async(&mut connection)
            .await
            .unwrap();
        count
    };
    assert_eq!(fields().await, 1);

    node_b.kill();
    wait_until(
        Duration::from_millis(PRESENCE_TTL_MS + 1500),
        "the dead node's patient reads offline",
        || async { !hub_a.state.presence.status(&patient("pat-a")).await.online },
    )
    .await;
    wait_until(
        Duration::from_secs(3),
        "the dead field is pruned",
        || async { fields().await == 0 },
    )
    .await;
}

/// Cluster presence for `node` through `redis_url`, its TTL the cluster
/// tests' and no cache of other nodes' view.
fn presence_via(redis_url: &str, node: &str, stop: &CancellationToken) -> Presence {
    Presence::Redis(RedisPresence::start(
        RedisConnection::single(redis::Client::open(redis_url).unwrap(), 1).unwrap(),
        node,
        Duration::from_millis(PRESENCE_TTL_MS),
        Duration::ZERO,
        stop.clone(),
        &Workers::new(),
    ))
}

#[tokio::test]
async fn a_departure_while_the_link_to_redis_is_down_is_written_once_it_is_back() {
    let redis = RedisServer::start().await;
    let redis_addr = redis
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = TcpProxy::start(redis_addr).await;
    let stop = CancellationToken::new();
    let node_a = presence_via(&format!("redis://{}/", proxy.addr()), "node-a", &stop);
    let node_b = presence_via(&redis.url(), "node-b", &stop);
    let (leaving, staying, arriving) = (
        patient("pat-leaving"),
        patient("pat-staying"),
        patient("pat-arriving"),
    );
    node_a.connected(&leaving, true).await;
    node_a.connected(&staying, true).await;
    wait_until(
        Duration::from_secs(3),
        "node B sees both patients",
        || async { node_b.is_online(&leaving).await && node_b.is_online(&staying).await },
    )
    .await;

    // Shorter than the TTL, so node A's run stays live meanwhile, and
    // longer than the TTL: both must end with Redis matching node A.
    for outage in [PRESENCE_TTL_MS / 3, 3 * PRESENCE_TTL_MS] {
        proxy.down();
        node_a.disconnected(&leaving, true).await;
        node_a.connected(&arriving, true).await;
        tokio::time::sleep(Duration::from_millis(outage)).await;
        proxy.up();
        wait_until(
            Duration::from_millis(3 * PRESENCE_TTL_MS + 3000),
            "node B sees the departure and the arrival made during the outage",
            || async {
                !node_b.is_online(&leaving).await
                    && node_b.is_online(&arriving).await
                    && node_b.is_online(&staying).await
            },
        )
        .await;
        // And it stays so: the entries are written, not a passing view.
        tokio::time::sleep(Duration::from_millis(2 * PRESENCE_TTL_MS)).await;
        assert!(!node_b.is_online(&leaving).await, "outage {outage} ms");
        assert!(node_b.is_online(&arriving).await, "outage {outage} ms");
        assert!(node_b.is_online(&staying).await, "outage {outage} ms");
        // Back to the start for the next outage.
        node_a.connected(&leaving, true).await;
        node_a.disconnected(&arriving, true).await;
        wait_until(
            Duration::from_secs(3),
            "node B is back to the start",
            || async { node_b.is_online(&leaving).await && !node_b.is_online(&arriving).await },
        )
        .await;
    }
    stop.cancel();
}
