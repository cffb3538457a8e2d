//! Tracing subscriber set-up for the binary.
//!
//! The configured filter (or `RUST_LOG`) applies to the hub's own events.
//! Other crates' events are capped at `info` whatever the filter says: at
//! `debug` and `trace` the WebSocket, HTTP and HTTP/2 libraries log whole
//! frames and headers (tokens, API keys, message text), which must never
//! reach the log. `log`-crate records are forwarded and capped the same way.

use crate::config::{LogConfig, LogFormat};
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Targets whose `debug`/`trace` events the filter may let through: the
/// hub's own modules.
const OWN_TARGET: &str = "consult_hub";

/// True for events that may be logged at all: the hub's own at any level,
/// anything else at `info` or above.
pub fn may_log(metadata: &Metadata<'_>) -> bool {
    *metadata.level() <= Level::INFO || is_own(metadata.target())
}

fn is_own(target: &str) -> bool {
    target
        .strip_prefix(OWN_TARGET)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Installs the global subscriber; `RUST_LOG` overrides the configured
/// filter. Does nothing if one is already installed.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let cap = filter_fn(may_log);
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    let result = match config.format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("tracing subscriber already installed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hubs_own_modules_count_as_its_own() {
        assert!(is_own("consult_hub"));
        assert!(is_own("consult_hub::session::connection"));
        assert!(!is_own("consult_hub_extra"));
        assert!(!is_own("tungstenite::protocol"));
        assert!(!is_own("h2::codec"));
    }
}
