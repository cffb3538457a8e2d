//! HTTP mechanics shared by the provider clients: the one `reqwest::Client`
//! per provider, base-URL validation, key-file reading, and the mapping of
//! transport failures and plain HTTP statuses to [`SendError`]s.
//!
//! Nothing here knows a provider's request or error shapes.

use super::{CONNECT_TIMEOUT_SECS, ProviderSetupError, REQUEST_TIMEOUT_SECS, SendError};
use reqwest::StatusCode;
use std::path::Path;
use std::time::Duration;

const USER_AGENT: &str = concat!("consult-hub/", env!("CARGO_PKG_VERSION"));

/// Serde default for `connect_timeout_secs`.
pub(super) fn default_connect_timeout_secs() -> u64 {
    CONNECT_TIMEOUT_SECS
}

/// Serde default for `request_timeout_secs`.
pub(super) fn default_request_timeout_secs() -> u64 {
    REQUEST_TIMEOUT_SECS
}

/// Which HTTP versions a client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// HTTP/1.1 or HTTP/2, as ALPN decides.
    Any,
    /// HTTP/2 only: ALPN over TLS, prior knowledge (h2c) over cleartext.
    Http2,
}

/// Builds a provider's shared HTTP client.
pub(super) fn http_client(
    base_url: &str,
    protocol: Protocol,
    connect_timeout_secs: u64,
    request_timeout_secs: u64,
) -> Result<reqwest::Client, ProviderSetupError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(connect_timeout_secs))
        .timeout(Duration::from_secs(request_timeout_secs));
    // Over TLS the default ALPN offers h2 and the provider picks it; a
    // cleartext test server can only be reached over HTTP/2 by prior knowledge.
    if protocol == Protocol::Http2 && base_url.starts_with("http://") {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().map_err(ProviderSetupError::HttpClient)
}

/// Validates an `http(s)://` API root and returns it without a trailing `/`,
/// ready for paths to be appended.
pub(super) fn base_url(field: &'static str, raw: &str) -> Result<String, ProviderSetupError> {
    Ok(endpoint_url(field, raw)?.trim_end_matches('/').to_owned())
}

/// Validates a complete `http(s)://` endpoint URL and returns it unchanged.
pub(super) fn endpoint_url(field: &'static str, raw: &str) -> Result<String, ProviderSetupError> {
    let invalid = |reason: String| ProviderSetupError::InvalidConfig { field, reason };
    let parsed = url::Url::parse(raw).map_err(|error| invalid(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("must not have a query or fragment".to_owned()));
    }
    Ok(raw.to_owned())
}

/// Reads a key or credentials file named in the configuration.
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, ProviderSetupError> {
    std::fs::read(path).map_err(|error| ProviderSetupError::ReadFile {
        path: path.to_owned(),
        error,
    })
}

/// A request that never got a complete answer: always worth retrying.
///
/// The URL is stripped because some carry a device token in their path.
pub(super) fn network_error(provider: &str, error: reqwest::Error) -> SendError {
    let error = error.without_url();
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    SendError::Retryable(format!("{provider}: {kind}: {detail}"))
}

/// The default mapping of a failed status: 429 and 5xx are retryable, any
/// other status is permanent. `code` is the provider's error code, if any.
/// Sends `request` and reads the whole answer, logging the status against
/// the idempotency key (never the body).
///
/// # Errors
///
/// A retryable [`SendError`] when the request or the body read fails.
pub(super) async fn exchange(
    provider: &'static str,
    idempotency_key: &str,
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, bytes::Bytes), SendError> {
    let response = request
        .send()
        .await
        .map_err(|error| network_error(provider, error))?;
    let status = response.status();
    let answer = response
        .bytes()
        .await
        .map_err(|error| network_error(provider, error))?;
    tracing::debug!(
        provider,
        idempotency_key,
        status = status.as_u16(),
        "provider answered"
    );
    Ok((status, answer))
}

pub(super) fn status_error(provider: &str, status: StatusCode, code: Option<&str>) -> SendError {
    let text = describe(provider, status, code);
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        SendError::Retryable(text)
    } else {
        SendError::Permanent(text)
    }
}

/// A failure caused by our own credentials: retryable once they are fixed.
pub(super) fn credentials_error(
    provider: &str,
    status: StatusCode,
    code: Option<&str>,
) -> SendError {
    SendError::Retryable(format!(
        "{}; check the provider credentials",
        describe(provider, status, code)
    ))
}

/// `provider answered STATUS (CODE)`: a provider's status and error code, never
/// its body.
pub(super) fn describe(provider: &str, status: StatusCode, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("{provider} answered {status} ({code})"),
        None => format!("{provider} answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_loses_its_trailing_slash_and_must_be_http() {
        assert_eq!(
            base_url("base_url", "https://api.example/").unwrap(),
            "https://api.example"
        );
        assert!(base_url("base_url", "ftp://api.example").is_err());
        assert!(base_url("base_url", "not a url").is_err());
        assert!(base_url("base_url", "https://api.example/?x=1").is_err());
    }

    #[test]
    fn an_endpoint_url_keeps_its_path_exactly() {
        assert_eq!(
            endpoint_url("url", "https://hooks.example/notify/").unwrap(),
            "https://hooks.example/notify/"
        );
    }

    #[test]
    fn only_429_and_5xx_statuses_are_retryable() {
        let retryable = |status| status_error("p", status, None).is_retryable();
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::GONE));
        assert!(!retryable(StatusCode::NOT_FOUND));
    }
}
