use super::*;

fn rules() -> PrivacyRules<'static> {
    PrivacyRules {
        names: vec!["Alex Rivera", "Dr. Morgan Lee"],
        vocabulary: Vocabulary::builtin(),
    }
}

fn kind(text: &str) -> Option<ViolationKind> {
    check(text, &rules()).map(|v| v.kind)
}

fn refused_as(expected: ViolationKind, texts: &[&str]) {
    for text in texts {
        assert_eq!(kind(text), Some(expected), "{text:?}");
    }
}

fn passes(texts: &[&str]) {
    for text in texts {
        assert_eq!(check(text, &rules()), None, "{text:?}");
    }
}

#[test]
fn generic_alert_text_passes() {
    passes(&[
        "Your provider is trying to reach you. Please open the app.",
        "I am running 10 minutes behind.",
        "Please join your appointment now",
        "Call us back at the number on your appointment card",
        "Running 10-15 minutes late, sorry",
        "Your visit is at 3:30 pm in room 12",
        "Between 10:30 - 11:00 works",
        "I'm a bit late, be there soon",
    ]);
}

#[test]
fn a_participant_name_is_refused_with_its_span() {
    let violation = check("Hi Alex, please join", &rules()).unwrap();
    assert_eq!(violation.kind, ViolationKind::Name);
    assert_eq!((violation.start, violation.end), (3, 7));
    assert_eq!(violation.excerpt, "Alex");
    assert!(violation.message().contains("characters 3..7"));
    assert!(
        !violation.message().contains("Alex"),
        "the message must not quote the name"
    );
}

#[test]
fn names_match_whole_words_case_insensitively_but_not_titles() {
    assert_eq!(kind("dr LEE is ready"), Some(ViolationKind::Name));
    assert_eq!(kind("Morganite is a gem"), None);
    assert_eq!(kind("Dr. will see you"), None);
}

fn kind_with_names(names: Vec<&'static str>, text: &str) -> Option<ViolationKind> {
    let rules = PrivacyRules {
        names,
        vocabulary: Vocabulary::builtin(),
    };
    check(text, &rules).map(|v| v.kind)
}

#[test]
fn a_surname_that_is_also_a_title_is_a_name() {
    for names in [vec!["Minh Do"], vec!["Dr Minh Do"], vec!["Pa Vang"]] {
        let text = if names[0].contains("Vang") {
            "Pa, please open the app"
        } else {
            "Mr Do, please open the app"
        };
        assert_eq!(
            kind_with_names(names.clone(), text),
            Some(ViolationKind::Name),
            "{names:?}: {text:?}"
        );
    }
}

#[test]
fn credentials_after_a_name_and_honorifics_before_it_are_not_names() {
    for (names, text) in [
        (vec!["Jane Smith, DO"], "Please do open the app"),
        (vec!["Jane Smith D.O."], "Please do open the app"),
        (vec!["Jane Smith DO"], "Please do open the app"),
        (vec!["Jane Smith MD"], "The MD on call will see you"),
        (vec!["Jane Smith, PA"], "Please open the app"),
        (vec!["Dr. Ms. Jane Smith PhD"], "The doctor will see you"),
        (vec!["Sir Jane Smith Jr"], "Miss, the provider is ready"),
    ] {
        assert_eq!(
            kind_with_names(names.clone(), text),
            None,
            "{names:?}: {text:?}"
        );
    }
    assert_eq!(
        kind_with_names(vec!["Jane Smith, DO"], "Smith is ready"),
        Some(ViolationKind::Name),
        "the name itself is still refused"
    );
}

#[test]
fn possessives_and_punctuation_do_not_hide_a_name() {
    refused_as(
        ViolationKind::Name,
        &[
            "Alex's appointment room is open now",
            "Alex\u{2019}s appointment room is open now",
            "Ms Rivera's visit can start",
            "Alex2",
            "AlexRivera please join",
            "A.l.e.x please join",
            "Al-ex please join",
        ],
    );
}

#[test]
fn invisible_characters_do_not_hide_a_name_or_term() {
    refused_as(ViolationKind::Name, &["Al\u{200b}ex, please join"]);
    refused_as(ViolationKind::HealthTerm, &["Your can\u{ad}cer screening"]);
    refused_as(ViolationKind::Name, &["Ale\u{2066}x please join"]);
}

#[test]
fn look_alike_letters_from_other_scripts_match() {
    refused_as(ViolationKind::Name, &["\u{0410}lex, please join"]);
    refused_as(ViolationKind::HealthTerm, &["Your di\u{0430}betes visit"]);
    refused_as(
        ViolationKind::Name,
        &["\u{ff32}\u{ff49}\u{ff56}\u{ff45}\u{ff52}\u{ff41} is next"],
    );
}

#[test]
fn full_width_digits_are_digits() {
    refused_as(
        ViolationKind::DigitPattern,
        &[
            "From \u{ff10}\u{ff14}/\u{ff10}\u{ff17}/\u{ff11}\u{ff19}\u{ff18}\u{ff15}",
            "Since \u{ff11}\u{ff19}\u{ff18}\u{ff14}",
            "Code \u{0663}\u{0664}\u{0665}\u{0666}",
        ],
    );
}

#[test]
fn dotted_capital_i_does_not_break_case_folding() {
    refused_as(
        ViolationKind::HealthTerm,
        &[
            "Cancer clinic: room \u{130} is ready",
            "HIV clinic \u{130} follow-up",
        ],
    );
}

#[test]
fn configured_terms_match_whatever_their_case() {
    let vocabulary = Vocabulary::build(&["Lupus", "Dermatology Clinic"]);
    let rules = PrivacyRules {
        names: vec![],
        vocabulary: &vocabulary,
    };
    assert!(check("About your lupus", &rules).is_some());
    assert!(check("The DERMATOLOGY-clinic is ready", &rules).is_some());
    let mut vocabulary = Vocabulary::build(&["Chiropody"]);
    assert!(
        check(
            "your chiropody visit",
            &PrivacyRules {
                names: vec![],
                vocabulary: &vocabulary,
            }
        )
        .is_some()
    );
    vocabulary = Vocabulary::build::<&str>(&[]);
    assert!(
        check(
            "your chiropody visit",
            &PrivacyRules {
                names: vec![],
                vocabulary: &vocabulary,
            }
        )
        .is_none()
    );
}

#[test]
fn spaced_out_letters_and_digits_are_read_through() {
    refused_as(
        ViolationKind::HealthTerm,
        &[
            "d i a b e t e s check",
            "D.I.A.B.E.T.E.S check",
            "t3st r3sult is in",
        ],
    );
    refused_as(ViolationKind::Name, &["A l e x please join", "R i v e r a"]);
    refused_as(
        ViolationKind::DigitPattern,
        &[
            "Call 555  0100",
            "Call 555_0100",
            "Call 555  010  019",
            "Call 555_010_019",
            "Call 55  50  100",
            "From 7 / 3 / 84",
            "From 04\u{2010}07\u{2010}85",
            "Call 555,010,019",
        ],
    );
}

#[test]
fn short_terms_match_whole_words_only() {
    passes(&["still waiting in room 2", "stick with the app", "Histories"]);
    refused_as(
        ViolationKind::HealthTerm,
        &[
            "Your STI screen",
            "STIs clinic",
            "H.I.V. clinic",
            "S7I check",
        ],
    );
}

#[test]
fn health_terms_are_refused_by_prefix() {
    refused_as(
        ViolationKind::HealthTerm,
        &[
            "About your diabetes check",
            "Your test result is in",
            "Your test-results",
            "HIV clinic",
        ],
    );
    assert_eq!(kind("Archive"), None, "terms match at word starts only");
    assert_eq!(kind("We can certainly help"), None, "words are not joined");
}

#[test]
fn dates_phones_and_record_numbers_are_refused() {
    refused_as(
        ViolationKind::DigitPattern,
        &[
            "From 04/07/1985",
            "since 4-7-85",
            "Call 555-0100 now",
            "Call (555) 010 0199",
            "Call +1 555 010 0199",
            "Record 12345",
            "Ref 2024",
            "Room 12345",
            "Ref AB123",
            "see you 4/7",
        ],
    );
}

#[test]
fn other_identifiers_are_refused() {
    refused_as(ViolationKind::Email, &["Write to pat.smith@example.org"]);
    refused_as(
        ViolationKind::Address,
        &["Meet at 12 Oak Street", "Apt 4b is fine"],
    );
    refused_as(
        ViolationKind::DateInWords,
        &[
            "since July 4th '85",
            "4th of July 85",
            "nineteen eighty four",
        ],
    );
    refused_as(
        ViolationKind::DigitPattern,
        &["call five five five zero one"],
    );
    refused_as(
        ViolationKind::PersonalDetail,
        &["Confirm your date of birth", "your DOB"],
    );
}

#[test]
fn small_numbers_and_times_pass() {
    passes(&[
        "Running 15 minutes late",
        "Room 3, in 5 min",
        "See you at 3:30 pm",
        "Rooms 12, 14 and 15",
        "Join on March 4 at 10:15",
        "Please go to room 1204",
        "Suite #1200, call ext. 4021 on arrival",
        "Please wait at rooms 101-102",
        "Beds 1 - 12 are in the east wing",
    ]);
}

#[test]
fn a_phone_number_after_a_place_word_is_refused() {
    refused_as(
        ViolationKind::DigitPattern,
        &[
            "Call ext 555 0199",
            "Room 7946 0958",
            "Bed 1234-5678",
            "Call ext. 555-0199",
            "Rooms 102-101",
        ],
    );
}

#[test]
fn the_span_is_reported_in_characters() {
    let violation = check("Café Alex", &rules()).unwrap();
    assert_eq!((violation.start, violation.end), (6, 10));
    assert_eq!((violation.char_start, violation.char_end), (5, 9));
    assert!(violation.message().contains("5..9"));
}

#[test]
fn the_span_names_the_original_characters() {
    let violation = check("Café news — Alex…", &rules()).unwrap();
    assert_eq!((violation.char_start, violation.char_end), (12, 16));
    assert_eq!((violation.start, violation.end), (15, 19));
    assert_eq!(violation.excerpt, "Alex");
    let violation = check("Hi \u{0410}l\u{200b}ex's", &rules()).unwrap();
    assert_eq!(violation.excerpt, "\u{0410}l\u{200b}ex");
    let violation = check("Your diabetic", &rules()).unwrap();
    assert_eq!(violation.excerpt, "diabetic");
}

#[test]
fn the_leftmost_violation_is_reported() {
    let violation = check("Call 555-0100 about Alex", &rules()).unwrap();
    assert_eq!(violation.kind, ViolationKind::DigitPattern);
    let violation = check("Alex, call 555-0100", &rules()).unwrap();
    assert_eq!(violation.kind, ViolationKind::Name);
}
