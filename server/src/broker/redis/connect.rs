//! The one place a `redis::Client` is made from the settings, so that every
//! Redis connection the hub opens (the broker's publisher and subscriber,
//! cluster presence) uses the same transport and identity: `redis://` or
//! TLS with `rediss://` (the system's roots, or `broker.redis_tls_ca_file`;
//! a client certificate for mutual TLS), and an ACL user's credentials from
//! `broker.redis_username` / `broker.redis_password` (which win over any in
//! the URL). A Redis Cluster's client ([`redis_cluster_client`]) takes the
//! same settings for every node it reaches, from `broker.cluster_urls`.

use crate::broker::BrokerError;
use crate::config::BrokerConfig;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{ClientTlsConfig, IntoConnectionInfo, ProtocolVersion, TlsCertificates};
use secrecy::ExposeSecret;
use std::path::Path;
use std::time::Duration;

fn read(what: &str, path: &Path) -> Result<Vec<u8>, BrokerError> {
    std::fs::read(path).map_err(|error| {
        BrokerError::Setup(format!("cannot read {what} {}: {error}", path.display()))
    })
}

/// The client for `broker.redis_url` with the TLS and ACL settings applied.
/// Connects nothing yet.
///
/// # Errors
///
/// [`BrokerError::Setup`] when the URL is missing or malformed, TLS files
/// are given for a `redis://` URL, or a file cannot be read or parsed.
pub fn redis_client(config: &BrokerConfig) -> Result<redis::Client, BrokerError> {
    let url = config
        .redis_url
        .as_deref()
        .ok_or_else(|| BrokerError::Setup("broker.redis_url is not set".to_owned()))?;
    // The redis crate's message does not repeat the URL (which may hold a
    // password).
    let mut info = url
        .into_connection_info()
        .map_err(|error| BrokerError::Setup(format!("broker.redis_url: {error}")))?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = config.redis_username.as_deref().filter(|u| !u.is_empty()) {
        settings = settings.set_username(username);
    }
    if let Some(password) = config
        .redis_password
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .filter(|p| !p.is_empty())
    {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    let tls = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(BrokerError::Setup(
                "broker.redis_url: certificate checks cannot be turned off (#insecure)".to_owned(),
            ));
        }
        redis::ConnectionAddr::TcpTls { .. } => true,
        _ => false,
    };
    let wants_files = config.redis_tls_ca_file.is_some()
        || config.redis_tls_cert_file.is_some()
        || config.redis_tls_key_file.is_some();
    if !tls {
        if wants_files {
            return Err(BrokerError::Setup(
                "broker.redis_tls_* files need a rediss:// URL".to_owned(),
            ));
        }
        return redis::Client::open(info)
            .map_err(|error| BrokerError::Setup(format!("broker.redis_url: {error}")));
    }
    redis::Client::build_with_tls(info, certificates(config)?)
        .map_err(|error| BrokerError::Setup(format!("redis TLS settings: {error}")))
}

/// The CA and client certificate files the settings name, read.
fn certificates(config: &BrokerConfig) -> Result<TlsCertificates, BrokerError> {
    let root_cert = config
        .redis_tls_ca_file
        .as_deref()
        .map(|path| read("broker.redis_tls_ca_file", path))
        .transpose()?;
    let client_tls = match (&config.redis_tls_cert_file, &config.redis_tls_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("broker.redis_tls_cert_file", cert)?,
            client_key: read("broker.redis_tls_key_file", key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(BrokerError::Setup(
                "broker.redis_tls_cert_file and broker.redis_tls_key_file go together".to_owned(),
            ));
        }
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// The clients a node uses on a Redis Cluster.
pub struct ClusterClients {
    /// For commands: publishing, presence, the node id claim.
    pub commands: ClusterClient,
    /// For the subscriber (RESP3), whose pushes arrive on `pushes`.
    pub subscriber: ClusterClient,
    /// The subscriber's pushes: sharded messages, unsubscriptions, lost
    /// node connections.
    pub pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
}

impl std::fmt::Debug for ClusterClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClients").finish_non_exhaustive()
    }
}

/// Both clients for the Redis Cluster reached through
/// `broker.cluster_urls` (any of its nodes; the rest are discovered), with
/// the same TLS and ACL settings as [`redis_client`]. Connects nothing yet.
///
/// A command that meets a moved slot or a lost primary is retried a few
/// times, 50 ms to 500 ms apart, after the client re-reads the slot map;
/// while a primary is being replaced by its replica it fails, and its
/// caller (publisher, presence) deals with that as with a lost Redis.
///
/// # Errors
///
/// [`BrokerError::Setup`] when no URL is given, one is malformed, they mix
/// `redis://` and `rediss://`, or a certificate file cannot be read.
pub fn redis_cluster_clients(config: &BrokerConfig) -> Result<ClusterClients, BrokerError> {
    let (push_tx, pushes) = tokio::sync::mpsc::unbounded_channel();
    Ok(ClusterClients {
        commands: redis_cluster_client(config, ClusterUse::Commands)?,
        subscriber: redis_cluster_client(config, ClusterUse::Subscriber(push_tx))?,
        pushes,
    })
}

/// How a Redis Cluster client is used: for commands (publishing,
/// presence), or for the subscriber, whose sharded messages arrive as
/// RESP3 pushes on `push`.
#[derive(Debug)]
enum ClusterUse {
    /// Commands only.
    Commands,
    /// The subscriber: RESP3, pushes (messages, server-side
    /// unsubscriptions, lost node connections) sent to this channel.
    Subscriber(tokio::sync::mpsc::UnboundedSender<redis::PushInfo>),
}

/// One client for the Redis Cluster, for `usage` (see
/// [`redis_cluster_clients`]).
fn redis_cluster_client(
    config: &BrokerConfig,
    usage: ClusterUse,
) -> Result<ClusterClient, BrokerError> {
    if config.cluster_urls.is_empty() {
        return Err(BrokerError::Setup(
            "broker.cluster_urls is not set".to_owned(),
        ));
    }
    let mut nodes = Vec::with_capacity(config.cluster_urls.len());
    let mut tls = None;
    for (index, url) in config.cluster_urls.iter().enumerate() {
        let info = url.as_str().into_connection_info().map_err(|error| {
            BrokerError::Setup(format!("broker.cluster_urls[{index}]: {error}"))
        })?;
        let node_tls = match info.addr() {
            redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(BrokerError::Setup(format!(
                    "broker.cluster_urls[{index}]: certificate checks cannot be turned off (#insecure)"
                )));
            }
            redis::ConnectionAddr::TcpTls { .. } => true,
            _ => false,
        };
        if tls.is_some_and(|tls| tls != node_tls) {
            return Err(BrokerError::Setup(
                "broker.cluster_urls mixes redis:// and rediss://".to_owned(),
            ));
        }
        tls = Some(node_tls);
        nodes.push(info);
    }
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(2))
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500);
    if let Some(username) = config.redis_username.as_deref().filter(|u| !u.is_empty()) {
        builder = builder.username(username);
    }
    if let Some(password) = config
        .redis_password
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .filter(|p| !p.is_empty())
    {
        builder = builder.password(password);
    }
    let wants_files = config.redis_tls_ca_file.is_some()
        || config.redis_tls_cert_file.is_some()
        || config.redis_tls_key_file.is_some();
    if tls == Some(true) {
        builder = builder.certs(certificates(config)?);
    } else if wants_files {
        return Err(BrokerError::Setup(
            "broker.redis_tls_* files need rediss:// broker.cluster_urls".to_owned(),
        ));
    }
    if let ClusterUse::Subscriber(push) = usage {
        builder = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(push);
    }
    builder
        .build()
        .map_err(|error| BrokerError::Setup(format!("broker.cluster_urls: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(url: &str) -> BrokerConfig {
        BrokerConfig {
            redis_url: Some(url.to_owned()),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn credentials_come_from_the_url_unless_the_settings_name_them() {
        let client = redis_client(&config("redis://alice:from-url@127.0.0.1:6379/")).unwrap();
        let settings = client.get_connection_info().redis_settings();
        assert_eq!(settings.username(), Some("alice"));
        assert_eq!(settings.password(), Some("from-url"));

        let mut with_settings = config("redis://alice:from-url@127.0.0.1:6379/");
        with_settings.redis_username = Some("consult-hub".to_owned());
        with_settings.redis_password = Some(SecretString::from("from-settings".to_owned()));
        let client = redis_client(&with_settings).unwrap();
        let settings = client.get_connection_info().redis_settings();
        assert_eq!(settings.username(), Some("consult-hub"));
        assert_eq!(settings.password(), Some("from-settings"));
    }

    #[test]
    fn tls_settings_are_checked_before_anything_connects() {
        let mut plain_with_ca = config("redis://127.0.0.1:6379/");
        plain_with_ca.redis_tls_ca_file = Some("ca.pem".into());
        assert!(redis_client(&plain_with_ca).is_err());

        let mut missing_ca = config("rediss://127.0.0.1:6380/");
        missing_ca.redis_tls_ca_file = Some("/nonexistent/ca.pem".into());
        let error = redis_client(&missing_ca).unwrap_err().to_string();
        assert!(error.contains("broker.redis_tls_ca_file"), "{error}");

        let insecure = config("rediss://127.0.0.1:6380/#insecure");
        assert!(
            redis_client(&insecure).is_err(),
            "certificate checks stay on"
        );

        let mut half_pair = config("rediss://127.0.0.1:6380/");
        half_pair.redis_tls_cert_file = Some("client.pem".into());
        assert!(redis_client(&half_pair).is_err());

        assert!(redis_client(&config("rediss://127.0.0.1:6380/")).is_ok());
    }

    fn cluster(urls: &[&str]) -> BrokerConfig {
        BrokerConfig {
            cluster_urls: urls.iter().map(|url| (*url).to_owned()).collect(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn cluster_settings_are_checked_before_anything_connects() {
        assert!(redis_cluster_clients(&cluster(&[])).is_err(), "no node");
        assert!(redis_cluster_clients(&cluster(&["redis://127.0.0.1:7000/"])).is_ok());
        let error = redis_cluster_clients(&cluster(&[
            "redis://127.0.0.1:7000/",
            "rediss://127.0.0.1:7001/",
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("mixes"), "{error}");
        let error = redis_cluster_clients(&cluster(&["rediss://127.0.0.1:7000/#insecure"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("cluster_urls[0]"), "{error}");

        let mut plain_with_ca = cluster(&["redis://127.0.0.1:7000/"]);
        plain_with_ca.redis_tls_ca_file = Some("ca.pem".into());
        assert!(redis_cluster_clients(&plain_with_ca).is_err());
        let mut missing_ca = cluster(&["rediss://127.0.0.1:7000/"]);
        missing_ca.redis_tls_ca_file = Some("/nonexistent/ca.pem".into());
        let error = redis_cluster_clients(&missing_ca).unwrap_err().to_string();
        assert!(error.contains("broker.redis_tls_ca_file"), "{error}");
        assert!(redis_cluster_clients(&cluster(&["rediss://127.0.0.1:7000/"])).is_ok());
    }
}
