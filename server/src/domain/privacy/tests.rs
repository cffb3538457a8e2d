use super::*;

fn rules() -> PrivacyRules<'static> {
    PrivacyRules {
        names: vec!["Alex Rivera", "Dr. Morgan Lee"],
        health_terms: DEFAULT_HEALTH_TERMS.to_vec(),
    }
}

fn kind(text: &str) -> Option<ViolationKind> {
    check(text, &rules()).map(|v| v.kind)
}

#[test]
fn generic_alert_text_passes() {
    for text in [
        "Your provider is trying to reach you. Please open the app.",
        "I am running 10 minutes behind.",
        "Please join your appointment now",
        "Call us back at the number on your appointment card",
    ] {
        assert_eq!(check(text, &rules()), None, "{text}");
    }
}

#[test]
fn a_participant_name_is_refused_with_its_span() {
    let violation = check("Hi Alex, please join", &rules()).unwrap();
    assert_eq!(violation.kind, ViolationKind::Name);
    assert_eq!((violation.start, violation.end), (3, 7));
    assert_eq!(violation.excerpt, "Alex");
    assert!(violation.message().contains("\"Alex\""));
}

#[test]
fn names_match_whole_words_case_insensitively_but_not_titles() {
    assert_eq!(kind("dr LEE is ready"), Some(ViolationKind::Name));
    assert_eq!(kind("Morganite is a gem"), None);
    assert_eq!(kind("Dr. will see you"), None);
}

#[test]
fn health_terms_are_refused_by_prefix() {
    assert_eq!(
        kind("About your diabetes check"),
        Some(ViolationKind::HealthTerm)
    );
    assert_eq!(
        kind("Your test result is in"),
        Some(ViolationKind::HealthTerm)
    );
    assert_eq!(kind("HIV clinic"), Some(ViolationKind::HealthTerm));
    assert_eq!(kind("Archive"), None, "terms match at word starts only");
}

#[test]
fn dates_phones_and_record_numbers_are_refused() {
    for text in [
        "Born 04/07/1985",
        "born 4-7-85",
        "Call 555-0100 now",
        "Call (555) 010 0199",
        "Record 12345",
        "MRN 2024",
    ] {
        assert_eq!(kind(text), Some(ViolationKind::DigitPattern), "{text}");
    }
}

#[test]
fn small_numbers_pass() {
    assert_eq!(kind("Running 15 minutes late"), None);
    assert_eq!(kind("Room 3, in 5 min"), None);
}

#[test]
fn configured_terms_extend_the_list() {
    let rules = PrivacyRules {
        names: vec![],
        health_terms: vec!["dermatology"],
    };
    assert!(check("Your dermatology visit", &rules).is_some());
}

#[test]
fn the_span_is_reported_in_characters() {
    let violation = check("Café Alex", &rules()).unwrap();
    assert_eq!((violation.start, violation.end), (6, 10));
    assert_eq!((violation.char_start, violation.char_end), (5, 9));
    assert!(violation.message().contains("5..9"));
}
