//! The help of every setting: one [`Setting`] per leaf key of the config
//! tree, in the order `consult-hub config --print-defaults` prints them.
//!
//! A leaf is a top-level key whose value is not a table (`listen`) or a key
//! of a section (`session.handshake_timeout_ms`), whatever its value (an
//! inline table like `notify.alert_push_limit`, a list, or nothing). The
//! defaults are not kept here: they come from serializing
//! [`Config::default`](super::Config::default). `check` reports a setting
//! without help, and help for a key the config does not have.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One setting's help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// `section.name`, or `name` for a top-level setting.
    pub key: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Never printed with its value (a secret, or a table holding one).
    pub hidden: bool,
    /// For a setting unset by default, or hidden: a value one could write
    /// (TOML), printed commented out.
    pub example: Option<&'static str>,
    /// What leaving the setting unset means (may be empty).
    pub when_unset: &'static str,
}

/// A setting with a default.
const fn set(key: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        help,
        hidden: false,
        example: None,
        when_unset: "",
    }
}

/// A setting unset by default.
const fn unset(
    key: &'static str,
    help: &'static str,
    example: &'static str,
    when_unset: &'static str,
) -> Setting {
    Setting {
        key,
        help,
        hidden: false,
        example: Some(example),
        when_unset,
    }
}

/// A secret, or a table holding one: never printed with its value.
const fn hidden(
    key: &'static str,
    help: &'static str,
    example: &'static str,
    when_unset: &'static str,
) -> Setting {
    Setting {
        key,
        help,
        hidden: true,
        example: Some(example),
        when_unset,
    }
}

/// Every setting, in print order.
pub const SETTINGS: &[Setting] = &[
    set(
        "listen",
        "Address the HTTP and WebSocket server listens on.",
    ),
    set(
        "listen_backlog",
        "Connections the kernel completes before the hub accepts them (capped by net.core.somaxconn).",
    ),
    set(
        "http.header_read_timeout_secs",
        "Seconds a connection has to send a whole request's headers before it is closed.",
    ),
    set(
        "http.max_connections",
        "WebSocket connections open at once on this node (503 past it); 0: the open-file limit less 256.",
    ),
    set(
        "http.max_connections_per_user",
        "Connections one user may hold on this node (close 4007 past it); 0: no cap.",
    ),
    set(
        "http.max_connections_per_ip",
        "WebSocket connections open at once from one IP address (429 past it); 0: no cap.",
    ),
    set(
        "http.socket_send_buffer_bytes",
        "Kernel send buffer of each accepted connection, in bytes; 0: the kernel's autotuning.",
    ),
    set(
        "database.url",
        "Database URL: sqlite:… or postgres://… (postgresql://…).",
    ),
    set(
        "database.max_connections",
        "Database connection pool size (on PostgreSQL the message writer holds one more connection of its own).",
    ),
    set(
        "database.append_batch_max",
        "Messages written in one group-commit transaction at most.",
    ),
    unset(
        "database.append_linger_us",
        "Microseconds a group-commit batch's first message waits for others before it is written, 0 to 10000.",
        "500",
        "500 on a SQLite file, 2000 on PostgreSQL, 0 otherwise",
    ),
    unset(
        "database.sqlite_checkpoint_interval_ms",
        "SQLite files only: spacing of checkpoints while messages are written, 1 to 60000 ms.",
        "1000",
        "1000",
    ),
    unset(
        "database.sqlite_log_sync_interval_ms",
        "SQLite files with sqlite_synchronous = \"normal\" only: spacing of the log's syncs between checkpoints, 1 to 60000 ms.",
        "25",
        "25",
    ),
    set(
        "database.sqlite_synchronous",
        "SQLite files only: \"full\" (a commit waits for the disk) or \"normal\" (survives a crash of the hub, not of the machine).",
    ),
    set(
        "database.partition_months_ahead",
        "PostgreSQL only: months of message partitions created after the current one (0 to 24).",
    ),
    set(
        "database.partition_interval_secs",
        "PostgreSQL only: seconds between two checks of the message partitions.",
    ),
    set(
        "database.partition_analyze_interval_secs",
        "PostgreSQL only: seconds between two looks at the message partitions' sizes; one that doubled since it was last analyzed is analyzed.",
    ),
    hidden(
        "auth.jwt_secret",
        "HS256 secret for tokens, at least 32 bytes; empty counts as unset.",
        "\"\"",
        "generated into the key file",
    ),
    set(
        "auth.public_keys",
        "Extra verification keys: [{ algorithm = \"RS256\" or \"ES256\", pem_file = PATH }].",
    ),
    hidden(
        "auth.api_keys",
        "API keys for the REST API, each at least 32 bytes.",
        "[]",
        "one generated into the key file",
    ),
    set(
        "auth.key_file",
        "Where generated secrets are kept (mode 0600).",
    ),
    set(
        "auth.leeway_secs",
        "Clock skew tolerated on exp, nbf and iat, in seconds.",
    ),
    set(
        "auth.max_token_lifetime_secs",
        "Longest token lifetime (exp - iat) accepted, in seconds.",
    ),
    unset(
        "auth.issuer",
        "When set, every token must carry this iss (the hub's own tokens do).",
        "\"https://login.example.org\"",
        "iss not checked",
    ),
    unset(
        "auth.audience",
        "When set, every token's aud must name it (the hub's own tokens do).",
        "\"consult-hub\"",
        "aud not checked",
    ),
    unset(
        "auth.jwks_url",
        "The identity provider's JWKS URL; its keys verify RS*/PS*/ES256 tokens by kid.",
        "\"https://login.example.org/.well-known/jwks.json\"",
        "",
    ),
    set(
        "auth.jwks_refresh_secs",
        "How often the JWKS is fetched again, in seconds.",
    ),
    set(
        "session.handshake_timeout_ms",
        "Time to send hello (close 4000), in milliseconds.",
    ),
    set(
        "session.heartbeat_interval_secs",
        "WebSocket ping interval, in seconds.",
    ),
    set(
        "session.idle_timeout_secs",
        "Silence before close 4002, in seconds.",
    ),
    set(
        "session.max_message_bytes",
        "Largest text frame accepted (larger: frame_too_large), in bytes.",
    ),
    set(
        "session.hard_message_bytes",
        "Codec frame limit (larger: close 1009), in bytes.",
    ),
    set(
        "session.outbound_queue_capacity",
        "Events queued per connection before close 4003.",
    ),
    set(
        "session.rate_limit_per_sec",
        "Sustained commands per second per connection.",
    ),
    set(
        "session.rate_limit_burst",
        "Burst of commands above the sustained rate.",
    ),
    set(
        "session.rate_limit_strikes",
        "rate_limited answers in a row before close 4004.",
    ),
    set(
        "session.write_timeout_secs",
        "Longest socket write, in seconds.",
    ),
    set(
        "session.read_buffer_bytes",
        "Codec read buffer per connection, in bytes.",
    ),
    set(
        "session.write_buffer_bytes",
        "Codec write buffer per connection, in bytes.",
    ),
    set(
        "session.max_body_chars",
        "Longest message (and template) body, in characters.",
    ),
    set(
        "broker.kind",
        "\"local\" (in-process, one node), \"redis\" (several nodes, one Redis) or \"redis-cluster\" (several nodes, a Redis Cluster with sharded pub/sub).",
    ),
    unset(
        "broker.redis_url",
        "redis://HOST:PORT, or rediss://HOST:PORT for TLS; required with kind = \"redis\".",
        "\"redis://127.0.0.1:6379\"",
        "",
    ),
    set(
        "broker.cluster_urls",
        "Nodes of the Redis Cluster (redis:// or rediss://, one scheme for all; one node is enough, the rest are discovered); required with kind = \"redis-cluster\".",
    ),
    unset(
        "broker.redis_username",
        "Redis ACL user; wins over a user in the URL.",
        "\"consult-hub\"",
        "",
    ),
    hidden(
        "broker.redis_password",
        "Password of the Redis user; wins over one in the URL.",
        "\"\"",
        "",
    ),
    unset(
        "broker.redis_tls_ca_file",
        "PEM file of the CA(s) that signed the Redis server's certificate (rediss:// only).",
        "\"/etc/consult-hub/redis-ca.pem\"",
        "the system's CA roots",
    ),
    unset(
        "broker.redis_tls_cert_file",
        "PEM client certificate (chain) for mutual TLS; with redis_tls_key_file.",
        "\"/etc/consult-hub/redis-client.pem\"",
        "",
    ),
    unset(
        "broker.redis_tls_key_file",
        "PEM private key of redis_tls_cert_file.",
        "\"/etc/consult-hub/redis-client.key\"",
        "",
    ),
    hidden(
        "broker.cluster_key",
        "Signs and checks every event between nodes: at least 32 bytes, the same on every node; required with kind = \"redis\".",
        "\"\"",
        "",
    ),
    hidden(
        "broker.cluster_key_secondary",
        "A second key accepted (never used to sign) while the cluster key is rotated.",
        "\"\"",
        "",
    ),
    set(
        "broker.insecure_no_cluster_key",
        "Run a Redis cluster without a cluster key (events unauthenticated); only where nothing else can publish on that Redis.",
    ),
    unset(
        "broker.node_id",
        "This node's name in the cluster; must differ between nodes.",
        "\"hub-a\"",
        "a random id at each start",
    ),
    set(
        "broker.presence_ttl_ms",
        "How long this node counts as alive in Redis without a heartbeat, in milliseconds.",
    ),
    set(
        "broker.presence_cache_ms",
        "How long other nodes' presence of a user is reused before Redis is asked again, in milliseconds; 0: always ask.",
    ),
    set(
        "shutdown.drain_timeout_secs",
        "Time sessions get to flush and close, in seconds.",
    ),
    set(
        "shutdown.unready_grace_ms",
        "Time between /readyz turning 503 and the listener closing, in milliseconds.",
    ),
    unset(
        "web.static_dir",
        "Folder whose console/ and patient/ are served at /console and /patient.",
        "\"clients/web\"",
        "serve uses ./clients/web if it exists",
    ),
    unset(
        "web.sdk_dir",
        "Folder served at /sdk (the JavaScript SDK, consult.js).",
        "\"clients/js/src\"",
        "serve uses ./clients/js/src if it exists",
    ),
    set("log.format", "\"text\" or \"json\"."),
    set(
        "log.filter",
        "tracing filter, like \"info,consult_hub=debug\"; RUST_LOG overrides it.",
    ),
    set(
        "notify.push",
        "\"log\" (logged only), \"native\" (FCM or APNs) or \"webhook\".",
    ),
    set("notify.sms", "\"log\", \"twilio\" or \"webhook\"."),
    hidden(
        "notify.fcm",
        "FCM HTTP v1 settings, for push = \"native\".",
        "{ service_account_file = \"/etc/consult-hub/fcm.json\" }",
        "",
    ),
    hidden(
        "notify.apns",
        "APNs settings, for push = \"native\".",
        "{ key_file = \"/etc/consult-hub/AuthKey.p8\", key_id = \"ABC123DEFG\", team_id = \"TEAM123456\", bundle_id = \"org.example.patient\" }",
        "",
    ),
    hidden(
        "notify.twilio",
        "Twilio settings, for sms = \"twilio\"; inbound SMS must then carry Twilio's signature.",
        "{ account_sid = \"AC…\", auth_token = \"\", from_number = \"+15005550006\" }",
        "",
    ),
    hidden(
        "notify.webhook",
        "Signed webhook settings, for either route.",
        "{ url = \"https://hooks.example.org/consult\", secret = \"\" }",
        "",
    ),
    set(
        "notify.push_after_ms",
        "Default policy: a connected patient without a delivered receipt after this gets a push, in milliseconds.",
    ),
    set(
        "notify.offline_grace_ms",
        "Default policy: an offline patient gets a push after this, in milliseconds.",
    ),
    unset(
        "notify.sms_after_unread_ms",
        "Default policy: a message still unread after this goes by SMS, in milliseconds.",
        "300000",
        "never",
    ),
    set(
        "notify.push_include_text",
        "Default policy: put the message text in pushes when it passes the privacy check.",
    ),
    set(
        "notify.health_terms",
        "Health terms refused in alert and SMS text, added to the built-in list.",
    ),
    set(
        "notify.alert_push_limit",
        "Push alerts per consultation and window.",
    ),
    set(
        "notify.alert_sms_limit",
        "SMS alerts per consultation and window.",
    ),
    set(
        "notify.max_devices_per_patient",
        "Push devices kept per patient (per clinic), 1 to 100; one more forgets the least recently registered.",
    ),
    set(
        "notify.device_registration_limit",
        "Device registrations per patient and window, on each node.",
    ),
    set(
        "notify.poll_interval_ms",
        "Longest sleep of the outbox worker between passes, in milliseconds.",
    ),
    set(
        "notify.send_concurrency",
        "Consultations whose notifications the outbox worker sends at once (1 to 256).",
    ),
    set(
        "notify.max_attempts",
        "Send attempts before a notification fails.",
    ),
    set(
        "notify.retry_base_ms",
        "First retry delay, doubling with each attempt, in milliseconds.",
    ),
    set(
        "notify.lease_secs",
        "How long a claimed notification is reserved for the node sending it, in seconds.",
    ),
    set(
        "notify.reach_cache_ms",
        "How long patients' devices and SMS consent, and clinic policies, are cached, in milliseconds.",
    ),
    unset(
        "notify.sms_inbound_url",
        "Public URL Twilio posts inbound SMS to (…/v1/sms/inbound); required with notify.twilio.",
        "\"https://hub.example.org/v1/sms/inbound\"",
        "",
    ),
    set(
        "retention.interval_secs",
        "Seconds between two passes of the message retention worker.",
    ),
    unset(
        "retention.export_dir",
        "Folder each consultation's messages are written to as JSON Lines before retention deletes them.",
        "\"/var/lib/consult-hub/export\"",
        "messages are deleted without export",
    ),
];

/// The reference and the config tree disagree.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The config did not serialize to a table.
    #[error("the config does not serialize to a table: {0}")]
    Serialize(String),
    /// Settings without help, help without a setting, and the like.
    #[error("the config reference disagrees with the config:\n  - {}", .0.join("\n  - "))]
    Mismatch(Vec<String>),
}

/// A leaf of the serialized config and its help.
#[derive(Debug, Clone, Copy)]
pub(super) struct Leaf<'a> {
    /// Its help.
    pub(super) setting: &'a Setting,
    /// Its value; `Null` when unset.
    pub(super) value: &'a Value,
}

/// Every leaf key of a serialized config, with its value.
pub(super) fn leaves(tree: &Map<String, Value>) -> Vec<(String, &Value)> {
    let mut leaves = Vec::new();
    for (key, value) in tree {
        match value {
            Value::Object(section) => leaves.extend(
                section
                    .iter()
                    .map(|(name, value)| (format!("{key}.{name}"), value)),
            ),
            value => leaves.push((key.clone(), value)),
        }
    }
    leaves
}

/// Pairs every leaf of `tree` with its entry in `settings`, in the order of
/// `settings`; every disagreement is reported at once.
///
/// # Errors
///
/// [`ReferenceError::Mismatch`] when a leaf has no entry or several, an
/// entry names no leaf, or a setting unset by default (or hidden) has no
/// example to print.
pub(super) fn check<'a>(
    tree: &'a Map<String, Value>,
    settings: &'a [Setting],
) -> Result<Vec<Leaf<'a>>, ReferenceError> {
    let values: BTreeMap<String, &Value> = leaves(tree).into_iter().collect();
    let mut problems = Vec::new();
    let mut entries: BTreeMap<&str, usize> = BTreeMap::new();
    for setting in settings {
        *entries.entry(setting.key).or_default() += 1;
    }
    for (key, count) in &entries {
        if *count > 1 {
            problems.push(format!("`{key}` has {count} help entries"));
        }
        if !values.contains_key(*key) {
            problems.push(format!("`{key}` has help but is no setting of the config"));
        }
    }
    for key in values.keys() {
        if !entries.contains_key(key.as_str()) {
            problems.push(format!("the setting `{key}` has no help entry"));
        }
    }
    let mut paired = Vec::new();
    for setting in settings {
        let Some(&value) = values.get(setting.key) else {
            continue;
        };
        if (value.is_null() || setting.hidden) && setting.example.is_none() {
            problems.push(format!(
                "`{}` is printed unset but has no example",
                setting.key
            ));
        }
        if !value.is_null() && !setting.hidden && setting.example.is_some() {
            problems.push(format!(
                "`{}` has a default, so its example is never printed",
                setting.key
            ));
        }
        paired.push(Leaf { setting, value });
    }
    if problems.is_empty() {
        Ok(paired)
    } else {
        Err(ReferenceError::Mismatch(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    fn default_tree() -> Map<String, Value> {
        match serde_json::to_value(Config::default()).unwrap() {
            Value::Object(tree) => tree,
            other => panic!("not a table: {other}"),
        }
    }

    #[test]
    fn every_setting_has_exactly_one_help_entry_and_every_entry_a_setting() {
        let tree = default_tree();
        let paired = check(&tree, SETTINGS).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(paired.len(), leaves(&tree).len());
        assert_eq!(paired.len(), SETTINGS.len());
    }

    #[test]
    fn a_setting_without_help_and_help_without_a_setting_are_both_reported() {
        let mut tree = default_tree();
        tree.insert("listen_port".to_owned(), Value::from(8080));
        let mut session = tree["session"].clone();
        if let Value::Object(session) = &mut session {
            session.remove("handshake_timeout_ms");
        }
        tree.insert("session".to_owned(), session);
        let mut settings = SETTINGS.to_vec();
        settings.push(set("listen", "Twice."));
        let error = check(&tree, &settings).unwrap_err().to_string();
        assert!(
            error.contains("the setting `listen_port` has no help entry"),
            "{error}"
        );
        assert!(
            error.contains("`session.handshake_timeout_ms` has help but is no setting"),
            "{error}"
        );
        assert!(error.contains("`listen` has 2 help entries"), "{error}");
    }

    #[test]
    fn help_and_unset_notes_are_one_line_each() {
        for setting in SETTINGS {
            assert!(setting.help.ends_with('.'), "{}", setting.key);
            for text in [setting.help, setting.when_unset] {
                assert!(!text.contains('\n'), "{}: {text}", setting.key);
            }
        }
    }

    #[test]
    fn every_example_is_a_value_of_its_setting() {
        for setting in SETTINGS {
            let Some(example) = setting.example else {
                continue;
            };
            let toml = match setting.key.split_once('.') {
                Some((section, name)) => format!("[{section}]\n{name} = {example}\n"),
                None => format!("{} = {example}\n", setting.key),
            };
            let loaded: Result<Config, _> = Figment::from(Toml::string(&toml)).extract();
            assert!(loaded.is_ok(), "{}: {loaded:?}", setting.key);
        }
    }
}
