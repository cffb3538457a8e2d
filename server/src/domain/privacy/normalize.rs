//! Normalising text for the privacy check, keeping each normalised
//! character's place in the original.
//!
//! Per original character: Unicode NFKC (full-width and other compatibility
//! forms), full case folding (`caseless`), every decimal digit of any script
//! as an ASCII digit, dash punctuation as `-`, apostrophe look-alikes as `'`,
//! white space as one space; other non-ASCII characters go through the
//! UTS #39 confusable skeleton (`unicode-security`, which also drops
//! default-ignorable characters such as zero-width spaces, soft hyphens and
//! bidi controls), then marks (accents) and format characters are dropped.
//! Plain ASCII takes a fast path.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// One normalised character and the original bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NormChar {
    /// The character after normalisation.
    pub(crate) c: char,
    /// Byte offset in the original text where its source starts.
    pub(crate) start: usize,
    /// Byte offset where its source ends.
    pub(crate) end: usize,
}

/// Normalises `text`; every output character remembers its source bytes.
pub(crate) fn normalize(text: &str) -> Vec<NormChar> {
    let mut out = Vec::with_capacity(text.len());
    for (start, original) in text.char_indices() {
        let end = start + original.len_utf8();
        let mut push = |c: char| out.push(NormChar { c, start, end });
        if original.is_ascii() {
            push(ascii(original));
            continue;
        }
        for composed in std::iter::once(original).nfkc() {
            for folded in std::iter::once(composed).default_case_fold() {
                simplify(folded, &mut push);
            }
        }
    }
    out
}

/// Normalises a vocabulary term or a name the same way, as a plain string.
pub(crate) fn normalize_str(text: &str) -> String {
    normalize(text).into_iter().map(|n| n.c).collect()
}

fn ascii(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' | '\x0b' | '\x0c' => ' ',
        '`' => '\'',
        _ => c.to_ascii_lowercase(),
    }
}

/// Maps one NFKC-composed, case-folded character to what the matcher sees.
fn simplify(c: char, push: &mut impl FnMut(char)) {
    if c.is_ascii() {
        push(ascii(c));
        return;
    }
    if let Some(digit) = decimal_digit(c) {
        push(digit);
        return;
    }
    if c.is_whitespace() {
        push(' ');
        return;
    }
    match c.general_category() {
        GeneralCategory::DashPunctuation => return push('-'),
        GeneralCategory::Format => return,
        _ => {}
    }
    if is_apostrophe(c) {
        push('\'');
        return;
    }
    let mut buffer = [0; 4];
    for s in unicode_security::skeleton(c.encode_utf8(&mut buffer)) {
        if s.general_category_group() == GeneralCategoryGroup::Mark || is_filler(s) {
            continue;
        }
        if s.is_ascii() {
            push(ascii(s));
        } else {
            for lower in s.to_lowercase() {
                push(lower);
            }
        }
    }
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' | '\u{02B9}' | '\u{FF07}'
    )
}

/// Hangul fillers render as nothing but are letters, not format characters.
fn is_filler(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// The ASCII digit for any Unicode decimal digit (general category Nd).
///
/// Unicode encodes decimal digits in contiguous runs of ten starting at
/// zero, so a digit's value is its distance from the start of its run of
/// decimal digits, modulo ten.
fn decimal_digit(c: char) -> Option<char> {
    if c.general_category() != GeneralCategory::DecimalNumber {
        return None;
    }
    let mut first = u32::from(c);
    while let Some(previous) = first.checked_sub(1).and_then(char::from_u32) {
        if previous.general_category() != GeneralCategory::DecimalNumber {
            break;
        }
        first -= 1;
    }
    let value = (u32::from(c) - first) % 10;
    char::from_digit(value, 10)
}
