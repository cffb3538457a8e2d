//! How the settings that must never be printed serialize: the secrets, and
//! the provider tables (`notify.fcm`, `notify.twilio`, …) that hold
//! credentials. Each serializes as unset or as [`REDACTED`], never as its
//! value, so no serialized `Config` carries a secret.

use serde::Serializer;

/// What a set secret serializes as (the marker `secrecy` prints for one).
pub const REDACTED: &str = "[REDACTED]";

/// An optional secret, or a table holding one: `None`, or [`REDACTED`].
pub(super) fn hidden<T, S: Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        None => serializer.serialize_none(),
        Some(_) => serializer.serialize_some(REDACTED),
    }
}

/// A list of secrets: one [`REDACTED`] per entry.
pub(super) fn hidden_each<T, S: Serializer>(
    values: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|_| REDACTED))
}

#[cfg(test)]
mod tests {
    use super::REDACTED;
    use crate::config::Config;
    use crate::notify::providers::WebhookConfig;
    use secrecy::SecretString;

    #[test]
    fn a_serialized_config_names_which_secrets_are_set_but_holds_none_of_them() {
        let secret = |text: &str| SecretString::from(text.to_owned());
        let mut config = Config::default();
        config.auth.jwt_secret = Some(secret("jwt-secret-marker"));
        config.auth.api_keys = vec![secret("api-key-marker-1"), secret("api-key-marker-2")];
        config.broker.redis_password = Some(secret("redis-password-marker"));
        config.broker.cluster_key = Some(secret("cluster-key-marker"));
        config.notify.webhook = Some(WebhookConfig {
            url: "https://hooks.example.org/consult".to_owned(),
            secret: secret("webhook-secret-marker"),
            connect_timeout_secs: 1,
            request_timeout_secs: 1,
        });
        let value = serde_json::to_value(&config).unwrap();
        let text = value.to_string();
        assert!(!text.contains("marker"), "{text}");
        assert_eq!(value["auth"]["jwt_secret"], REDACTED);
        assert_eq!(
            value["auth"]["api_keys"],
            serde_json::json!([REDACTED, REDACTED])
        );
        assert_eq!(value["notify"]["webhook"], REDACTED);
        assert!(value["broker"]["cluster_key_secondary"].is_null());
    }
}
