//! `consult-hub config --print-defaults`: the printed reference loads back
//! as the defaults, needs no database or key file, and agrees with the
//! settings tables of docs/operations.md (`### Keys`): the same keys, each
//! with its `CONSULT_…` variable and its default.

use super::run;
use consult_hub::Config;
use figment::Figment;
use figment::providers::{Format, Toml};
use std::collections::BTreeMap;
use std::path::Path;

/// What the reference prints for one setting.
#[derive(Debug, PartialEq)]
enum Printed {
    /// `key = value`: the default, as TOML.
    Default(String),
    /// `# key = example  # unset…`: no default (or a secret).
    Unset,
}

/// Every setting of the printed reference, by its dotted key.
fn parse_reference(text: &str) -> BTreeMap<String, Printed> {
    let mut settings = BTreeMap::new();
    let mut section: Option<&str> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name);
            continue;
        }
        let (printed, body) = match line.strip_prefix("# ") {
            Some(rest) => match rest.split_once("  # unset") {
                Some((setting, _)) => (None, setting),
                // A help line.
                None => continue,
            },
            None if line.is_empty() => continue,
            None => (Some(()), line),
        };
        let (name, value) = body
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not a setting: {line}"));
        let key = match section {
            Some(section) => format!("{section}.{name}"),
            None => name.to_owned(),
        };
        let printed = match printed {
            Some(()) => Printed::Default(value.to_owned()),
            None => Printed::Unset,
        };
        assert!(settings.insert(key, printed).is_none(), "twice: {line}");
    }
    settings
}

/// The cells of a Markdown table row (`\|` inside a cell is not a border).
fn cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().unwrap().push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    if cells.last().is_some_and(|cell| cell.trim().is_empty()) {
        cells.pop();
    }
    cells
        .into_iter()
        .map(|cell| cell.trim().to_owned())
        .collect()
}

/// The backticked spans of a cell, in order.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// One row of a `| key | environment | default | meaning |` table.
#[derive(Debug)]
struct DocRow {
    key: String,
    environment: String,
    default: String,
}

/// The rows of every `| key | environment | default | meaning |` table in
/// the `### Keys` section of docs/operations.md.
fn documented_keys(operations: &str) -> Vec<DocRow> {
    let section = operations
        .split_once("\n### Keys\n")
        .map(|(_, rest)| rest)
        .expect("docs/operations.md has a `### Keys` section");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            break;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = cells(line);
        if cells.iter().all(|cell| cell.starts_with("---")) {
            continue;
        }
        if !in_table {
            in_table = cells == ["key", "environment", "default", "meaning"];
            continue;
        }
        // A row naming two keys reads as one key that does not exist.
        rows.push(DocRow {
            key: code_spans(&cells[0]).join(", "),
            environment: cells[1].clone(),
            default: cells[2].clone(),
        });
    }
    rows
}

/// A value compared without spaces, a string without its quotes.
fn normalized(value: &str) -> String {
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    value.split_whitespace().collect()
}

/// What is wrong with the documented keys, measured against the reference.
fn disagreements(printed: &BTreeMap<String, Printed>, rows: &[DocRow]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut documented = BTreeMap::new();
    for row in rows {
        if documented.insert(row.key.as_str(), row).is_some() {
            problems.push(format!("`{}` is documented twice", row.key));
        }
    }
    for key in printed.keys() {
        if !documented.contains_key(key.as_str()) {
            problems.push(format!("`{key}` is not documented"));
        }
    }
    for row in rows {
        let key = &row.key;
        let Some(printed) = printed.get(key) else {
            problems.push(format!("`{key}` is documented but no setting"));
            continue;
        };
        let variable = format!("CONSULT_{}", key.to_uppercase().replace('.', "__"));
        // A table's fields may also be set one by one: `CONSULT_NOTIFY__FCM__…`.
        let fields = format!("{variable}__…");
        match code_spans(&row.environment).first() {
            Some(&named) if named == variable || named == fields => {}
            named => problems.push(format!("`{key}`: environment {named:?}, not `{variable}`")),
        }
        let documented_default = code_spans(&row.default).first().map(|v| normalized(v));
        match printed {
            Printed::Unset if !row.default.starts_with("unset") => problems.push(format!(
                "`{key}` is unset by default, the docs say {:?}",
                row.default
            )),
            Printed::Default(value)
                if row.default.starts_with("unset")
                    || documented_default != Some(normalized(value)) =>
            {
                problems.push(format!(
                    "`{key}` defaults to {value}, the docs say {:?}",
                    row.default
                ));
            }
            _ => {}
        }
    }
    problems
}

fn operations_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn config_print_defaults_loads_back_as_the_defaults_and_matches_the_operations_guide() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["config", "--print-defaults"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let reference = String::from_utf8(output.stdout).unwrap();
    assert!(
        reference.contains("\n[session]\n# Time to send hello (close 4000), in milliseconds.\n"),
        "{reference}"
    );
    assert_eq!(
        files_in(dir.path()),
        Vec::<String>::new(),
        "no database, no key file"
    );

    // The printed file is a valid configuration of exactly the defaults.
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("reference.toml");
    std::fs::write(&file, &reference).unwrap();
    let file_arg = file.to_str().unwrap();
    let output = run(dir.path(), &["--config", file_arg, "config", "--check"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
    let loaded: Config = Figment::from(Toml::file(&file)).extract().unwrap();
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(Config::default()).unwrap()
    );

    // `--check` reads the file: a misspelt key in it is refused.
    std::fs::write(&file, format!("listen_port = 1\n{reference}")).unwrap();
    let output = run(dir.path(), &["--config", file_arg, "config", "--check"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("listen_port"), "{stderr}");

    // docs/operations.md documents the same settings with the same defaults.
    let printed = parse_reference(&reference);
    assert!(printed.len() > 50, "{printed:?}");
    assert_eq!(printed["auth.jwt_secret"], Printed::Unset);
    let rows = documented_keys(&operations_md());
    let problems = disagreements(&printed, &rows);
    assert!(
        problems.is_empty(),
        "docs/operations.md `### Keys` disagrees with `config --print-defaults`:\n  - {}",
        problems.join("\n  - ")
    );
}

#[test]
fn the_comparison_notices_a_missing_key_a_wrong_variable_and_a_wrong_default() {
    let printed = parse_reference(
        "# Help.\nlisten = \"127.0.0.1:8080\"\n\n[auth]\n# Help.\n# jwt_secret = \"\"  # unset: x\n\n\
         # Help.\nleeway_secs = 30\n",
    );
    let rows = documented_keys(
        "\n### Keys\n\n| key | environment | default | meaning |\n| --- | --- | --- | --- |\n\
         | `listen` | `CONSULT_LISTEN` | `127.0.0.1:8080` | address |\n\
         | `auth.jwt_secret` | `CONSULT_AUTH_JWT_SECRET` | unset: generated | secret |\n\
         | `auth.issuer` | `CONSULT_AUTH__ISSUER` | unset | iss |\n\n\
         | key | required | meaning |\n| --- | --- | --- |\n| `notify.fcm.base_url` | no | root |\n",
    );
    let problems = disagreements(&printed, &rows).join("\n");
    assert!(
        problems.contains("`auth.leeway_secs` is not documented"),
        "{problems}"
    );
    assert!(
        problems.contains("`auth.issuer` is documented but no setting"),
        "{problems}"
    );
    assert!(problems.contains("CONSULT_AUTH_JWT_SECRET"), "{problems}");
    assert!(!problems.contains("notify.fcm"), "{problems}");

    let rows = documented_keys(
        "\n### Keys\n\n| key | environment | default | meaning |\n| --- | --- | --- | --- |\n\
         | `listen` | `CONSULT_LISTEN` | `0.0.0.0:8080` | address |\n\
         | `auth.jwt_secret` | `CONSULT_AUTH__JWT_SECRET` | `\"\"` | secret |\n\
         | `auth.leeway_secs` | `CONSULT_AUTH__LEEWAY_SECS` | `30`: half a minute | skew |\n",
    );
    let problems = disagreements(&printed, &rows);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("`listen` defaults to"), "{problems:?}");
    assert!(
        problems[1].contains("`auth.jwt_secret` is unset"),
        "{problems:?}"
    );
}

#[test]
fn the_example_file_in_the_operations_guide_names_only_real_settings() {
    let operations = operations_md();
    let example = operations
        .split_once("\n### Example file\n")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(toml, _)| toml)
        .expect("docs/operations.md has a TOML example file");
    let loaded: Result<Config, _> = Figment::from(Toml::string(example)).extract();
    assert!(loaded.is_ok(), "{loaded:?}");
}
