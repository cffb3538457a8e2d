//! Horizontal scale-out: several hubs on one database and one redis-server.
//! Messages, presence, typing, status and dashboard deltas cross nodes;
//! concurrent senders on different nodes are seen by everyone in sequence
//! order; a Redis outage loses nothing; cluster presence follows a node's
//! death; clients of a drained or killed node resume on another with no gap
//! and no duplicate.

use crate::harness::cluster::{
    Cluster, PRESENCE_TTL_MS, connect_to, message_seqs_within, wait_until,
};
use crate::harness::expect_event;
use consult_client::{Client, ClosedBy};
use consult_hub::config::PRESENCE_CACHE_MS;
use consult_hub::domain::PersonKey;
use consult_protocol::{
    CloseCode, ConsultationId, ConsultationStatus, Role, Seq, ServerFrame, UserId,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// Longest wait for a whole stream of expected messages.
const STREAM_TIMEOUT: Duration = Duration::from_secs(8);

/// Every message seq of `consultation` that `client` reads until message
/// `last` arrives (see [`message_seqs_within`]).
async fn message_seqs_until(client: &Client, consultation: &ConsultationId, last: u64) -> Vec<u64> {
    message_seqs_within(client, consultation, last, STREAM_TIMEOUT).await
}

/// Every message seq left in `client`'s events until its connection ends.
async fn message_seqs_until_closed(client: &Client) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(event) = timeout(STREAM_TIMEOUT, client.next_event())
        .await
        .expect("the connection ends")
    {
        if let ServerFrame::Message { message } = event {
            seqs.push(message.seq.get());
        }
    }
    seqs
}

fn one_to(last: u64) -> Vec<u64> {
    (1..=last).collect()
}

/// Sends message `next` through `sender` and checks that it is the very
/// next message each of `clients` sees: nothing (a late duplicate, a stray
/// replay) was still on its way behind what they already read.
async fn fence(sender: &Client, consultation: &ConsultationId, next: u64, clients: &[&Client]) {
    let (seq, _) = sender
        .send(consultation, format!("fence-{next}"), "fence")
        .await
        .unwrap();
    assert_eq!(seq.get(), next);
    for client in clients {
        assert_eq!(
            message_seqs_until(client, consultation, next).await,
            [next],
            "{}: nothing between the last message and the fence",
            client.welcome().user
        );
    }
}

#[tokio::test]
async fn messages_cross_nodes_both_ways_in_order_without_duplicates() {
    let (_cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    provider.join(&consultation.id, None).await.unwrap();
    patient.join(&consultation.id, None).await.unwrap();

    for i in 1..=20 {
        let (sender, name) = if i % 3 == 0 {
            (&patient, "pat")
        } else {
            (&provider, "dr")
        };
        let (seq, _) = sender
            .send(
                &consultation.id,
                format!("{name}-{i}"),
                format!("message {i}"),
            )
            .await
            .unwrap();
        assert_eq!(seq.get(), i);
    }
    assert_eq!(
        message_seqs_until(&patient, &consultation.id, 20).await,
        one_to(20)
    );
    assert_eq!(
        message_seqs_until(&provider, &consultation.id, 20).await,
        one_to(20)
    );
    fence(&patient, &consultation.id, 21, &[&provider, &patient]).await;
}

#[tokio::test]
async fn presence_typing_and_status_frames_cross_nodes() {
    let (_cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    provider.join(id, None).await.unwrap();
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    patient.join(id, None).await.unwrap();

    let is_patient = |user: &UserId| user.as_str() == "pat-a";
    expect_event(&provider, |event| match event {
        ServerFrame::Presence { user, online, .. } if is_patient(user) => online.then_some(()),
        _ => None,
    })
    .await;

    patient.typing(id, true).await.unwrap();
    expect_event(&provider, |event| match event {
        ServerFrame::Typing { user, active, .. } if is_patient(user) => active.then_some(()),
        _ => None,
    })
    .await;
    provider.typing(id, true).await.unwrap();
    expect_event(&patient, |event| match event {
        ServerFrame::Typing { user, active, .. } if user.as_str() == "dr-a" => active.then_some(()),
        _ => None,
    })
    .await;

    patient.ready(id).await.unwrap();
    let status = expect_event(&provider, |event| match event {
        ServerFrame::Status { status, .. } => Some(*status),
        _ => None,
    })
    .await;
    assert_eq!(status, ConsultationStatus::PatientReady);
    provider.enter(id).await.unwrap();
    let status = expect_event(&patient, |event| match event {
        ServerFrame::Status { status, .. } if *status != ConsultationStatus::PatientReady => {
            Some(*status)
        }
        _ => None,
    })
    .await;
    assert_eq!(status, ConsultationStatus::InProgress);

    patient.leave(id).await.unwrap();
    expect_event(&provider, |event| match event {
        ServerFrame::Presence { user, online, .. } if is_patient(user) => (!online).then_some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_dashboard_on_one_node_gets_deltas_from_a_patient_on_another() {
    let (_cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let snapshot = provider.watch_dashboard(None).await.unwrap();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].unread, 0);

    let patient = hub_b.connect("pat-a", Role::Patient).await;
    patient.ready(id).await.unwrap();
    let ready = expect_event(&provider, |event| match event {
        ServerFrame::Dashboard { entry }
            if &entry.consultation_id == id && entry.status == ConsultationStatus::PatientReady =>
        {
            Some(entry.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(ready.unread, 0);

    patient.send(id, "p-1", "I'm here").await.unwrap();
    let unread = expect_event(&provider, |event| match event {
        ServerFrame::Dashboard { entry } if &entry.consultation_id == id && entry.unread > 0 => {
            Some(entry.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(unread.unread, 1);
    assert!(unread.rev > ready.rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_two_nodes_are_seen_by_every_member_on_every_node_in_order() {
    let (_cluster, [hub_a, hub_b, hub_c]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = Arc::new(hub_a.connect("dr-a", Role::Provider).await);
    let patient = Arc::new(hub_b.connect("pat-a", Role::Patient).await);
    // The provider's second device, on a node where nobody sends.
    let watcher = hub_c.connect("dr-a", Role::Provider).await;
    for client in [&*provider, &*patient, &watcher] {
        client.join(&id, None).await.unwrap();
    }

    const SENDERS_PER_CLIENT: usize = 3;
    const MESSAGES_PER_SENDER: usize = 10;
    let mut tasks = Vec::new();
    for (client, name) in [(&provider, "dr"), (&patient, "pat")] {
        for sender in 0..SENDERS_PER_CLIENT {
            let client = Arc::clone(client);
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..MESSAGES_PER_SENDER {
                    client
                        .send(&id, format!("{name}-{sender}-{i}"), format!("{name} {i}"))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = (2 * SENDERS_PER_CLIENT * MESSAGES_PER_SENDER) as u64;
    for client in [&*provider, &*patient, &watcher] {
        assert_eq!(
            message_seqs_until(client, &id, total).await,
            one_to(total),
            "{}",
            client.welcome().user
        );
    }
    fence(&provider, &id, total + 1, &[&provider, &patient, &watcher]).await;
}

#[tokio::test]
async fn messages_sent_while_redis_is_down_reach_the_other_node_once_it_reconnects() {
    let (mut cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    provider.join(&id, None).await.unwrap();
    patient.join(&id, None).await.unwrap();

    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(0u64);
    let sender = tokio::spawn(async move {
        for i in 1..=100u64 {
            let (seq, _) = provider
                .send(&id, format!("m-{i}"), format!("message {i}"))
                .await
                .unwrap();
            assert_eq!(seq.get(), i);
            sent_tx.send_replace(i);
            // At the hub's default sustained command rate (20 a second).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        provider
    });

    sent_rx.wait_for(|sent| *sent >= 30).await.unwrap();
    cluster.redis.kill();
    for hub in [&hub_a, &hub_b] {
        wait_until(
            Duration::from_secs(3),
            "readyz reports degraded",
            || async { hub.readyz_broker().await == "degraded" },
        )
        .await;
    }
    sent_rx.wait_for(|sent| *sent >= 60).await.unwrap();
    cluster.redis.restart().await;
    for hub in [&hub_a, &hub_b] {
        wait_until(Duration::from_secs(5), "readyz reports healthy", || async {
            hub.readyz_broker().await == "healthy"
        })
        .await;
    }
    let provider = sender.await.unwrap();

    assert_eq!(
        message_seqs_until(&patient, &consultation.id, 100).await,
        one_to(100),
        "nothing lost, nothing twice, in order"
    );
    assert_eq!(
        message_seqs_until(&provider, &consultation.id, 100).await,
        one_to(100)
    );
    fence(&provider, &consultation.id, 101, &[&provider, &patient]).await;
}

#[tokio::test]
async fn a_message_sent_just_after_redis_returns_reaches_the_other_node() {
    let (mut cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    provider.join(id, None).await.unwrap();
    patient.join(id, None).await.unwrap();
    provider.send(id, "m-1", "before").await.unwrap();
    assert_eq!(message_seqs_until(&patient, id, 1).await, [1]);

    // Nothing is published during the outage, so the provider's node
    // still holds its dead publishing connection when Redis returns, while
    // the patient's node has already resubscribed and caught up.
    cluster.redis.kill();
    for hub in [&hub_a, &hub_b] {
        wait_until(
            Duration::from_secs(3),
            "readyz reports degraded",
            || async { hub.readyz_broker().await == "degraded" },
        )
        .await;
    }
    cluster.redis.restart().await;
    for hub in [&hub_a, &hub_b] {
        wait_until(Duration::from_secs(5), "readyz reports healthy", || async {
            hub.readyz_broker().await == "healthy"
        })
        .await;
    }
    provider.send(id, "m-2", "just after").await.unwrap();
    assert_eq!(message_seqs_until(&patient, id, 2).await, [2]);
}

#[tokio::test]
async fn a_patient_on_another_node_reads_online_and_then_offline_within_the_ttl_after_it_dies() {
    let (cluster, [hub_a]) = Cluster::start().await;
    let mut node_b = cluster.spawn_process("node-b").await;
    let patient_id = PersonKey::new(&crate::harness::CLINIC.into(), &UserId::from("pat-a"));
    // Connected to node B only: node A can know it only through Redis.
    let _patient = connect_to(
        &node_b.ws_url(),
        &hub_a.token("pat-a", Role::Patient, crate::harness::CLINIC),
    )
    .await;
    wait_until(
        Duration::from_secs(3),
        "node A sees the patient",
        || async { hub_a.state.presence.status(&patient_id).await.online },
    )
    .await;

    // Time is the behaviour here: entries outlive their TTL only because
    // the live node refreshes them.
    tokio::time::sleep(Duration::from_millis(2 * PRESENCE_TTL_MS)).await;
    assert!(
        hub_a.state.presence.status(&patient_id).await.online,
        "a live node keeps its patients online past the TTL"
    );

    node_b.kill();
    wait_until(
        Duration::from_millis(PRESENCE_TTL_MS + 1500),
        "the dead node's patient reads offline",
        || async { !hub_a.state.presence.status(&patient_id).await.online },
    )
    .await;
}

#[tokio::test]
async fn another_nodes_presence_is_read_from_redis_once_per_cache_period() {
    let (cluster, [hub_a, hub_b]) = Cluster::start().await;
    let patient_id = PersonKey::new(&crate::harness::CLINIC.into(), &UserId::from("pat-a"));
    // Connected to node B only: node A must ask Redis.
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    wait_until(
        Duration::from_secs(3),
        "node A sees the patient",
        || async { hub_a.state.presence.status(&patient_id).await.online },
    )
    .await;

    let before = cluster.redis.command_calls("hgetall").await;
    for _ in 0..20 {
        assert!(hub_a.state.presence.status(&patient_id).await.online);
    }
    let asked = cluster.redis.command_calls("hgetall").await - before;
    assert!(asked <= 1, "{asked} Redis lookups for 20 questions");

    patient.close().await;
    wait_until(
        Duration::from_millis(PRESENCE_CACHE_MS + 1000),
        "node A reads the patient offline once its cached view expires",
        || async { !hub_a.state.presence.status(&patient_id).await.online },
    )
    .await;
}

#[tokio::test]
async fn draining_a_node_closes_with_going_away_and_clients_resume_on_another_without_gap() {
    let (_cluster, [hub_a, hub_b, hub_c]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let patient = hub_a.connect("pat-a", Role::Patient).await;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let provider_elsewhere = Arc::new(hub_c.connect("dr-a", Role::Provider).await);
    for client in [&patient, &provider, &*provider_elsewhere] {
        client.join(&id, None).await.unwrap();
    }
    for i in 1..=5 {
        provider_elsewhere
            .send(&id, format!("c-{i}"), format!("before drain {i}"))
            .await
            .unwrap();
    }
    for client in [&patient, &provider] {
        assert_eq!(message_seqs_until(client, &id, 5).await, one_to(5));
    }

    // Keep sending from node C while node A drains.
    const TOTAL: u64 = 40;
    let sender = {
        let provider = Arc::clone(&provider_elsewhere);
        let id = id.clone();
        tokio::spawn(async move {
            for i in 6..=TOTAL {
                provider
                    .send(&id, format!("c-{i}"), format!("meanwhile {i}"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    hub_a.shutdown().await;

    let mut resumed = Vec::new();
    for (client, user, role) in [
        (&patient, "pat-a", Role::Patient),
        (&provider, "dr-a", Role::Provider),
    ] {
        let close = timeout(STREAM_TIMEOUT, client.closed()).await.unwrap();
        assert_eq!(close.by, ClosedBy::Hub);
        assert_eq!(close.close_code(), Some(CloseCode::GoingAway));
        let mut seen = one_to(5);
        seen.extend(message_seqs_until_closed(client).await);
        let last = seen.last().copied().unwrap_or(0);
        let again = hub_b.connect(user, role).await;
        again.join(&id, Some(Seq(last))).await.unwrap();
        resumed.push((user, seen, again));
    }
    sender.await.unwrap();
    for (user, seen, again) in &mut resumed {
        seen.extend(message_seqs_until(again, &id, TOTAL).await);
        assert_eq!(*seen, one_to(TOTAL), "{user}: no gap, no duplicate");
    }
    let clients: Vec<&Client> = resumed.iter().map(|(_, _, again)| again).collect();
    fence(&provider_elsewhere, &id, TOTAL + 1, &clients).await;
    hub_b.shutdown().await;
    hub_c.shutdown().await;
}

#[tokio::test]
async fn clients_of_a_killed_node_resume_on_another_without_loss() {
    let (cluster, [hub_a, hub_b]) = Cluster::start().await;
    let mut node_c = cluster.spawn_process("node-c").await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id.clone();
    let token = hub_a.token("pat-a", Role::Patient, crate::harness::CLINIC);
    let patient = connect_to(&node_c.ws_url(), &token).await;
    patient.join(&id, None).await.unwrap();
    let provider = Arc::new(hub_a.connect("dr-a", Role::Provider).await);
    provider.join(&id, None).await.unwrap();
    for i in 1..=10 {
        provider
            .send(&id, format!("m-{i}"), format!("before the crash {i}"))
            .await
            .unwrap();
    }
    let mut seen = message_seqs_until(&patient, &id, 10).await;

    const TOTAL: u64 = 40;
    let sender = {
        let provider = Arc::clone(&provider);
        let id = id.clone();
        tokio::spawn(async move {
            for i in 11..=TOTAL {
                provider
                    .send(&id, format!("m-{i}"), format!("after the crash {i}"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    node_c.kill();
    let close = timeout(STREAM_TIMEOUT, patient.closed()).await.unwrap();
    assert_ne!(close.by, ClosedBy::Hub, "a killed node says no goodbye");
    seen.extend(message_seqs_until_closed(&patient).await);

    let last = seen.last().copied().unwrap();
    let patient = connect_to(&hub_b.ws_url(), &token).await;
    patient.join(&id, Some(Seq(last))).await.unwrap();
    sender.await.unwrap();
    seen.extend(message_seqs_until(&patient, &id, TOTAL).await);
    assert_eq!(seen, one_to(TOTAL), "no gap, no duplicate");
    fence(&provider, &id, TOTAL + 1, &[&patient]).await;
}

/// Two nodes with one `broker.node_id` would drop each other's events: a
/// node started with the id of a running node is refused, waiting first for
/// a crashed run's claim to expire; once the holder stopped (and gave the id
/// back) the id starts at once; and a running node that finds its id taken
/// reports itself unready until it holds the id alone again.
#[tokio::test]
async fn a_node_id_in_use_by_a_running_node_is_refused_and_free_again_once_it_stops() {
    let (cluster, [first]) = Cluster::start().await;
    let started = Instant::now();
    let refused = cluster.try_build("node-0").await;
    let error = refused.expect_err("the id is in use").to_string();
    assert!(
        error.contains("broker.node_id \"node-0\" is held by another running node"),
        "{error}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(PRESENCE_TTL_MS),
        "a previous run's claim is waited out first"
    );

    // Someone else writes the key: the next heartbeat notices.
    let redis = redis::Client::open(cluster.redis.url()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("consult:node:node-0")
        .arg("another-instance")
        .query_async(&mut connection)
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(3),
        "readyz reports the duplicate",
        || async {
            let (status, body) = first.api_get("/readyz").await;
            status == 503 && body["node_id"] == "duplicate"
        },
    )
    .await;
    assert!(first.metric("consult_node_id_conflicts_total").await >= 1.0);
    wait_until(
        Duration::from_secs(3),
        "the id is held alone again",
        || async { first.api_get("/readyz").await.0 == 200 },
    )
    .await;

    first.shutdown().await;
    let started = Instant::now();
    let again = cluster.start_hub("node-0").await;
    assert!(
        started.elapsed() < Duration::from_millis(PRESENCE_TTL_MS),
        "a stopped node gives its id back"
    );
    assert_eq!(again.api_get("/readyz").await.1["node_id"], "ok");
}

/// The platform asks any node who is connected: a patient connected to
/// another node reads online (in the foreground or not, as its app said),
/// its provider offline; unknown ids are 404 with a JSON code.
#[tokio::test]
async fn rest_presence_answers_for_the_whole_cluster() {
    let (_cluster, [hub_a, hub_b]) = Cluster::start().await;
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let path = format!("/v1/consultations/{}/presence", consultation.id);
    let (status, before) = hub_a.api_get(&path).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["members"][1]["user"], "pat-a");
    assert_eq!(before["members"][1]["online"], false);

    let patient = hub_b.connect("pat-a", Role::Patient).await;
    patient.visibility(false).await.unwrap();
    wait_until(
        Duration::from_secs(3),
        "node A sees the patient online",
        || async { hub_a.api_get(&path).await.1["members"][1]["online"] == true },
    )
    .await;
    let (_, now) = hub_a.api_get(&path).await;
    assert_eq!(now["consultation_id"], consultation.id.to_string());
    assert_eq!(now["members"][0]["user"], "dr-a");
    assert_eq!(now["members"][0]["role"], "provider");
    assert_eq!(now["members"][0]["online"], false);
    assert_eq!(now["members"][1]["role"], "patient");
    assert_eq!(now["members"][1]["foreground"], false);

    let (status, participant) = hub_a.api_get("/v1/participants/pat-a/presence").await;
    assert_eq!(status, 200, "{participant}");
    assert_eq!(participant["online"], true);
    assert_eq!(participant["clinic"], crate::harness::CLINIC);

    let (status, missing) = hub_a.api_get("/v1/participants/nobody/presence").await;
    assert_eq!(
        (status, &missing["code"]),
        (404, &serde_json::json!("not_found"))
    );
    let (status, missing) = hub_a
        .api_get("/v1/consultations/no-such-consultation/presence")
        .await;
    assert_eq!(
        (status, &missing["code"]),
        (404, &serde_json::json!("not_found"))
    );
    let anonymous = hub_a.http.get(hub_a.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
