//! The letter stream names and terms are matched against: the letters and
//! digits of the normalised text, each marked with what separated it from
//! the one before.
//!
//! Separators a reader skips over join words: up to two dots, dashes,
//! underscores, middle dots or apostrophes with no space (`D.I.A`,
//! `Al-ex`, `don't`), and spaces between single letters spelled out
//! (`d i a b e t e s`). A possessive ending (`'s` after a word) is dropped.

use super::normalize::NormChar;

/// What lies between a letter and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// Nothing: the same word.
    None,
    /// Separators a reader skips: the word goes on, but a new part starts.
    Joiner,
    /// A real word break (or the start of the text).
    Space,
}

/// One letter or digit of the stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Letter {
    /// The normalised character.
    pub(crate) c: char,
    /// First original byte.
    pub(crate) start: usize,
    /// Original byte after it.
    pub(crate) end: usize,
    /// What separates it from the letter before.
    pub(crate) gap: Gap,
}

impl Letter {
    /// True when a word (or a joined part of one) starts here.
    pub(crate) fn starts_word(&self) -> bool {
        self.gap != Gap::None
    }
}

/// Builds the letter stream of normalised text.
pub(crate) fn letters(chars: &[NormChar]) -> Vec<Letter> {
    let tokens = tokens(chars);
    let mut out = Vec::with_capacity(chars.len());
    for (index, &(from, to)) in tokens.iter().enumerate() {
        let gap = match index.checked_sub(1).and_then(|i| tokens.get(i)) {
            None => Gap::Space,
            Some(&(before_from, before_to)) => {
                gap_between(chars, (before_from, before_to), (from, to))
            }
        };
        for (offset, n) in chars[from..to].iter().enumerate() {
            out.push(Letter {
                c: n.c,
                start: n.start,
                end: n.end,
                gap: if offset == 0 { gap } else { Gap::None },
            });
        }
    }
    out
}

/// Runs of alphanumerics as `[from, to)` indices, possessives left out.
fn tokens(chars: &[NormChar]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        if !chars[index].c.is_alphanumeric() {
            index += 1;
            continue;
        }
        let from = index;
        while index < chars.len() && chars[index].c.is_alphanumeric() {
            index += 1;
        }
        spans.push((from, index));
        // "'s" closing a word is a possessive: skip it.
        if is_possessive(chars, index) {
            index += 2;
        }
    }
    spans
}

fn is_possessive(chars: &[NormChar], at: usize) -> bool {
    chars.get(at).is_some_and(|n| n.c == '\'')
        && chars.get(at + 1).is_some_and(|n| n.c == 's')
        && chars.get(at + 2).is_none_or(|n| !n.c.is_alphanumeric())
}

fn is_joiner_mark(c: char) -> bool {
    matches!(c, '.' | '-' | '_' | '\'' | '\u{b7}')
}

fn gap_between(chars: &[NormChar], before: (usize, usize), after: (usize, usize)) -> Gap {
    let between = &chars[before.1..after.0];
    if between.is_empty() {
        return Gap::Joiner;
    }
    if between.len() <= 2 && between.iter().all(|n| is_joiner_mark(n.c)) {
        return Gap::Joiner;
    }
    let spaced = between.iter().all(|n| n.c == ' ' || is_joiner_mark(n.c))
        && between.iter().any(|n| n.c == ' ')
        && !between.iter().any(|n| n.c == '\'');
    if spaced && is_lone_letter(chars, before) && is_lone_letter(chars, after) {
        return Gap::Joiner;
    }
    Gap::Space
}

/// A single letter standing alone (not the `m` of `I'm`).
fn is_lone_letter(chars: &[NormChar], (from, to): (usize, usize)) -> bool {
    to == from + 1
        && chars[from].c.is_alphabetic()
        && from.checked_sub(1).is_none_or(|i| chars[i].c != '\'')
        && chars.get(to).is_none_or(|n| n.c != '\'')
}
