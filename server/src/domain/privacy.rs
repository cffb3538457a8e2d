//! The privacy check of text that leaves the hub by push or SMS.
//!
//! Alert, Quick Message and push text is read on lock screens and by
//! whoever holds the phone, so it must not carry names, health details or
//! identifiers. The text is normalised first (`normalize`: NFKC, full case
//! folding, confusable skeleton, invisible characters dropped, every decimal
//! digit as ASCII), keeping each character's original offsets; then:
//!
//! - names (`names`): every part of the participants' names, at word starts;
//! - vocabulary (`vocabulary`): built-in health and personal terms plus the
//!   configured ones, short terms as whole words, longer ones as prefixes;
//! - patterns (`patterns`): dates, phone and record numbers, codes, dates in
//!   words, e-mail and street addresses.
//!
//! Words are read through separators a reader skips (`letters`): spaced-out
//! single letters, dots, dashes, underscores, possessive endings; a digit
//! inside a word may stand for a letter (`t3st`). The first offending span
//! is reported by its byte and character (code point) offsets.

mod letters;
mod names;
mod normalize;
mod patterns;
mod trie;
mod vocabulary;

pub use vocabulary::{BUILTIN_SOURCE, TermKind, Vocabulary};

use letters::Letter;
use names::Names;
use patterns::Pattern;

/// What kind of detail was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A participant's name.
    Name,
    /// A health term.
    HealthTerm,
    /// A personal identifier term (date of birth, record number).
    PersonalDetail,
    /// A date, phone number, record number or code.
    DigitPattern,
    /// A date written in words.
    DateInWords,
    /// An e-mail address.
    Email,
    /// A street address.
    Address,
}

impl ViolationKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Name => "a name",
            Self::HealthTerm => "a health detail",
            Self::PersonalDetail => "a personal detail",
            Self::DigitPattern => "a number that looks like a date, phone or record number",
            Self::DateInWords => "a date",
            Self::Email => "an e-mail address",
            Self::Address => "a street address",
        }
    }

    /// A stable label for logs and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::HealthTerm => "health",
            Self::PersonalDetail => "personal",
            Self::DigitPattern => "number",
            Self::DateInWords => "date",
            Self::Email => "email",
            Self::Address => "address",
        }
    }
}

/// The first offending span of a refused text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What was found.
    pub kind: ViolationKind,
    /// Byte offset where it starts.
    pub start: usize,
    /// Byte offset where it ends.
    pub end: usize,
    /// Character (Unicode code point) offset where it starts: what the
    /// error message and the wire carry.
    pub char_start: usize,
    /// Character offset where it ends (exclusive).
    pub char_end: usize,
    /// The offending text itself.
    pub excerpt: String,
}

impl Violation {
    /// A message for the sender naming the offending span by its character
    /// offsets. It does not quote the span: the sender has the text, and a
    /// message that never holds the name cannot leak it wherever it goes.
    pub fn message(&self) -> String {
        format!(
            "the text contains {} at characters {}..{}; alerts must not carry names or health details",
            self.kind.describe(),
            self.char_start,
            self.char_end,
        )
    }
}

/// What the check compares against.
#[derive(Debug, Clone)]
pub struct PrivacyRules<'a> {
    /// Display and preferred names of the participants.
    pub names: Vec<&'a str>,
    /// The compiled terms.
    pub vocabulary: &'a Vocabulary,
}

/// Checks `text`; returns the first (leftmost) violation found, if any.
pub fn check(text: &str, rules: &PrivacyRules<'_>) -> Option<Violation> {
    let chars = normalize::normalize(text);
    let letters = letters::letters(&chars);
    let names = Names::new(&rules.names);
    let in_words = find_in_letters(&letters, &names, rules.vocabulary);
    let words = patterns::words(&chars);
    let pattern = patterns::find(&chars, &words).and_then(|(from, to, pattern)| {
        let first = chars.get(from)?;
        let last = chars.get(to.checked_sub(1)?)?;
        let kind = match pattern {
            Pattern::Number => ViolationKind::DigitPattern,
            Pattern::DateInWords => ViolationKind::DateInWords,
            Pattern::Email => ViolationKind::Email,
            Pattern::Address => ViolationKind::Address,
        };
        Some((first.start, last.end, kind))
    });
    let (start, end, kind) = match (in_words, pattern) {
        (Some(a), Some(b)) => {
            if b.0 < a.0 {
                b
            } else {
                a
            }
        }
        (a, b) => a.or(b)?,
    };
    Some(violation(text, kind, start, end))
}

/// The leftmost name or vocabulary term: original byte span and kind.
fn find_in_letters(
    letters: &[Letter],
    names: &Names,
    vocabulary: &Vocabulary,
) -> Option<(usize, usize, ViolationKind)> {
    for start in 0..letters.len() {
        if !letters[start].starts_word() {
            continue;
        }
        if let Some(end) = names.match_at(letters, start) {
            return span(letters, start, end, ViolationKind::Name);
        }
        if let Some((end, entry)) = vocabulary.trie.match_at(letters, start, &|_, _| true) {
            let kind = match TermKind::from_tag(entry.tag) {
                TermKind::Health => ViolationKind::HealthTerm,
                TermKind::Personal => ViolationKind::PersonalDetail,
            };
            // A prefix term is reported with the rest of its word.
            return span(letters, start, trie::part_end(letters, end), kind);
        }
    }
    None
}

fn span(
    letters: &[Letter],
    start: usize,
    end: usize,
    kind: ViolationKind,
) -> Option<(usize, usize, ViolationKind)> {
    let first = letters.get(start)?;
    let last = letters.get(end.checked_sub(1)?)?;
    Some((first.start, last.end, kind))
}

fn violation(text: &str, kind: ViolationKind, start: usize, end: usize) -> Violation {
    let chars_before = |offset: usize| {
        text.get(..offset)
            .map_or(0, |prefix| prefix.chars().count())
    };
    Violation {
        kind,
        start,
        end,
        char_start: chars_before(start),
        char_end: chars_before(end),
        excerpt: text.get(start..end).unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod corpus_tests;
