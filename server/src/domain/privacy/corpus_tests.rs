//! Every label of the privacy corpus (`tests/fixtures/privacy/corpus.tsv`)
//! holds: each must-refuse text is refused as its label says, each generic
//! clinic message passes.

use super::*;

const CORPUS: &str = include_str!("../../../tests/fixtures/privacy/corpus.tsv");

/// Replaces `\u{…}` escapes with their characters.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let close = after.find('}').expect("closed escape");
        let code = u32::from_str_radix(&after[..close], 16).expect("hex escape");
        out.push(char::from_u32(code).expect("a character"));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn label_of(kind: Option<ViolationKind>) -> &'static str {
    kind.map_or("pass", ViolationKind::as_str)
}

#[test]
fn every_corpus_label_holds() {
    let mut names = vec!["Alex Rivera".to_owned(), "Dr. Morgan Lee".to_owned()];
    let mut cases = Vec::new();
    for line in CORPUS.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (label, text) = line.split_once('\t').expect("label<TAB>text");
        if label == "@name" {
            names.push(text.to_owned());
        } else {
            cases.push((label, unescape(text)));
        }
    }
    let rules = PrivacyRules {
        names: names.iter().map(String::as_str).collect(),
        vocabulary: Vocabulary::builtin(),
    };
    let refusals = cases.iter().filter(|(label, _)| *label != "pass").count();
    let generic = cases.len() - refusals;
    assert!(refusals >= 300 && generic >= 300, "{refusals} / {generic}");
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(label, text)| {
            let got = label_of(check(text, &rules).map(|v| v.kind));
            (got != *label).then(|| format!("{label} -> {got}: {text:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
