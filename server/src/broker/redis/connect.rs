//! The one place a `redis::Client` is made from the settings, so that every
//! Redis connection the hub opens (the broker's publisher and subscriber,
//! cluster presence) uses the same transport and identity: `redis://` or
//! TLS with `rediss://` (the system's roots, or `broker.redis_tls_ca_file`;
//! a client certificate for mutual TLS), and an ACL user's credentials from
//! `broker.redis_username` / `broker.redis_password` (which win over any in
//! the URL).

use crate::broker::BrokerError;
use crate::config::BrokerConfig;
use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use secrecy::ExposeSecret;
use std::path::Path;

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
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|error| BrokerError::Setup(format!("redis TLS settings: {error}")))
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
}
