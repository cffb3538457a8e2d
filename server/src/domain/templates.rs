//! Quick Message templates: the clinic defaults every clinic starts with,
//! `{variable}` extraction and rendering.

use consult_protocol::ErrorCode;
use std::collections::BTreeMap;

/// Longest value of one template variable, in characters.
pub const MAX_VARIABLE_CHARS: usize = 40;
/// Longest template title, in characters.
pub const MAX_TITLE_CHARS: usize = 80;

/// `(key, title, body)` of the defaults seeded for every clinic.
pub const CLINIC_DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "running-behind",
        "Running behind",
        "I am running {minutes} minutes behind. Thank you for your patience.",
    ),
    (
        "running-early",
        "Running early",
        "I am running early and can see you {minutes} minutes sooner if you are ready.",
    ),
    (
        "unavailable",
        "Provider unavailable",
        "I have become unavailable. The clinic will contact you to reschedule.",
    ),
    (
        "not-responding",
        "Patient not responding",
        "We have not heard from you. Please open the app to continue your appointment.",
    ),
    (
        "please-enter",
        "Please enter",
        "Please enter the consultation now.",
    ),
];

/// The `{variables}` a body uses, in order of first use.
pub fn variables(body: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if is_variable_name(name) && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    names
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Fills `{variables}` in `body`.
///
/// # Errors
///
/// `invalid_value` naming a missing or unknown variable, or a value that is
/// empty, too long or has control characters.
pub fn render(
    body: &str,
    values: &BTreeMap<String, String>,
) -> Result<String, (ErrorCode, String)> {
    let needed = variables(body);
    for name in values.keys() {
        if !needed.contains(name) {
            return Err((
                ErrorCode::InvalidValue,
                format!("the template has no variable {{{name}}}"),
            ));
        }
    }
    let mut text = body.to_owned();
    for name in &needed {
        let value = values.get(name).ok_or_else(|| {
            (
                ErrorCode::InvalidValue,
                format!("the template needs a value for {{{name}}}"),
            )
        })?;
        let trimmed = value.trim();
        if trimmed.is_empty()
            || trimmed.chars().count() > MAX_VARIABLE_CHARS
            || trimmed.chars().any(char::is_control)
        {
            return Err((
                ErrorCode::InvalidValue,
                format!("{{{name}}} must be 1 to {MAX_VARIABLE_CHARS} visible characters"),
            ));
        }
        text = text.replace(&format!("{{{name}}}"), trimmed);
    }
    Ok(text)
}

/// Checks a template's title and body.
///
/// # Errors
///
/// `invalid_value` with the reason.
pub fn check(title: &str, body: &str, max_body_chars: usize) -> Result<(), (ErrorCode, String)> {
    if title.trim().is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err((
            ErrorCode::InvalidValue,
            format!("title must be 1 to {MAX_TITLE_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err((
            ErrorCode::InvalidValue,
            "title must not contain control characters".to_owned(),
        ));
    }
    super::text::check_body(body, max_body_chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn finds_variables_once_in_order() {
        assert_eq!(
            variables("In {minutes} min, room {room}; {minutes} again, {Not} {}"),
            ["minutes", "room"]
        );
    }

    #[test]
    fn renders_every_variable() {
        let text = render(CLINIC_DEFAULTS[0].2, &values(&[("minutes", "10")])).unwrap();
        assert_eq!(
            text,
            "I am running 10 minutes behind. Thank you for your patience."
        );
    }

    #[test]
    fn a_missing_or_unknown_variable_is_refused() {
        assert!(render("In {minutes} min", &values(&[])).is_err());
        assert!(render("Now", &values(&[("minutes", "5")])).is_err());
        assert!(render("In {minutes} min", &values(&[("minutes", " ")])).is_err());
        assert!(render("In {minutes} min", &values(&[("minutes", &"9".repeat(41))])).is_err());
    }

    #[test]
    fn every_default_renders_with_ten_minutes() {
        for (_, title, body) in CLINIC_DEFAULTS {
            let needed = variables(body);
            let given: BTreeMap<_, _> = needed
                .iter()
                .map(|n| (n.clone(), "10".to_owned()))
                .collect();
            assert!(render(body, &given).is_ok(), "{title}");
            assert!(check(title, body, 500).is_ok());
        }
    }
}
