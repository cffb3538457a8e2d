//! Redis as an untrusted network position: the cluster runs over mutual TLS
//! as an ACL user with only the rights docs/operations.md lists; envelopes
//! that are not signed with the cluster key never reach a client and are
//! counted; a bogus sequence number cannot make a session drop the next
//! real message; a Redis cluster without a cluster key does not start.

use crate::harness::TestHub;
use crate::harness::cluster::{CLUSTER_KEY, Cluster, cluster_keys, wait_until};
use crate::harness::redis::{RedisOptions, RedisServer, ServerTls};
use crate::harness::tls::TestPki;
use consult_client::Client;
use consult_hub::broker::envelope::{self, ClusterKeys, MAX_SKEW_MS};
use consult_hub::broker::{BrokerHealth, REDIS_CHANNEL_PREFIX, redis_client};
use consult_hub::config::{BrokerConfig, BrokerKind};
use consult_hub::hub::topics;
use consult_hub::{App, Config};
use consult_protocol::{ChatMessage, ConsultationId, Role, Seq, ServerFrame};
use secrecy::SecretString;
use std::path::Path;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// The hub's Redis user and password in the TLS cluster.
const HUB_USER: &str = "consult-hub";
const HUB_PASSWORD: &str = "hub-password-0123456789";
/// A user with every right, for the test's own look-ups.
const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-password-0123456789";
/// The hub user's rights, as docs/operations.md recommends them (after
/// `user consult-hub on >PASSWORD`).
const HUB_ACL_RULES: &str = "resetchannels &consult:* resetkeys ~presence:* ~consult:node:* \
     ~consult:nodes -@all +publish +subscribe +unsubscribe +hset +hdel +hgetall +pexpire +set \
     +get +del +zadd +zremrangebyscore +zrangebyscore +zmscore +zrem";
/// A body no real message in these tests carries.
const FORGED: &str = "FORGED: please call +1 555 0100 about your biopsy";

/// A redis-server that speaks only TLS, wants a client certificate signed
/// by the test CA, and knows only the hub's limited user and an admin.
async fn secure_redis(pki: &TestPki) -> RedisServer {
    let user = |name: &str, password: &str, rules: &str| {
        let mut words = vec![
            "user".to_owned(),
            name.to_owned(),
            "on".to_owned(),
            format!(">{password}"),
        ];
        words.extend(rules.split_whitespace().map(str::to_owned));
        words
    };
    RedisServer::start_with(RedisOptions {
        tls: Some(ServerTls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: pki.ca.clone(),
        }),
        directives: vec![
            vec!["user".into(), "default".into(), "off".into()],
            user(HUB_USER, HUB_PASSWORD, HUB_ACL_RULES),
            user(ADMIN_USER, ADMIN_PASSWORD, "~* &* +@all"),
        ],
    })
    .await
}

/// The TLS and ACL settings of a node of the secure cluster.
fn secure_settings(broker: &mut BrokerConfig, pki: &TestPki) {
    broker.redis_username = Some(HUB_USER.to_owned());
    broker.redis_password = Some(SecretString::from(HUB_PASSWORD.to_owned()));
    broker.redis_tls_ca_file = Some(pki.ca.clone());
    broker.redis_tls_cert_file = Some(pki.client_cert.clone());
    broker.redis_tls_key_file = Some(pki.client_key.clone());
}

/// A connection to the secure server as `user`, through the hub's own
/// client setup.
async fn secure_connection(
    url: &str,
    pki: &TestPki,
    user: &str,
    password: &str,
) -> redis::aio::MultiplexedConnection {
    let mut broker = BrokerConfig {
        redis_url: Some(url.to_owned()),
        ..BrokerConfig::default()
    };
    secure_settings(&mut broker, pki);
    broker.redis_username = Some(user.to_owned());
    broker.redis_password = Some(SecretString::from(password.to_owned()));
    redis_client(&broker)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn wait_healthy(hub: &TestHub) {
    wait_until(Duration::from_secs(10), "the broker connects", || async {
        hub.state.broker.health() == BrokerHealth::Healthy
    })
    .await;
}

/// The next message event of `client`, skipping other frames.
async fn next_message(client: &Client) -> ChatMessage {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("a message within 5 s")
            .expect("the connection stays open");
        if let ServerFrame::Message { message } = event {
            return message;
        }
    }
}

/// Every message event `client` receives within `wait`.
async fn messages_within(client: &Client, wait: Duration) -> Vec<ChatMessage> {
    let mut messages = Vec::new();
    let deadline = Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
        if let ServerFrame::Message { message } = event {
            messages.push(message);
        }
    }
    messages
}

#[test]
fn the_documented_acl_user_is_the_one_tested() {
    let operations = include_str!("../../../docs/operations.md");
    let line = format!("user {HUB_USER} on >PASSWORD {HUB_ACL_RULES}");
    assert!(
        operations.contains(&line),
        "docs/operations.md lacks {line}"
    );
}

#[tokio::test]
async fn a_cluster_runs_over_mutual_tls_as_a_limited_acl_user() {
    let certs = tempfile::tempdir().unwrap();
    let pki = TestPki::create(certs.path());
    let cluster = Cluster::on(secure_redis(&pki).await).await;
    assert!(cluster.redis.url().starts_with("rediss://"));
    let hub_a = cluster
        .start_hub_with("node-0", |config| secure_settings(&mut config.broker, &pki))
        .await;
    let hub_b = cluster
        .start_hub_with("node-1", |config| secure_settings(&mut config.broker, &pki))
        .await;
    wait_healthy(&hub_a).await;
    wait_healthy(&hub_b).await;

    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    provider.join(&consultation.id, None).await.unwrap();
    patient.join(&consultation.id, None).await.unwrap();
    provider
        .send(&consultation.id, "m1", "over tls")
        .await
        .unwrap();
    assert_eq!(next_message(&patient).await.body, "over tls");
    patient
        .send(&consultation.id, "m2", "and back")
        .await
        .unwrap();
    let reply = loop {
        let message = next_message(&provider).await;
        if message.seq.get() == 2 {
            break message;
        }
    };
    assert_eq!(reply.body, "and back");

    // Presence went through the same limited user.
    let mut admin = secure_connection(&cluster.redis.url(), &pki, ADMIN_USER, ADMIN_PASSWORD).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("presence:*")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the nodes wrote presence");

    // The hub's user can reach nothing but its own channels and keys.
    let mut hub_user = secure_connection(&cluster.redis.url(), &pki, HUB_USER, HUB_PASSWORD).await;
    let refused: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg("elsewhere")
        .arg("x")
        .query_async(&mut hub_user)
        .await;
    assert!(refused.is_err(), "PUBLISH outside consult:* is refused");
    let refused: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg("elsewhere:x")
        .query_async(&mut hub_user)
        .await;
    assert!(refused.is_err(), "keys beyond its own are refused");
    let refused: redis::RedisResult<Vec<String>> = redis::cmd("KEYS")
        .arg("presence:*")
        .query_async(&mut hub_user)
        .await;
    assert!(refused.is_err(), "commands beyond the list are refused");
}

/// A change to a node's configuration.
type Adjust<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

#[tokio::test]
async fn a_node_without_the_right_ca_client_certificate_or_password_never_connects() {
    let certs = tempfile::tempdir().unwrap();
    let pki = TestPki::create(certs.path());
    let cluster = Cluster::on(secure_redis(&pki).await).await;
    let plain_url = cluster.redis.url().replace("rediss://", "redis://");
    let cases: Vec<(&str, Adjust<'_>)> = vec![
        (
            "a CA that did not sign the server's certificate",
            Box::new(|config: &mut Config| {
                secure_settings(&mut config.broker, &pki);
                config.broker.redis_tls_ca_file = Some(pki.other_ca.clone());
            }),
        ),
        (
            "no client certificate",
            Box::new(|config: &mut Config| {
                secure_settings(&mut config.broker, &pki);
                config.broker.redis_tls_cert_file = None;
                config.broker.redis_tls_key_file = None;
            }),
        ),
        (
            "a wrong password",
            Box::new(|config: &mut Config| {
                secure_settings(&mut config.broker, &pki);
                config.broker.redis_password =
                    Some(SecretString::from("not-the-password".to_owned()));
            }),
        ),
        (
            "plain text to the TLS port",
            Box::new(move |config: &mut Config| {
                config.broker.redis_url = Some(plain_url);
                config.broker.redis_username = Some(HUB_USER.to_owned());
                config.broker.redis_password = Some(SecretString::from(HUB_PASSWORD.to_owned()));
            }),
        ),
    ];
    for (case, adjust) in cases {
        let hub = cluster.start_hub_with("node-x", adjust).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            hub.state.broker.health(),
            BrokerHealth::Degraded,
            "{case}: the broker must not connect"
        );
        hub.shutdown().await;
    }
    // The same settings with everything right connect.
    let hub = cluster
        .start_hub_with("node-0", |config| secure_settings(&mut config.broker, &pki))
        .await;
    wait_healthy(&hub).await;
}

/// Publishes `payload` on the Redis channel of `consultation`'s room, as
/// anyone with access to the Redis server could.
async fn publish_raw(redis_url: &str, consultation: &ConsultationId, payload: &[u8]) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{REDIS_CHANNEL_PREFIX}{}", topics::room(consultation));
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(receivers >= 1, "a node is subscribed to the room");
}

/// A `message` frame like `real`, but with `seq` and the forged body: a
/// message "from" the provider.
fn forged_frame(real: &ChatMessage, seq: u64) -> String {
    let mut message = real.clone();
    message.seq = Seq(seq);
    message.body = FORGED.to_owned();
    ServerFrame::Message { message }.to_json()
}

/// A provider on node-0 and a patient on node-1 in one room, after a first
/// real message; returns it as the patient received it.
async fn room_across_nodes(
    hub_a: &TestHub,
    hub_b: &TestHub,
) -> (ConsultationId, Client, Client, ChatMessage) {
    let consultation = hub_a
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub_a.connect("dr-a", Role::Provider).await;
    let patient = hub_b.connect("pat-a", Role::Patient).await;
    provider.join(&consultation.id, None).await.unwrap();
    patient.join(&consultation.id, None).await.unwrap();
    provider
        .send(&consultation.id, "m1", "first real message")
        .await
        .unwrap();
    let first = next_message(&patient).await;
    assert_eq!(first.seq.get(), 1);
    (consultation.id, provider, patient, first)
}

/// After forged events, the next real message reaches the patient, and no
/// forged one ever does.
async fn next_real_message_arrives(
    provider: &Client,
    patient: &Client,
    consultation: &ConsultationId,
) {
    provider
        .send(consultation, "m2", "second real message")
        .await
        .unwrap();
    let received = messages_within(patient, Duration::from_millis(1500)).await;
    let bodies: Vec<(u64, &str)> = received
        .iter()
        .map(|message| (message.seq.get(), message.body.as_str()))
        .collect();
    assert_eq!(bodies, [(2, "second real message")]);
}

#[tokio::test]
async fn envelopes_not_signed_with_the_cluster_key_never_reach_a_client_and_are_counted() {
    let (cluster, [hub_a, hub_b]) = Cluster::start().await;
    let (consultation, provider, patient, first) = room_across_nodes(&hub_a, &hub_b).await;
    let topic = topics::room(&consultation);
    let now = envelope::now_ms();
    let wrong_key = ClusterKeys::new(b"not-the-cluster-key-0123456789abcdef", None).unwrap();
    let forgeries: [(&str, Vec<u8>); 4] = [
        (
            "malformed",
            // The envelope of old: no version, no tag.
            format!("node-0\n2\n{}", forged_frame(&first, 2)).into_bytes(),
        ),
        (
            "unsigned",
            envelope::encode(
                &ClusterKeys::insecure_none(),
                &topic,
                "node-0",
                Some(2),
                forged_frame(&first, 2).as_bytes(),
                now,
            )
            .to_vec(),
        ),
        (
            "bad_signature",
            envelope::encode(
                &wrong_key,
                &topic,
                "node-0",
                Some(2),
                forged_frame(&first, 2).as_bytes(),
                now,
            )
            .to_vec(),
        ),
        (
            "stale",
            envelope::encode(
                &cluster_keys(),
                &topic,
                "node-0",
                Some(2),
                forged_frame(&first, 2).as_bytes(),
                now - MAX_SKEW_MS - 5_000,
            )
            .to_vec(),
        ),
    ];
    for (_, payload) in &forgeries {
        publish_raw(&cluster.redis.url(), &consultation, payload).await;
    }
    // Redis delivers them to node-1 before the real message published next.
    next_real_message_arrives(&provider, &patient, &consultation).await;
    for (reason, _) in &forgeries {
        let name = format!("consult_broker_rejected_total{{reason=\"{reason}\"}}");
        assert!(hub_b.metric(&name).await >= 1.0, "{name}");
    }
}

#[tokio::test]
async fn a_signed_event_with_a_sequence_number_the_database_does_not_hold_is_dropped() {
    let (cluster, [hub_a, hub_b]) = Cluster::start().await;
    let (consultation, provider, patient, first) = room_across_nodes(&hub_a, &hub_b).await;
    // Signed with the real key: only the cursor guard stands in the way.
    let payload = envelope::encode(
        &cluster_keys(),
        &topics::room(&consultation),
        "node-forger",
        Some(999_999),
        forged_frame(&first, 999_999).as_bytes(),
        envelope::now_ms(),
    );
    // Redis delivers it to node-1 before the real message published after it.
    publish_raw(&cluster.redis.url(), &consultation, &payload).await;
    next_real_message_arrives(&provider, &patient, &consultation).await;
    // The cursor stayed where the database is: the third message too.
    provider
        .send(&consultation, "m3", "third real message")
        .await
        .unwrap();
    let third = next_message(&patient).await;
    assert_eq!(
        (third.seq.get(), third.body.as_str()),
        (3, "third real message")
    );
    assert!(hub_b.metric("consult_events_not_in_database_total").await >= 1.0);
}

/// A configuration for a Redis cluster node (on a port where nothing
/// listens) without a cluster key.
fn keyless_redis_config(dir: &Path) -> Config {
    let mut config = crate::harness::test_config(
        format!("sqlite://{}?mode=rwc", dir.join("hub.db").display()),
        dir,
    );
    config.broker.kind = BrokerKind::Redis;
    config.broker.redis_url = Some("redis://127.0.0.1:1/".to_owned());
    config
}

#[tokio::test]
async fn a_redis_cluster_without_a_cluster_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let Err(error) = App::build(keyless_redis_config(dir.path())).await else {
        panic!("the hub built without a cluster key");
    };
    assert!(
        error.to_string().contains("broker.cluster_key is required"),
        "{error}"
    );

    // The binary says why on its way out.
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_consult-hub"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSULT_") {
            command.env_remove(name);
        }
    }
    let output = command
        .current_dir(dir.path())
        .env("CONSULT_LISTEN", "127.0.0.1:0")
        .env("CONSULT_BROKER__KIND", "redis")
        .env("CONSULT_BROKER__REDIS_URL", "redis://127.0.0.1:1/")
        .env("CONSULT_BROKER__CLUSTER_KEY", "")
        .kill_on_drop(true)
        .output();
    let output = timeout(Duration::from_secs(20), output)
        .await
        .expect("the hub exits at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broker.cluster_key is required"),
        "{stderr}"
    );

    // With a key it builds.
    let mut config = keyless_redis_config(dir.path());
    config.broker.cluster_key = Some(SecretString::from(CLUSTER_KEY.to_owned()));
    drop(App::build(config).await.expect("builds with a key"));
}

#[tokio::test]
async fn with_the_explicit_opt_out_a_cluster_runs_unsigned() {
    let cluster = Cluster::on(RedisServer::start().await).await;
    let unsigned = |config: &mut Config| {
        config.broker.cluster_key = None;
        config.broker.insecure_no_cluster_key = true;
    };
    let hub_a = cluster.start_hub_with("node-0", unsigned).await;
    let hub_b = cluster.start_hub_with("node-1", unsigned).await;
    wait_healthy(&hub_a).await;
    wait_healthy(&hub_b).await;
    let (consultation, _provider, patient, first) = room_across_nodes(&hub_a, &hub_b).await;
    assert_eq!(first.body, "first real message");
    // Nothing is checked: an unsigned forgery does get through.
    let forged = envelope::encode(
        &ClusterKeys::insecure_none(),
        &topics::room(&consultation),
        "node-forger",
        Some(2),
        forged_frame(&first, 2).as_bytes(),
        envelope::now_ms(),
    );
    publish_raw(&cluster.redis.url(), &consultation, &forged).await;
    assert_eq!(next_message(&patient).await.body, FORGED);
}
