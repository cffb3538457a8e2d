//! The privacy check measured on its corpus
//! (`tests/fixtures/privacy/corpus.tsv`): recall on the texts that must be
//! refused, false refusals on the generic clinic messages (printed before
//! the timings), and the time of one check on a 160-character alert, on
//! twice and four times that (it should grow linearly), and on the whole
//! corpus per text. The figures are in docs/notifications.md.
//!
//! ```sh
//! cargo bench -p consult-hub --bench privacy
//! ```

// A benchmark's set-up failing is a reason to stop it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use consult_hub::domain::privacy::{self, PrivacyRules, Vocabulary};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const CORPUS: &str = include_str!("../tests/fixtures/privacy/corpus.tsv");

/// A generic 160-character alert with no violation (the check's worst case:
/// it reads everything).
const ALERT: &str = "Your provider is running about 10 minutes late today. Please keep the app open, we will call you in room 12 at 3:30 pm. Thank you for your patience, speak soon.";

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let close = after.find('}').unwrap();
        out.push(char::from_u32(u32::from_str_radix(&after[..close], 16).unwrap()).unwrap());
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn corpus() -> (Vec<String>, Vec<(bool, String)>) {
    let mut names = vec!["Alex Rivera".to_owned(), "Dr. Morgan Lee".to_owned()];
    let mut cases = Vec::new();
    for line in CORPUS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (label, text) = line.split_once('\t').unwrap();
        match label {
            "@name" => names.push(text.to_owned()),
            _ => cases.push((label != "pass", unescape(text))),
        }
    }
    (names, cases)
}

fn bench(c: &mut Criterion) {
    let (names, cases) = corpus();
    let vocabulary = Vocabulary::builtin();
    let rules = PrivacyRules {
        names: names.iter().map(String::as_str).collect(),
        vocabulary,
    };
    let refuse = cases.iter().filter(|(r, _)| *r).count();
    let caught = cases
        .iter()
        .filter(|(r, t)| *r && privacy::check(t, &rules).is_some())
        .count();
    let generic = cases.len() - refuse;
    let false_refusals = cases
        .iter()
        .filter(|(r, t)| !*r && privacy::check(t, &rules).is_some())
        .count();
    println!(
        "privacy corpus: recall {caught}/{refuse} ({:.1} %), false refusals {false_refusals}/{generic} ({:.1} %), vocabulary {} terms",
        100.0 * caught as f64 / refuse as f64,
        100.0 * false_refusals as f64 / generic as f64,
        vocabulary.len()
    );
    assert_eq!(ALERT.chars().count(), 160);

    let mut group = c.benchmark_group("privacy_check");
    for times in [1, 2, 4] {
        let text = vec![ALERT; times].join(" ");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("generic_alert_chars", 160 * times),
            &text,
            |b, text| b.iter(|| privacy::check(black_box(text), &rules)),
        );
    }
    group.throughput(Throughput::Elements(cases.len() as u64));
    group.bench_function("whole_corpus", |b| {
        b.iter(|| {
            cases
                .iter()
                .filter(|(_, t)| privacy::check(black_box(t), &rules).is_some())
                .count()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
