//! The operations files in `docs/ops/`: the Prometheus alerting rules, their
//! `promtool` unit tests and the Grafana dashboard. `promtool` checks the
//! rules, runs their unit tests and parses every dashboard query; a hub
//! serving traffic must export every metric (and every label value matched
//! with `=`) that the rules, their tests and the dashboard name, so a
//! renamed metric breaks this test rather than an alert.

use crate::harness::TestHub;
use crate::harness::providers::{
    FakeProviders, INBOUND_URL, PATIENT_PHONE, TWILIO_FROM, twilio_signature, wait_for_status,
};
use consult_protocol::{AlertChannel, DevicePlatform, NotificationStatus, Role};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const RULES: &str = "consult-hub.rules.yml";
const RULES_TEST: &str = "consult-hub.rules.test.yml";
const DASHBOARD: &str = "grafana-dashboard.json";

/// The metric-name prefix of everything the hub exports.
const PREFIX: &str = "consult_";

/// Labels Prometheus attaches to every scraped series (the target's), so
/// they are never in the hub's own exposition.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Labels an alert annotation may show: the node and codes or names from a
/// closed set, never an id.
const ANNOTATION_LABELS: &[&str] = &[
    "instance", "job", "worker", "command", "channel", "reason", "code",
];

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ops")
}

fn read_ops(name: &str) -> String {
    let path = ops_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

// ---- promtool ----

/// `CONSULT_TEST_PROMTOOL` (set by `scripts/test`, which installs it),
/// else `promtool` on the PATH.
fn promtool() -> PathBuf {
    std::env::var_os("CONSULT_TEST_PROMTOOL")
        .map_or_else(|| PathBuf::from("promtool"), PathBuf::from)
}

/// Runs `promtool ARGS` in `dir`; fails the test with its output unless it
/// succeeds.
async fn run_promtool(dir: &Path, args: &[&str]) -> String {
    let tool = promtool();
    let run = tokio::process::Command::new(&tool)
        .current_dir(dir)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} (scripts/test installs it; or set CONSULT_TEST_PROMTOOL): {error}",
                tool.display()
            )
        });
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "promtool {} failed:\n{stdout}\n{stderr}",
        args.join(" ")
    );
    format!("{stdout}{stderr}")
}

#[tokio::test]
async fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let dir = ops_dir();
    let checked = run_promtool(&dir, &["check", "rules", RULES]).await;
    let alerts = alert_names(&read_ops(RULES)).len();
    assert!(
        checked.contains(&format!("SUCCESS: {alerts} rules found")),
        "{checked}"
    );
    let tested = run_promtool(&dir, &["test", "rules", RULES_TEST]).await;
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[tokio::test]
async fn promtool_parses_every_dashboard_query() {
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "{queries:?}");
    // Each query as a recording rule, Grafana's variables replaced by
    // values Prometheus would see: `promtool check rules` parses them.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, (_, expr)) in queries.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$__range", "6h")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        assert!(!expr.contains('$'), "a Grafana variable left in {expr}");
        let quoted = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{index}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.rules.yml"), rules).unwrap();
    let checked = run_promtool(dir.path(), &["check", "rules", "dashboard.rules.yml"]).await;
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{checked}"
    );
}

// ---- the rules file ----

/// The `- alert: NAME` entries of a rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The alerts of a rules file, each as its name and the lines of its entry.
fn alert_entries(rules: &str) -> Vec<(String, Vec<&str>)> {
    let mut entries: Vec<(String, Vec<&str>)> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert:") {
            entries.push((name.trim().to_owned(), Vec::new()));
        } else if let Some((_, lines)) = entries.last_mut() {
            lines.push(line);
        }
    }
    entries
}

/// Every `expr:` of a YAML rules file: inline, or a block scalar (`|`,
/// `>`, with their chomping indicators) made of the more indented lines
/// that follow.
fn rule_exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        index += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !rest.starts_with(['|', '>']) {
            exprs.push(unquote(rest));
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = Vec::new();
        while index < lines.len() {
            let next = lines[index];
            if !next.trim().is_empty() && next.len() - next.trim_start().len() <= indent {
                break;
            }
            block.push(next.trim());
            index += 1;
        }
        exprs.push(block.join("\n").trim().to_owned());
    }
    exprs
}

/// A YAML scalar without its quotes (`'it''s'`, `"a \"b\""`).
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        serde_json::from_str(&format!("\"{inner}\"")).unwrap_or_else(|_| inner.to_owned())
    } else {
        value.to_owned()
    }
}

#[test]
fn every_alert_has_a_duration_a_severity_and_annotations_that_name_no_one() {
    let rules = read_ops(RULES);
    let entries = alert_entries(&rules);
    assert!(entries.len() >= 8, "{entries:?}");
    assert_eq!(
        rule_exprs(&rules).len(),
        entries.len(),
        "one expr per alert"
    );
    for (name, lines) in &entries {
        assert!(name.starts_with("ConsultHub"), "{name}");
        let has = |prefix: &str| lines.iter().any(|line| line.trim().starts_with(prefix));
        assert!(has("for:"), "{name} has no `for:`");
        assert!(
            has("severity: page") || has("severity: ticket"),
            "{name}: severity must be page or ticket"
        );
        assert!(has("summary:"), "{name} has no summary");
        assert!(has("description:"), "{name} has no description");
        // Templates may show the value and these labels only.
        let text = lines.join("\n");
        for template in text.split("{{").skip(1) {
            let template = template.split("}}").next().unwrap_or_default();
            for word in template.split_whitespace() {
                if let Some(label) = word.strip_prefix("$labels.") {
                    assert!(
                        ANNOTATION_LABELS.contains(&label),
                        "{name} shows the label {label}: annotations may show only {ANNOTATION_LABELS:?}"
                    );
                } else {
                    assert!(
                        !word.starts_with('$') || word == "$value",
                        "{name}: unexpected {word} in a template"
                    );
                }
            }
        }
    }
}

#[test]
fn every_alert_is_unit_tested_firing_and_not_firing() {
    let names = alert_names(&read_ops(RULES));
    let tests = read_ops(RULES_TEST);
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut current = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if let Some(expected) = line.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts follows an alertname");
            assert!(names.contains(&name), "a test of an unknown alert {name}");
            if expected.trim() == "[]" {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    for name in &names {
        assert!(firing.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
    }
}

// ---- the dashboard ----

fn dashboard() -> Value {
    serde_json::from_str(&read_ops(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, those nested in collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Every PromQL query of the dashboard, with where it is: panel targets
/// and the selector of each `label_values(selector, label)` variable.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or_default();
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .expect("a query variable has a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: expected label_values(…), got {query}"));
        let (selector, _label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {name}: label_values needs a selector"));
        queries.push((format!("variable {name}"), selector.trim().to_owned()));
    }
    queries
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dashboard["id"].is_null(), "no instance-specific id");
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|variable| variable["name"] == "datasource"
                && variable["type"] == "datasource"
                && variable["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let chosen = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(titles.insert(title), "panel title {title:?} twice");
        assert_eq!(panel["datasource"], chosen, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} queries nothing");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"], chosen, "{title}");
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}"
            );
        }
    }
    // The panels the hub's operators look for.
    let queries = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, expr)| expr)
        .collect::<Vec<_>>()
        .join("\n");
    for wanted in [
        "consult_connections_active",
        "consult_messages_stored_total",
        "consult_command_seconds{job=~\"$job\", instance=~\"$instance\", quantile=\"0.5\"}",
        "consult_command_seconds{job=~\"$job\", instance=~\"$instance\", quantile=\"0.99\"}",
        "consult_broker_publish_failures_total",
        "consult_notifications_total",
        "consult_slow_consumer_kicks_total",
        "code=\"rate_limited\"",
        "consult_worker_up",
        "consult_worker_restarts_total",
        "consult_sms_inbound_total",
    ] {
        assert!(queries.contains(wanted), "no panel queries {wanted}");
    }
}

// ---- PromQL selectors ----

/// A metric selector in a PromQL expression.
#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

/// A label matcher: `label op "value"`, `op` one of `=`, `!=`, `=~`, `!~`.
#[derive(Debug, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// Words after which a parenthesised list names labels, not series.
const LABEL_LIST_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Operator and literal words.
const OPERATOR_WORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index after the string literal opening at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut index = start + 1;
    while index < chars.len() && chars[index] != quote {
        if chars[index] == '\\' && quote != '`' {
            index += 1;
        }
        index += 1;
    }
    index + 1
}

/// The string literal opening at `start`, unescaped, and the index after it.
fn read_string(chars: &[char], start: usize) -> (String, usize) {
    let end = skip_string(chars, start);
    let mut value = String::new();
    let mut index = start + 1;
    while index + 1 < end {
        let mut c = chars[index];
        if c == '\\' && chars[start] != '`' {
            index += 1;
            c = match chars[index] {
                'n' => '\n',
                't' => '\t',
                other => other,
            };
        }
        value.push(c);
        index += 1;
    }
    (value, end)
}

/// The index after the group opening at `start` (`(…)`, `[…]`, `{…}`),
/// string literals inside skipped.
fn skip_group(chars: &[char], start: usize) -> usize {
    let (open, close) = (
        chars[start],
        match chars[start] {
            '(' => ')',
            '[' => ']',
            _ => '}',
        },
    );
    let mut depth = 0;
    let mut index = start;
    while index < chars.len() {
        match chars[index] {
            '"' | '\'' | '`' => {
                index = skip_string(chars, index);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return index + 1;
                }
            }
            _ => {}
        }
        index += 1;
    }
    index
}

fn skip_space(chars: &[char], mut index: usize) -> usize {
    while index < chars.len() && chars[index].is_whitespace() {
        index += 1;
    }
    index
}

/// The matchers of a selector whose `{` is at `open`, and the index after
/// its `}`.
fn read_matchers(chars: &[char], open: usize) -> (Vec<Matcher>, usize) {
    let mut matchers = Vec::new();
    let mut index = open + 1;
    loop {
        index = skip_space(chars, index);
        match chars.get(index) {
            None => return (matchers, index),
            Some('}') => return (matchers, index + 1),
            Some(',') => {
                index += 1;
                continue;
            }
            Some(_) => {}
        }
        let start = index;
        while index < chars.len() && is_word_char(chars[index]) {
            index += 1;
        }
        let label: String = chars[start..index].iter().collect();
        index = skip_space(chars, index);
        let op_start = index;
        while index < chars.len() && matches!(chars[index], '=' | '!' | '~') {
            index += 1;
        }
        let op: String = chars[op_start..index].iter().collect();
        index = skip_space(chars, index);
        assert!(
            !label.is_empty() && ["=", "!=", "=~", "!~"].contains(&op.as_str()),
            "cannot read the matcher at {:?}",
            chars[start..].iter().collect::<String>()
        );
        let (value, after) = read_string(chars, index);
        index = after;
        matchers.push(Matcher { label, op, value });
    }
}

/// The metric selectors of a PromQL expression (Grafana's `$variables`
/// allowed): every name that is not a function, an aggregation, a keyword
/// or a label in a `by (…)`/`on (…)` list, with its matchers.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c == '#' {
            while index < chars.len() && chars[index] != '\n' {
                index += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            index = skip_string(&chars, index);
        } else if c == '$' {
            // A Grafana variable: `$name` or `${name}`.
            index += 1;
            if chars.get(index) == Some(&'{') {
                index = skip_group(&chars, index);
            } else {
                while index < chars.len() && is_word_char(chars[index]) {
                    index += 1;
                }
            }
        } else if c == '[' {
            // A range or subquery: durations only.
            index = skip_group(&chars, index);
        } else if c == '{' {
            panic!("a selector without a metric name in {expr}");
        } else if c.is_ascii_digit() || c == '.' {
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || chars[index] == '.')
            {
                index += 1;
            }
        } else if is_word_start(c) {
            let start = index;
            while index < chars.len() && is_word_char(chars[index]) {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let next = skip_space(&chars, index);
            let next_word: String = chars[next..]
                .iter()
                .take_while(|&&c| is_word_char(c))
                .collect();
            if LABEL_LIST_WORDS.contains(&word.as_str()) {
                if chars.get(next) == Some(&'(') {
                    index = skip_group(&chars, next);
                }
            } else if OPERATOR_WORDS.contains(&word.to_ascii_lowercase().as_str())
                || chars.get(next) == Some(&'(')
                || ["by", "without"].contains(&next_word.as_str())
            {
                // An operator, or a function or aggregation being called
                // (`sum (…)`, `sum by (…) (…)`).
            } else if chars.get(next) == Some(&'{') {
                let (matchers, after) = read_matchers(&chars, next);
                index = after;
                found.push(Selector {
                    name: word,
                    matchers,
                });
            } else {
                found.push(Selector {
                    name: word,
                    matchers: Vec::new(),
                });
            }
        } else {
            index += 1;
        }
    }
    found
}

#[test]
fn selectors_are_found_past_functions_label_lists_variables_and_strings() {
    let expr = r#"
        max by (job, instance, command) (consult_command_seconds{quantile="0.99", command!~"a\"b"}) > 0.5
        and on (instance) sum without (code) (rate(consult_x_total{job=~"$job"}[$__rate_interval] offset 5m))
        or label_replace(up, "dst", "consult_not_a_metric", "src", "(.*)") # consult_comment
        unless count(consult_worker_up{worker=~"broker_.*"} == bool 0) or vector(1e3)
    "#;
    let names: Vec<String> = selectors(expr).into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "consult_command_seconds",
            "consult_x_total",
            "up",
            "consult_worker_up"
        ]
    );
    let first = &selectors(expr)[0];
    assert_eq!(
        first.matchers,
        [
            Matcher {
                label: "quantile".into(),
                op: "=".into(),
                value: "0.99".into()
            },
            Matcher {
                label: "command".into(),
                op: "!~".into(),
                value: "a\"b".into()
            },
        ]
    );
}

// ---- the exposition ----

/// A parsed `/metrics` page: each sample name with the label sets it has,
/// and each family's `# TYPE`.
struct Exposition {
    series: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    types: BTreeMap<String, String>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut series: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut parts = declaration.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_owned(), kind.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let end = chars
            .iter()
            .position(|&c| c == '{' || c == ' ')
            .unwrap_or(chars.len());
        let name: String = chars[..end].iter().collect();
        let labels = if chars.get(end) == Some(&'{') {
            read_matchers(&chars, end)
                .0
                .into_iter()
                .map(|matcher| (matcher.label, matcher.value))
                .collect()
        } else {
            BTreeMap::new()
        };
        series.entry(name).or_default().push(labels);
    }
    Exposition { series, types }
}

impl Exposition {
    /// Why `name` is not a sample of this page, suffixes explained.
    fn missing(&self, name: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix)
                && let Some(kind) = self.types.get(family)
            {
                return format!(
                    "{name} is not exported: {family} is a {kind} \
                     (a summary has {family}{{quantile}}, _sum and _count; \
                     a histogram _bucket, _sum and _count)"
                );
            }
        }
        if let Some(kind) = self.types.get(name) {
            return format!("{name} is a {kind}: query its _sum, _count or quantiles");
        }
        format!("{name} is not exported")
    }

    /// Checks that the hub exports `selector`'s metric, with each label it
    /// matches on; with `values`, also each value matched with `=` (and
    /// each alternative of a plain `a|b` regex).
    fn check(&self, selector: &Selector, values: bool) -> Result<(), String> {
        let name = &selector.name;
        if name == "up" {
            // Prometheus's own.
            return Ok(());
        }
        if !name.starts_with(PREFIX) {
            return Err(format!("{name} is not a consult-hub metric"));
        }
        let Some(series) = self.series.get(name) else {
            return Err(self.missing(name));
        };
        for matcher in &selector.matchers {
            let label = matcher.label.as_str();
            if TARGET_LABELS.contains(&label) {
                continue;
            }
            let known: BTreeSet<&str> = series
                .iter()
                .filter_map(|labels| labels.get(label).map(String::as_str))
                .collect();
            if known.is_empty() {
                return Err(format!("{name} has no label {label}"));
            }
            let wanted: Vec<&str> = match matcher.op.as_str() {
                "=" => vec![matcher.value.as_str()],
                "=~" if matcher
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') =>
                {
                    matcher.value.split('|').collect()
                }
                _ => Vec::new(),
            };
            if values {
                for value in wanted {
                    if !known.contains(value) {
                        return Err(format!(
                            "{name} has no {label}=\"{value}\" (it has {known:?})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A hub that has served a little of everything: a provider and a patient
/// chatting, an alert sent by push and SMS, a STOP by SMS and REST calls.
async fn hub_after_traffic() -> (FakeProviders, TestHub) {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id;
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.join(&id, None).await.unwrap();
    patient.set_sms_consent(true).await.unwrap();
    patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(&id, None).await.unwrap();
    provider.send(&id, "m-1", "Good morning").await.unwrap();
    patient.send(&id, "m-2", "Hello").await.unwrap();
    let notified = provider
        .alert(
            &id,
            "Please open the app now, your visit is about to start.",
            &[AlertChannel::Push, AlertChannel::Sms],
            "alert-1",
        )
        .await
        .unwrap();
    for row in &notified.notifications {
        wait_for_status(&hub, &id, &row.id, NotificationStatus::Sent).await;
    }
    // An inbound STOP, as Twilio posts it.
    let params = [
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("From", PATIENT_PHONE),
        ("To", TWILIO_FROM),
        ("Body", "STOP"),
    ];
    let response = hub
        .http
        .post(hub.url("/v1/sms/inbound"))
        .header("X-Twilio-Signature", twilio_signature(INBOUND_URL, &params))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = hub.api_get(&format!("/v1/consultations/{id}")).await;
    assert_eq!(status, 200, "{body}");
    (fake, hub)
}

#[tokio::test]
async fn every_metric_the_rules_their_tests_and_the_dashboard_query_is_exported() {
    let (_fake, hub) = hub_after_traffic().await;
    let text = hub.metrics_text().await;
    let exposition = parse_exposition(&text);
    // The traffic shows in the page: this is a hub that did things.
    assert!(
        crate::harness::metric(&text, "consult_messages_stored_total") >= 2.0,
        "{text}"
    );
    assert!(
        crate::harness::metric(&text, "consult_sms_inbound_total{outcome=\"accepted\"}") >= 1.0,
        "{text}"
    );

    // (where, expression, whether `=` values must be exported too)
    let mut checked: Vec<(String, String, bool)> = Vec::new();
    for expr in rule_exprs(&read_ops(RULES)) {
        checked.push((RULES.to_owned(), expr, true));
    }
    // The unit tests' input series: names and labels (their values are
    // made up: nodes, workers that run only on some databases).
    for line in read_ops(RULES_TEST).lines() {
        if let Some(series) = line.trim().strip_prefix("- series:") {
            checked.push((RULES_TEST.to_owned(), unquote(series.trim()), false));
        }
    }
    for (place, expr) in dashboard_queries(&dashboard()) {
        checked.push((format!("{DASHBOARD}, {place}"), expr, true));
    }

    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (place, expr, values) in &checked {
        let found = selectors(expr);
        assert!(!found.is_empty(), "{place}: no metric in {expr}");
        for selector in found {
            if let Err(problem) = exposition.check(&selector, *values) {
                problems.push(format!("{place}: {problem}\n    in {expr}"));
            }
            names.insert(selector.name);
        }
    }
    assert!(
        problems.is_empty(),
        "not in the hub's /metrics:\n{}\n\n/metrics:\n{text}",
        problems.join("\n")
    );
    // The files query a good part of what the hub exports.
    assert!(names.len() >= 25, "{names:?}");
}
