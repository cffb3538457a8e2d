//! The privacy check of text that leaves the hub by push or SMS.
//!
//! Alert and SMS text is read on lock screens and by whoever holds the
//! phone, so it must not carry names or health details. The check refuses
//! text containing a participant's name (any word of it of two letters or
//! more, whole-word, case-insensitive), a configured health term
//! (case-insensitive, whole-word prefix match: "diabet" matches
//! "diabetes"), or digit patterns like dates of birth, phone numbers and
//! record numbers (a date with separators, or four or more digits in a
//! row, counting digits joined by spaces, dashes, dots or parentheses).
//! Small numbers such as "10 minutes" pass.

/// Health terms refused by default; configuration can add more.
pub const DEFAULT_HEALTH_TERMS: &[&str] = &[
    "diagnos",
    "cancer",
    "tumor",
    "tumour",
    "hiv",
    "aids",
    "std",
    "sti",
    "pregnan",
    "abortion",
    "diabet",
    "depress",
    "anxiety",
    "psychiat",
    "mental health",
    "schizo",
    "bipolar",
    "dementia",
    "alzheimer",
    "opioid",
    "overdose",
    "rehab",
    "addiction",
    "chemo",
    "biopsy",
    "positive",
    "negative",
    "test result",
    "lab result",
    "prescription",
    "medication",
    "dosage",
    "insulin",
    "hepatitis",
    "covid",
    "infection",
    "surgery",
];

/// What kind of detail was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A participant's name.
    Name,
    /// A health term.
    HealthTerm,
    /// A date, phone number, record number or similar.
    DigitPattern,
}

impl ViolationKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Name => "a name",
            Self::HealthTerm => "a health detail",
            Self::DigitPattern => "a number that looks like a date, phone or record number",
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
    /// Character offset where it starts (what the sender sees).
    pub char_start: usize,
    /// Character offset where it ends.
    pub char_end: usize,
    /// The offending text itself.
    pub excerpt: String,
}

impl Violation {
    /// A message for the sender naming the offending span.
    pub fn message(&self) -> String {
        format!(
            "the text contains {} at characters {}..{}: \"{}\"; alerts must not carry names or health details",
            self.kind.describe(),
            self.char_start,
            self.char_end,
            self.excerpt
        )
    }
}

/// What the check compares against.
#[derive(Debug, Clone, Default)]
pub struct PrivacyRules<'a> {
    /// Display names of the participants.
    pub names: Vec<&'a str>,
    /// Health terms (lower case).
    pub health_terms: Vec<&'a str>,
}

/// Checks `text`; returns the first violation found, if any.
pub fn check(text: &str, rules: &PrivacyRules<'_>) -> Option<Violation> {
    let lower = text.to_lowercase();
    // Lower-casing can change byte lengths for some scripts; fall back to the
    // original text for offsets in that rare case.
    let haystack = if lower.len() == text.len() {
        &lower
    } else {
        text
    };
    let words = words(haystack);
    find_name(text, &words, rules)
        .or_else(|| find_health_term(text, haystack, rules))
        .or_else(|| find_digit_pattern(text))
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

/// Words as (start, end) byte ranges: runs of alphanumerics and apostrophes.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (index, c) in text.char_indices() {
        let inside = c.is_alphanumeric() || c == '\'';
        match (inside, start) {
            (true, None) => start = Some(index),
            (false, Some(begin)) => {
                spans.push((begin, index));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(begin) = start {
        spans.push((begin, text.len()));
    }
    spans
}

fn find_name(text: &str, words: &[(usize, usize)], rules: &PrivacyRules<'_>) -> Option<Violation> {
    let name_parts: Vec<String> = rules
        .names
        .iter()
        .flat_map(|name| name.split(|c: char| !c.is_alphanumeric() && c != '\''))
        .filter(|part| part.chars().count() >= 2 && !is_title(part))
        .map(str::to_lowercase)
        .collect();
    words.iter().find_map(|&(start, end)| {
        let word = text.get(start..end)?.to_lowercase();
        name_parts
            .contains(&word)
            .then(|| violation(text, ViolationKind::Name, start, end))
    })
}

/// Honorifics in display names ("Dr.") are not identifying on their own.
fn is_title(part: &str) -> bool {
    matches!(
        part.to_lowercase().as_str(),
        "dr" | "mr" | "mrs" | "ms" | "mx" | "md" | "np" | "rn" | "do" | "pa"
    )
}

fn find_health_term(text: &str, lower: &str, rules: &PrivacyRules<'_>) -> Option<Violation> {
    let mut found: Option<(usize, usize)> = None;
    for term in &rules.health_terms {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let mut from = 0;
        while let Some(offset) = lower.get(from..).and_then(|rest| rest.find(term)) {
            let start = from + offset;
            let at_word_start = lower[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric());
            if at_word_start {
                let end = lower[start..]
                    .char_indices()
                    .find(|&(i, c)| i >= term.len() && !c.is_alphanumeric())
                    .map_or(lower.len(), |(i, _)| start + i);
                if found.is_none_or(|(s, _)| start < s) {
                    found = Some((start, end));
                }
                break;
            }
            from = start + term.len().max(1);
        }
    }
    found.map(|(start, end)| violation(text, ViolationKind::HealthTerm, start, end))
}

fn find_digit_pattern(text: &str) -> Option<Violation> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        let start = index;
        let mut digits = 0;
        let mut separators = 0;
        let mut end = index;
        let mut cursor = index;
        while cursor < bytes.len() {
            let byte = bytes[cursor];
            if byte.is_ascii_digit() {
                digits += 1;
                end = cursor + 1;
            } else if matches!(byte, b'-' | b'/' | b'.' | b' ' | b'(' | b')')
                && bytes.get(cursor + 1).is_some_and(u8::is_ascii_digit)
            {
                if byte == b'/' || byte == b'-' || byte == b'.' {
                    separators += 1;
                }
            } else {
                break;
            }
            cursor += 1;
        }
        let looks_like_date = separators >= 2 && digits >= 4;
        if digits >= 4 || looks_like_date {
            return Some(violation(text, ViolationKind::DigitPattern, start, end));
        }
        index = cursor.max(index + 1);
    }
    None
}

#[cfg(test)]
mod tests;
