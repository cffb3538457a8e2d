//! Unit tests for reading the hub's `/metrics` page.

use super::*;

const PAGE: &str = r#"# HELP consult_session_closes_total Sessions closed, by close code.
# TYPE consult_session_closes_total counter
consult_session_closes_total{code="4000"} 3
consult_session_closes_total{code="4003"} 0
consult_slow_consumer_kicks_total 1
consult_connection_slots_open 12
consult_command_seconds_bucket{command="send",le="0.001"} 40
consult_command_seconds_count{command="send"} 40
consult_client_errors_total{code="rate_limited"} 7
not a series
"#;

#[test]
fn series_are_read_by_key_and_histograms_skipped() {
    let reading = Reading::parse(PAGE);
    assert_eq!(
        reading
            .0
            .get(r#"consult_session_closes_total{code="4000"}"#),
        Some(&3.0)
    );
    assert_eq!(reading.total("consult_session_closes_total"), 3.0);
    assert_eq!(reading.total("consult_connection_slots_open"), 12.0);
    assert!(!reading.0.keys().any(|key| key.contains("command_seconds")));
    assert_eq!(reading.0.len(), 5);
}

#[test]
fn growth_is_reported_per_series_without_prefix_and_suffix() {
    let before = Reading::parse(PAGE);
    let after = Reading::parse(
        &PAGE
            .replace(r#"{code="4000"} 3"#, r#"{code="4000"} 10"#)
            .replace(
                "consult_slow_consumer_kicks_total 1",
                "consult_slow_consumer_kicks_total 4",
            ),
    );
    let grown = after.grown_since(&before, REFUSAL_COUNTERS);
    assert_eq!(grown.get(r#"session_closes{code="4000"}"#), Some(&7));
    assert_eq!(grown.get("slow_consumer_kicks"), Some(&3));
    // Unchanged series are left out.
    assert_eq!(grown.len(), 2, "{grown:?}");
}
