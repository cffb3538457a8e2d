//! `consult-hub config --print-defaults`: every setting of the config tree
//! with its default and one line of help, as commented TOML the hub loads
//! back. The values come from serializing the config, the help from
//! [`reference`](super::reference); hidden settings (secrets) are printed
//! commented out, never with their value.

use super::Config;
use super::reference::{self, Leaf, ReferenceError, SETTINGS};
use serde_json::{Map, Value};

/// The first lines of the printed reference.
const HEADER: &str = "\
# consult-hub configuration: every setting with its default.
# A commented-out `key = value` line is unset by default (or a secret, never
# printed); its value is an example.
";

/// The built-in defaults as a commented TOML file.
///
/// # Errors
///
/// [`ReferenceError`] when the config and the help in
/// [`reference::SETTINGS`] disagree (a unit test keeps them in step).
pub fn defaults_toml() -> Result<String, ReferenceError> {
    render(&Config::default())
}

/// `config` as a commented TOML file, in the order of [`SETTINGS`]:
/// top-level settings first, then each section.
fn render(config: &Config) -> Result<String, ReferenceError> {
    let tree = match serde_json::to_value(config) {
        Ok(Value::Object(tree)) => tree,
        Ok(other) => return Err(ReferenceError::Serialize(other.to_string())),
        Err(error) => return Err(ReferenceError::Serialize(error.to_string())),
    };
    let leaves = reference::check(&tree, SETTINGS)?;
    let mut out = String::from(HEADER);
    let mut sections: Vec<&str> = Vec::new();
    for leaf in &leaves {
        match leaf.setting.key.split_once('.') {
            None => {
                out.push('\n');
                write_leaf(&mut out, leaf.setting.key, leaf)?;
            }
            Some((section, _)) if !sections.contains(&section) => sections.push(section),
            Some(_) => {}
        }
    }
    for section in sections {
        out.push_str(&format!("\n[{section}]\n"));
        let names = leaves.iter().filter_map(|leaf| {
            let (of, name) = leaf.setting.key.split_once('.')?;
            (of == section).then_some((name, leaf))
        });
        for (index, (name, leaf)) in names.enumerate() {
            if index > 0 {
                out.push('\n');
            }
            write_leaf(&mut out, name, leaf)?;
        }
    }
    Ok(out)
}

/// The help line and the `name = value` line (commented out when unset or
/// hidden) of one setting.
fn write_leaf(out: &mut String, name: &str, leaf: &Leaf<'_>) -> Result<(), ReferenceError> {
    let setting = leaf.setting;
    let unset = leaf.value.is_null() || (setting.hidden && is_empty_list(leaf.value));
    out.push_str(&format!("# {}\n", setting.help));
    if !unset && !setting.hidden {
        let value = toml_value(leaf.value).map_err(|problem| {
            ReferenceError::Mismatch(vec![format!("`{}`: {problem}", setting.key)])
        })?;
        out.push_str(&format!("{name} = {value}\n"));
        return Ok(());
    }
    let example = setting.example.ok_or_else(|| {
        ReferenceError::Mismatch(vec![format!("`{}` has no example", setting.key)])
    })?;
    let note = match (unset, setting.when_unset) {
        (false, _) => "set; the value is not printed".to_owned(),
        (true, "") => "unset".to_owned(),
        (true, meaning) => format!("unset: {meaning}"),
    };
    out.push_str(&format!("# {name} = {example}  # {note}\n"));
    Ok(())
}

fn is_empty_list(value: &Value) -> bool {
    value.as_array().is_some_and(Vec::is_empty)
}

/// A serialized value as a TOML value: tables inline.
fn toml_value(value: &Value) -> Result<String, String> {
    Ok(match value {
        Value::Null => return Err("TOML has no value for `None` inside a list".to_owned()),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => toml_string(text),
        Value::Array(items) => {
            let items: Result<Vec<_>, _> = items.iter().map(toml_value).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Object(table) => toml_table(table)?,
    })
}

/// An inline table; `None` members are left out, as TOML has no null.
fn toml_table(table: &Map<String, Value>) -> Result<String, String> {
    let mut members = Vec::new();
    for (key, value) in table.iter().filter(|(_, value)| !value.is_null()) {
        members.push(format!("{} = {}", toml_key(key), toml_value(value)?));
    }
    Ok(if members.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{ {} }}", members.join(", "))
    })
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml_string(key)
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};
    use secrecy::SecretString;

    fn load(text: &str) -> Config {
        Figment::from(Toml::string(text))
            .extract()
            .unwrap_or_else(|error| panic!("{error}\n{text}"))
    }

    fn same(a: &Config, b: &Config) -> bool {
        serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
    }

    #[test]
    fn the_printed_defaults_load_back_as_the_defaults() {
        let text = defaults_toml().unwrap();
        let loaded = load(&text);
        loaded.validate().unwrap();
        assert!(same(&loaded, &Config::default()), "{text}");
    }

    #[test]
    fn each_setting_is_its_help_then_its_value_and_unset_ones_are_commented_out() {
        let text = defaults_toml().unwrap();
        assert!(
            text.contains(
                "\n[session]\n# Time to send hello (close 4000), in milliseconds.\n\
                 handshake_timeout_ms = 5000\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nlisten = \"127.0.0.1:8080\"\n"), "{text}");
        assert!(
            text.contains("\n# jwt_secret = \"\"  # unset: generated into the key file\n"),
            "{text}"
        );
        assert!(
            text.contains("\n# api_keys = []  # unset: one generated into the key file\n"),
            "{text}"
        );
        assert!(
            text.contains("\nalert_push_limit = { max = 3, window_secs = 600 }\n"),
            "{text}"
        );
        assert!(
            text.contains("\n# redis_url = \"redis://127.0.0.1:6379\"  # unset\n"),
            "{text}"
        );
        assert!(text.find("\nlisten_backlog") < text.find("\n["), "{text}");
    }

    #[test]
    fn set_secrets_are_printed_commented_out_without_their_value() {
        let mut config = Config::default();
        config.auth.jwt_secret = Some(SecretString::from("jwt-marker".to_owned()));
        config.auth.api_keys = vec![SecretString::from("key-marker".to_owned())];
        config.broker.cluster_key = Some(SecretString::from("cluster-marker".to_owned()));
        let text = render(&config).unwrap();
        assert!(!text.contains("marker"), "{text}");
        assert!(!text.contains(crate::config::REDACTED), "{text}");
        assert!(
            text.contains("\n# jwt_secret = \"\"  # set; the value is not printed\n"),
            "{text}"
        );
        assert!(same(&load(&text), &Config::default()), "{text}");
    }

    #[test]
    fn strings_are_escaped_so_any_value_loads_back() {
        let mut config = Config::default();
        config.log.filter = "a\"b\\c\nd\te\u{1}f\u{7f}g – ü".to_owned();
        config.notify.health_terms = vec!["x\"y".to_owned(), String::new()];
        let text = render(&config).unwrap();
        assert!(same(&load(&text), &config), "{text}");
    }
}
