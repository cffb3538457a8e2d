//! The hub's own counts, read from its `GET /metrics` page (Prometheus
//! text, no key needed): a scenario reads them before and after a phase and
//! reports what changed, so that what the hub refused or closed is told by
//! the hub as well as by the clients that met it.
//!
//! Only plain series (counters and gauges) are kept; histogram series
//! (`_bucket`, `_sum`, `_count`) are skipped.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one read of `/metrics` may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The counter families a phase reports the change of.
pub const REFUSAL_COUNTERS: &[&str] = &[
    "consult_connections_total",
    "consult_connections_refused_total",
    "consult_session_closes_total",
    "consult_client_errors_total",
    "consult_slow_consumer_kicks_total",
    "consult_http_header_timeouts_total",
    "consult_accept_errors_total",
];

/// Gauges of connections held open, watched for their peak.
pub const CONNECTION_GAUGES: &[&str] = &[
    "consult_connection_slots_open",
    "consult_connections_active",
];

/// One reading: each series (`name{labels}` as the page writes it) and its
/// value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading(pub BTreeMap<String, f64>);

impl Reading {
    /// Parses a Prometheus text page; lines it does not understand are
    /// skipped.
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The value follows the last space (labels may hold spaces).
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = family(key);
            if ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.ends_with(suffix))
            {
                continue;
            }
            series.insert(key.trim().to_owned(), value);
        }
        Self(series)
    }

    /// The value of every series of `family`, by its key.
    pub fn family<'a>(&'a self, family_name: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
        self.0
            .iter()
            .filter(move |(key, _)| family(key) == family_name)
            .map(|(key, value)| (key.as_str(), *value))
    }

    /// The sum of every series of `family` (0 when there is none).
    pub fn total(&self, family_name: &str) -> f64 {
        self.family(family_name).map(|(_, value)| value).sum()
    }

    /// How much each series of `families` grew from `earlier` to this
    /// reading, the ones that grew only, keyed without the `consult_`
    /// prefix and the `_total` suffix (`session_closes{code="4000"}`).
    pub fn grown_since(&self, earlier: &Self, families: &[&str]) -> BTreeMap<String, u64> {
        let mut grown = BTreeMap::new();
        for family_name in families {
            for (key, value) in self.family(family_name) {
                let before = earlier.0.get(key).copied().unwrap_or(0.0);
                let delta = value - before;
                if delta >= 0.5 {
                    grown.insert(short_key(key), delta.round() as u64);
                }
            }
        }
        grown
    }
}

/// The metric name of a series key (what comes before `{`).
fn family(key: &str) -> &str {
    key.split_once('{').map_or(key, |(name, _)| name).trim()
}

fn short_key(key: &str) -> String {
    let (name, labels) = key.split_once('{').map_or((key, ""), |(n, l)| (n, l));
    let name = name.strip_prefix("consult_").unwrap_or(name);
    let name = name.strip_suffix("_total").unwrap_or(name);
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}")
    }
}

/// Reads `/metrics` of the node at `http_base` (`http://HOST:PORT`).
///
/// # Errors
///
/// When the request fails or the answer is not a success.
pub async fn read(http: &reqwest::Client, http_base: &str) -> Result<Reading> {
    let url = format!("{}/metrics", http_base.trim_end_matches('/'));
    let response = http
        .get(&url)
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()
        .with_context(|| format!("GET {url}"))?;
    let text = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    Ok(Reading::parse(&text))
}

#[cfg(test)]
mod tests;
