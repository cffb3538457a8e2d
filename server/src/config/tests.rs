#![allow(clippy::result_large_err)] // figment::Jail's closure signature.

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn validate_reports_every_problem_at_once() {
    let mut config = Config::default();
    config.database.url = "mysql://x".into();
    config.session.outbound_queue_capacity = 0;
    config.broker.kind = BrokerKind::Redis;
    config.listen_backlog = 0;
    let error = config.validate().unwrap_err();
    // The Redis broker without a URL, and without a cluster key.
    assert_eq!(error.problems.len(), 5, "{error}");
    assert!(error.to_string().contains("listen_backlog"), "{error}");
    assert!(error.to_string().contains("broker.cluster_key"), "{error}");
}

fn redis_config() -> Config {
    let mut config = Config::default();
    config.broker.kind = BrokerKind::Redis;
    config.broker.redis_url = Some("redis://127.0.0.1:6379".into());
    config
}

fn secret(text: &str) -> Option<SecretString> {
    Some(SecretString::from(text.to_owned()))
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn a_redis_cluster_needs_a_cluster_key_of_32_bytes_or_the_explicit_opt_out() {
    let mut config = redis_config();
    let error = config.validate().unwrap_err();
    assert_eq!(error.problems.len(), 1, "{error}");
    assert!(
        error.problems[0].contains("broker.cluster_key is required"),
        "{error}"
    );
    config.broker.cluster_key = secret("");
    assert!(config.validate().is_err(), "empty counts as unset");
    config.broker.cluster_key = secret(&KEY[1..]);
    let error = config.validate().unwrap_err();
    assert!(error.problems[0].contains("at least 32 bytes"), "{error}");
    config.broker.cluster_key = secret(KEY);
    config.validate().unwrap();
    config.broker.cluster_key = None;
    config.broker.insecure_no_cluster_key = true;
    config.validate().unwrap();
    config.broker.cluster_key = secret(KEY);
    assert!(config.validate().is_err(), "key and opt-out contradict");
}

#[test]
fn a_secondary_key_needs_a_primary_and_32_bytes() {
    let mut config = redis_config();
    config.broker.cluster_key_secondary = secret(KEY);
    config.broker.insecure_no_cluster_key = true;
    let error = config.validate().unwrap_err();
    assert!(
        error.to_string().contains("needs broker.cluster_key"),
        "{error}"
    );
    config.broker.insecure_no_cluster_key = false;
    config.broker.cluster_key = secret(KEY);
    config.broker.cluster_key_secondary = secret("short");
    let error = config.validate().unwrap_err();
    assert!(
        error.to_string().contains("cluster_key_secondary must be"),
        "{error}"
    );
}

#[test]
fn tls_files_need_a_rediss_url_and_cert_and_key_go_together() {
    let mut config = redis_config();
    config.broker.cluster_key = secret(KEY);
    config.broker.redis_tls_ca_file = Some("ca.pem".into());
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("rediss://"), "{error}");
    config.broker.redis_url = Some("rediss://redis.internal:6380".into());
    config.validate().unwrap();
    config.broker.redis_tls_cert_file = Some("client.pem".into());
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("go together"), "{error}");
    config.broker.redis_tls_key_file = Some("client.key".into());
    config.validate().unwrap();
    config.broker.redis_url = Some("http://redis".into());
    assert!(config.validate().is_err());
}

#[test]
fn a_redis_cluster_broker_needs_its_node_urls_of_one_scheme_and_no_redis_url() {
    let mut config = Config::default();
    config.broker.kind = BrokerKind::RedisCluster;
    config.broker.cluster_key = secret(KEY);
    let error = config.validate().unwrap_err();
    assert_eq!(error.problems.len(), 1, "{error}");
    assert!(
        error.problems[0].contains("broker.cluster_urls is required"),
        "{error}"
    );
    config.broker.cluster_urls = vec![
        "redis://10.0.0.1:6379".into(),
        "redis://10.0.0.2:6379".into(),
    ];
    config.validate().unwrap();
    config
        .broker
        .cluster_urls
        .push("rediss://10.0.0.3:6380".into());
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("mixes"), "{error}");
    config.broker.cluster_urls = vec!["rediss://10.0.0.3:6380".into()];
    config.broker.redis_tls_ca_file = Some("ca.pem".into());
    config.validate().unwrap();
    config.broker.cluster_urls = vec!["10.0.0.3:6380".into()];
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("must each start"), "{error}");
    config.broker.cluster_urls = vec!["redis://10.0.0.3:6379".into()];
    config.broker.redis_url = Some("redis://10.0.0.9:6379".into());
    let error = config.validate().unwrap_err();
    assert_eq!(error.problems.len(), 2, "TLS files and redis_url: {error}");
    config.broker.cluster_key = None;
    let error = config.validate().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("kind = \"redis-cluster\": the same secret"),
        "{error}"
    );
}

#[test]
fn the_redis_cluster_kind_is_spelled_with_a_hyphen() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONSULT_BROKER__KIND", "redis-cluster");
        jail.set_env(
            "CONSULT_BROKER__CLUSTER_URLS",
            r#"["redis://10.0.0.1:6379"]"#,
        );
        jail.set_env("CONSULT_BROKER__CLUSTER_KEY", KEY);
        let config = Config::load(None).unwrap();
        assert_eq!(config.broker.kind, BrokerKind::RedisCluster);
        assert_eq!(config.broker.cluster_urls, ["redis://10.0.0.1:6379"]);
        Ok(())
    });
}

#[test]
fn environment_overrides_nested_fields() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONSULT_SESSION__OUTBOUND_QUEUE_CAPACITY", "17");
        jail.set_env("CONSULT_LISTEN", "127.0.0.1:9999");
        jail.set_env("CONSULT_LISTEN_BACKLOG", "512");
        let config = Config::load(None).unwrap();
        assert_eq!(config.session.outbound_queue_capacity, 17);
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.listen_backlog, 512);
        Ok(())
    });
}

#[test]
fn unknown_keys_in_the_file_are_rejected() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("hub.toml", "listen = \"127.0.0.1:1\"\nlisten_port = 3\n")?;
        let error = Config::load(Some(Path::new("hub.toml"))).unwrap_err();
        assert!(error.to_string().contains("listen_port"), "{error}");
        Ok(())
    });
}

#[test]
fn other_tools_variables_are_not_config_but_typos_in_a_section_are_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONSULT_TEST_PG_URL", "postgres://x");
        jail.set_env("CONSULT_TOKEN", "a.b.c");
        assert!(Config::load(None).is_ok());
        jail.set_env("CONSULT_SESSION__OUTBOUND_QUEUE", "3");
        let error = Config::load(None).unwrap_err();
        assert!(error.to_string().contains("outbound_queue"), "{error}");
        Ok(())
    });
}

#[test]
fn a_presence_cache_as_long_as_the_presence_ttl_is_refused() {
    let mut config = Config::default();
    config.broker.presence_cache_ms = config.broker.presence_ttl_ms;
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("presence_cache_ms"), "{error}");
    config.broker.presence_cache_ms = 0;
    config.validate().unwrap();
}

#[test]
fn the_sqlite_checkpoint_and_log_sync_intervals_are_read_from_the_environment_and_bounded() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONSULT_DATABASE__SQLITE_CHECKPOINT_INTERVAL_MS", "40");
        jail.set_env("CONSULT_DATABASE__SQLITE_LOG_SYNC_INTERVAL_MS", "10");
        jail.set_env("CONSULT_DATABASE__SQLITE_SYNCHRONOUS", "normal");
        let config = Config::load(None).unwrap();
        assert_eq!(
            config.database.sqlite_checkpoint_interval(),
            Duration::from_millis(40)
        );
        assert_eq!(
            config.database.sqlite_log_sync_interval(),
            Some(Duration::from_millis(10))
        );
        Ok(())
    });
    /// Sets one interval of a database configuration.
    type SetInterval = fn(&mut DatabaseConfig, u64);
    let settings: [(&str, SetInterval); 2] = [
        ("sqlite_checkpoint_interval_ms", |database, ms| {
            database.sqlite_checkpoint_interval_ms = Some(ms);
        }),
        ("sqlite_log_sync_interval_ms", |database, ms| {
            database.sqlite_log_sync_interval_ms = Some(ms);
        }),
    ];
    for (key, set) in settings {
        for refused in [0, SQLITE_CHECKPOINT_INTERVAL_MAX_MS + 1] {
            let mut config = Config::default();
            set(&mut config.database, refused);
            let error = config.validate().unwrap_err();
            assert!(error.to_string().contains(key), "{key} {refused}: {error}");
        }
    }
}

#[test]
fn twilio_without_the_public_inbound_url_is_refused() {
    let mut config = Config::default();
    config.notify.twilio = Some(crate::notify::providers::TwilioConfig {
        base_url: "https://api.twilio.com".to_owned(),
        account_sid: "AC0123".to_owned(),
        auth_token: secrecy::SecretString::from("token".to_owned()),
        from_number: Some("+15550009999".to_owned()),
        messaging_service_sid: None,
        connect_timeout_secs: 2,
        request_timeout_secs: 5,
    });
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("notify.sms_inbound_url must be set"),
        "{error}"
    );
    config.notify.sms_inbound_url = Some("not a url".to_owned());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("must be an http(s) URL"), "{error}");
    config.notify.sms_inbound_url = Some("https://hub.example.org/v1/sms/inbound".to_owned());
    config.validate().unwrap();
}

#[test]
fn short_secrets_and_api_keys_are_refused_and_an_empty_secret_is_unset() {
    let mut config = Config::default();
    config.auth.jwt_secret = Some(SecretString::from("x".to_owned()));
    config.auth.api_keys = vec![
        SecretString::from("k".repeat(MIN_SECRET_BYTES)),
        SecretString::from("short-key".to_owned()),
    ];
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("auth.jwt_secret must be at least 32 bytes"),
        "{error}"
    );
    assert!(
        error.contains("auth.api_keys[1] must be at least 32 bytes"),
        "{error}"
    );
    assert!(!error.contains("auth.api_keys[0]"), "{error}");
    assert!(
        !error.contains("short-key"),
        "values are never named: {error}"
    );

    config.auth.jwt_secret = Some(SecretString::from(String::new()));
    config.auth.api_keys.truncate(1);
    config.validate().unwrap();
    assert!(config.auth.jwt_secret().is_none(), "empty counts as unset");
    config.auth.jwt_secret = Some(SecretString::from("s".repeat(MIN_SECRET_BYTES)));
    config.validate().unwrap();
}

#[test]
fn devices_per_patient_are_bounded_so_one_message_queues_a_bounded_list() {
    for (devices, valid) in [(0, false), (1, true), (100, true), (101, false)] {
        let mut config = Config::default();
        config.notify.max_devices_per_patient = devices;
        let result = config.validate();
        assert_eq!(result.is_ok(), valid, "{devices}: {result:?}");
        if let Err(error) = result {
            assert!(error.to_string().contains("between 1 and 100"), "{error}");
        }
    }
}

#[test]
fn unset_checkpoints_are_a_second_apart_and_the_log_is_synced_between_them_only_in_normal_mode() {
    let mut config = Config::default();
    assert_eq!(config.database.sqlite_synchronous, SqliteSync::Full);
    assert_eq!(
        config.database.sqlite_checkpoint_interval(),
        Duration::from_millis(SQLITE_CHECKPOINT_INTERVAL_MS)
    );
    assert_eq!(config.database.sqlite_log_sync_interval(), None);
    config.database.sqlite_log_sync_interval_ms = Some(10);
    assert_eq!(
        config.database.sqlite_log_sync_interval(),
        None,
        "every commit syncs the log in the durable mode"
    );
    config.database.sqlite_synchronous = SqliteSync::Normal;
    config.database.sqlite_log_sync_interval_ms = None;
    assert_eq!(
        config.database.sqlite_checkpoint_interval(),
        Duration::from_millis(SQLITE_CHECKPOINT_INTERVAL_MS)
    );
    assert_eq!(
        config.database.sqlite_log_sync_interval(),
        Some(Duration::from_millis(SQLITE_LOG_SYNC_INTERVAL_MS))
    );
    config.database.sqlite_checkpoint_interval_ms = Some(40);
    config.database.sqlite_log_sync_interval_ms = Some(10);
    assert_eq!(
        config.database.sqlite_checkpoint_interval(),
        Duration::from_millis(40)
    );
    assert_eq!(
        config.database.sqlite_log_sync_interval(),
        Some(Duration::from_millis(10))
    );
}

#[test]
fn the_group_commit_linger_defaults_by_writer_and_is_bounded() {
    let mut config = Config::default();
    assert_eq!(
        config.database.append_linger(AppendWriter::SqliteFile),
        Duration::from_micros(SQLITE_APPEND_LINGER_US)
    );
    assert_eq!(
        config.database.append_linger(AppendWriter::Postgres),
        Duration::from_micros(POSTGRES_APPEND_LINGER_US)
    );
    assert_eq!(
        config.database.append_linger(AppendWriter::SqliteInMemory),
        Duration::ZERO
    );
    config.database.append_linger_us = Some(0);
    assert_eq!(
        config.database.append_linger(AppendWriter::SqliteFile),
        Duration::ZERO
    );
    assert_eq!(
        config.database.append_linger(AppendWriter::Postgres),
        Duration::ZERO
    );
    config.database.append_linger_us = Some(10_000);
    config.validate().unwrap();
    assert_eq!(
        config.database.append_linger(AppendWriter::SqliteInMemory),
        Duration::from_millis(10)
    );
    config.database.append_linger_us = Some(10_001);
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("append_linger_us"), "{error}");
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONSULT_DATABASE__APPEND_LINGER_US", "750");
        let config = Config::load(None).unwrap();
        assert_eq!(
            config.database.append_linger(AppendWriter::Postgres),
            Duration::from_micros(750)
        );
        Ok(())
    });
}

#[test]
fn the_partition_statistics_look_is_every_5_seconds_read_from_the_environment_and_never_0() {
    let mut config = Config::default();
    assert_eq!(
        config.database.partition_analyze_interval_secs,
        PARTITION_ANALYZE_INTERVAL_SECS
    );
    assert_eq!(PARTITION_ANALYZE_INTERVAL_SECS, 5);
    config.database.partition_analyze_interval_secs = 0;
    let error = config.validate().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("database.partition_analyze_interval_secs must be at least 1"),
        "{error}"
    );
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONSULT_DATABASE__PARTITION_ANALYZE_INTERVAL_SECS", "60");
        let config = Config::load(None).unwrap();
        assert_eq!(config.database.partition_analyze_interval_secs, 60);
        Ok(())
    });
}
