//! Identifier patterns in normalised text: digit runs (dates, phone,
//! record numbers), record-like codes, dates in words, spelled-out digit
//! strings, e-mail addresses and street addresses.
//!
//! Each finder returns `[from, to)` indices into the normalised characters.

use super::normalize::NormChar;

/// What a pattern found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Digits that look like a date, phone or record number, or a code.
    Number,
    /// A date written with a month name or a year in words.
    DateInWords,
    /// An e-mail address.
    Email,
    /// A street address.
    Address,
}

/// A word of the normalised text: `[from, to)` and its letters.
#[derive(Debug, Clone)]
pub(crate) struct Word {
    from: usize,
    to: usize,
    text: String,
}

/// Alphanumeric runs of the normalised text.
pub(crate) fn words(chars: &[NormChar]) -> Vec<Word> {
    let mut words = Vec::new();
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
        let text = chars[from..index].iter().map(|n| n.c).collect();
        words.push(Word {
            from,
            to: index,
            text,
        });
    }
    words
}

/// The earliest pattern found, as `(from, to, pattern)`.
pub(crate) fn find(chars: &[NormChar], words: &[Word]) -> Option<(usize, usize, Pattern)> {
    [
        email(chars).map(|(f, t)| (f, t, Pattern::Email)),
        digits(chars).map(|(f, t)| (f, t, Pattern::Number)),
        code(words).map(|(f, t)| (f, t, Pattern::Number)),
        spelled_digits(words).map(|(f, t)| (f, t, Pattern::Number)),
        date_in_words(chars, words).map(|(f, t)| (f, t, Pattern::DateInWords)),
        address(words).map(|(f, t)| (f, t, Pattern::Address)),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|&(from, to, _)| (from, std::cmp::Reverse(to)))
}

fn is_digit(chars: &[NormChar], i: usize) -> bool {
    chars.get(i).is_some_and(|n| n.c.is_ascii_digit())
}

/// Indices that belong to a clock time (`3:30`, `10:45:00`).
fn time_mask(chars: &[NormChar]) -> Vec<bool> {
    let mut mask = vec![false; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i].c == ':' && is_digit(chars, i + 1) && is_digit(chars, i + 2) {
            let mut from = i;
            while from > 0 && is_digit(chars, from - 1) && i - from < 2 {
                from -= 1;
            }
            if from < i && (from == 0 || !is_digit(chars, from - 1)) && !is_digit(chars, i + 3) {
                let mut to = i + 3;
                if chars.get(to).is_some_and(|n| n.c == ':')
                    && is_digit(chars, to + 1)
                    && is_digit(chars, to + 2)
                {
                    to += 3;
                }
                mask[from..to].iter_mut().for_each(|m| *m = true);
                i = to;
                continue;
            }
        }
        i += 1;
    }
    mask
}

/// Digit groups joined by separators a reader reads through: spaces,
/// underscores, parentheses, one `-`, `/` or `.` (with spaces around), or a
/// comma with no space. Refused: a group of four or more digits, five or
/// more digits in all, three or more groups, a three-digit group with
/// another, or `d/m` with a slash.
fn digits(chars: &[NormChar]) -> Option<(usize, usize)> {
    let time = time_mask(chars);
    let digit = |i: usize| is_digit(chars, i) && !time[i];
    let mut i = 0;
    while i < chars.len() {
        if !digit(i) {
            i += 1;
            continue;
        }
        let from = i;
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut slash = false;
        let mut end = i;
        loop {
            let group_from = end;
            while digit(end) {
                end += 1;
            }
            groups.push((group_from, end));
            // The separators up to the next group, if they join.
            let mut j = end;
            let mut marks = 0;
            let mut spaces = 0;
            let mut comma = false;
            while let Some(n) = chars.get(j) {
                match n.c {
                    ' ' | '_' | '(' | ')' => spaces += 1,
                    '-' | '/' | '.' => marks += 1,
                    ',' => comma = true,
                    _ => break,
                }
                j += 1;
            }
            let width = j - end;
            let joins = digit(j)
                && width > 0
                && width <= 4
                && marks <= 1
                && (!comma || (width == 1 && marks == 0 && spaces == 0));
            if !joins {
                break;
            }
            if chars[end..j].iter().any(|n| n.c == '/') {
                slash = true;
            }
            end = j;
        }
        let last = groups.last().map_or(from, |g| g.1);
        if refused(chars, &groups, slash) && !is_place_number(chars, &groups) {
            return Some((from, last));
        }
        i = last.max(i + 1);
    }
    None
}

fn refused(chars: &[NormChar], groups: &[(usize, usize)], slash: bool) -> bool {
    let lengths: Vec<usize> = groups.iter().map(|(f, t)| t - f).collect();
    let total: usize = lengths.iter().sum();
    let longest = lengths.iter().copied().max().unwrap_or(0);
    if longest >= 4 || total >= 5 || groups.len() >= 3 {
        return true;
    }
    if groups.len() == 2 {
        if longest >= 3 {
            return true;
        }
        if slash {
            let value = |(f, t): (usize, usize)| -> u32 {
                chars[f..t]
                    .iter()
                    .filter_map(|n| n.c.to_digit(10))
                    .fold(0, |acc, d| acc * 10 + d)
            };
            let (a, b) = (value(groups[0]), value(groups[1]));
            return (1..=31).contains(&a) && (1..=31).contains(&b) && (a <= 12 || b <= 12);
        }
    }
    false
}

/// Words naming a place in a building, whose number (up to four digits)
/// identifies no one: `room 1204`, `suite 1200`, `ext. 4021`.
const PLACE_WORDS: &[&str] = &[
    "room",
    "rooms",
    "suite",
    "floor",
    "level",
    "ext",
    "extension",
    "bed",
    "bay",
    "door",
    "gate",
    "desk",
    "counter",
    "booth",
    "building",
    "wing",
];

/// The widest range of places that passes after a place word: `beds 1-12`
/// and `rooms 101-102` are places, `bed 1234-5678` is a phone number.
const PLACE_RANGE_MAX_SPAN: u32 = 20;

/// A number of at most four digits, or a range of two joined by one `-`
/// (the second above the first by at most [`PLACE_RANGE_MAX_SPAN`]), right
/// after a place word (`room 1204`, `rooms 101-102`, `suite #1200`,
/// `ext. 4021`). Two groups joined by spaces alone (`ext 555 0199`) are a
/// phone number, not a range.
fn is_place_number(chars: &[NormChar], groups: &[(usize, usize)]) -> bool {
    let (Some(&(from, _)), Some(&(_, to))) = (groups.first(), groups.last()) else {
        return false;
    };
    let value = |(f, t): (usize, usize)| -> u32 {
        chars[f..t]
            .iter()
            .filter_map(|n| n.c.to_digit(10))
            .fold(0, |acc, d| acc.saturating_mul(10).saturating_add(d))
    };
    let range = match groups {
        [_] => true,
        [first, second] => {
            let joint = &chars[first.1..second.0];
            let dashes = joint.iter().filter(|n| n.c == '-').count();
            let (low, high) = (value(*first), value(*second));
            dashes == 1
                && joint.iter().all(|n| matches!(n.c, '-' | ' '))
                && low < high
                && high - low <= PLACE_RANGE_MAX_SPAN
        }
        _ => false,
    };
    if !range
        || groups.iter().any(|(f, t)| t - f > 4)
        || chars.get(to).is_some_and(|n| n.c.is_alphanumeric())
    {
        return false;
    }
    let mut end = from;
    while end > 0 && matches!(chars[end - 1].c, ' ' | '#' | '.' | ':' | '-') && from - end < 3 {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && chars[start - 1].c.is_alphabetic() {
        start -= 1;
    }
    let word: String = chars[start..end].iter().map(|n| n.c).collect();
    end < from && PLACE_WORDS.contains(&word.as_str())
}

/// A word mixing letters and three or more digits (`AB123`, `x7y8z9`).
fn code(words: &[Word]) -> Option<(usize, usize)> {
    words.iter().find_map(|w| {
        let digits = w.text.chars().filter(char::is_ascii_digit).count();
        let letters = w.text.chars().filter(|c| c.is_alphabetic()).count();
        (digits >= 3 && letters > 0).then_some((w.from, w.to))
    })
}

const DIGIT_WORDS: &[&str] = &[
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Four or more digits spelled out in a row (`five five five zero`).
fn spelled_digits(words: &[Word]) -> Option<(usize, usize)> {
    let mut run = 0;
    for (index, word) in words.iter().enumerate() {
        if DIGIT_WORDS.contains(&word.text.as_str()) {
            run += 1;
            if run >= 4 {
                let first = &words[index + 1 - run];
                let mut last = index;
                while words
                    .get(last + 1)
                    .is_some_and(|w| DIGIT_WORDS.contains(&w.text.as_str()))
                {
                    last += 1;
                }
                return Some((first.from, words[last].to));
            }
        } else {
            run = 0;
        }
    }
    None
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

const YEAR_TENS: &[&str] = &[
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "oh",
];

const ORDINALS: &[&str] = &[
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "thirtieth",
];

/// A day of the month: `4`, `4th`, `fourth`.
fn is_day(word: &str) -> bool {
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    let rest = &word[digits.len()..];
    if !digits.is_empty() {
        return digits.len() <= 2
            && digits.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
            && matches!(rest, "" | "st" | "nd" | "rd" | "th");
    }
    ORDINALS.contains(&word) || word.ends_with("first") || word.ends_with("th")
}

/// A two-digit year (or an apostrophe year), not a day.
fn is_short_year(chars: &[NormChar], word: &Word) -> bool {
    let apostrophe = word
        .from
        .checked_sub(1)
        .and_then(|i| chars.get(i))
        .is_some_and(|n| n.c == '\'');
    word.text.len() == 2
        && word.text.chars().all(|c| c.is_ascii_digit())
        && (apostrophe || word.text.parse::<u32>().is_ok_and(|y| y > 31))
}

/// A month name with a day and a year, or with a year alone (`July '85`);
/// a year in words (`nineteen eighty-four`, `two thousand and one`).
fn date_in_words(chars: &[NormChar], words: &[Word]) -> Option<(usize, usize)> {
    for (index, word) in words.iter().enumerate() {
        let text = word.text.as_str();
        // A year in words: "nineteen eighty", "two thousand".
        if matches!(text, "nineteen" | "eighteen")
            && words
                .get(index + 1)
                .is_some_and(|w| YEAR_TENS.contains(&w.text.as_str()))
        {
            return Some((word.from, year_end(words, index + 1)));
        }
        if text == "two" && words.get(index + 1).is_some_and(|w| w.text == "thousand") {
            return Some((word.from, year_end(words, index + 1)));
        }
        if !MONTHS.contains(&text) {
            continue;
        }
        // Up to four words around the month, skipping "of", "the".
        let around: Vec<&Word> = words[index.saturating_sub(3)..(index + 4).min(words.len())]
            .iter()
            .filter(|w| !matches!(w.text.as_str(), "of" | "the" | "on"))
            .collect();
        let has_year = around.iter().any(|w| {
            !MONTHS.contains(&w.text.as_str()) && (is_short_year(chars, w) || is_spelled_year(w))
        });
        if has_year {
            let from = around.first().map_or(word.from, |w| w.from);
            let to = around.last().map_or(word.to, |w| w.to);
            // Trim to the date itself: start at a day, the month or the year.
            let start = around
                .iter()
                .find(|w| {
                    is_day(&w.text) || MONTHS.contains(&w.text.as_str()) || is_short_year(chars, w)
                })
                .map_or(from, |w| w.from);
            let end = around
                .iter()
                .rev()
                .find(|w| {
                    is_day(&w.text)
                        || MONTHS.contains(&w.text.as_str())
                        || is_short_year(chars, w)
                        || is_spelled_year(w)
                })
                .map_or(to, |w| w.to);
            return Some((start.min(word.from), end.max(word.to)));
        }
    }
    None
}

fn is_spelled_year(word: &Word) -> bool {
    matches!(word.text.as_str(), "nineteen" | "eighteen")
}

fn year_end(words: &[Word], mut index: usize) -> usize {
    while words.get(index + 1).is_some_and(|w| {
        YEAR_TENS.contains(&w.text.as_str())
            || DIGIT_WORDS.contains(&w.text.as_str())
            || w.text == "and"
    }) {
        index += 1;
    }
    words[index].to
}

/// `local@domain.tld`.
fn email(chars: &[NormChar]) -> Option<(usize, usize)> {
    let local = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    let domain = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-');
    for (at, n) in chars.iter().enumerate() {
        if n.c != '@' {
            continue;
        }
        let mut from = at;
        while from > 0 && local(chars[from - 1].c) {
            from -= 1;
        }
        let mut to = at + 1;
        while chars.get(to).is_some_and(|n| domain(n.c)) {
            to += 1;
        }
        while to > at + 1 && matches!(chars[to - 1].c, '.' | '-') {
            to -= 1;
        }
        let host: String = chars[at + 1..to].iter().map(|n| n.c).collect();
        let dotted = host.split('.').filter(|part| !part.is_empty()).count() >= 2;
        if from < at && dotted {
            return Some((from, to));
        }
    }
    None
}

const STREET_SUFFIXES: &[&str] = &[
    "street",
    "st",
    "avenue",
    "ave",
    "road",
    "rd",
    "lane",
    "ln",
    "drive",
    "boulevard",
    "blvd",
    "terrace",
    "crescent",
    "highway",
    "hwy",
    "parkway",
    "pkwy",
    "court",
    "ct",
    "circle",
];

/// A house number followed within three words by a street suffix
/// (`12 Oak Street`, `221b Baker St`), or `apt`/`apartment`/`po box` and a
/// number.
fn address(words: &[Word]) -> Option<(usize, usize)> {
    for (index, word) in words.iter().enumerate() {
        let text = word.text.as_str();
        let number = text.chars().next().is_some_and(|c| c.is_ascii_digit())
            && text.chars().filter(char::is_ascii_digit).count() <= 5
            && text.chars().skip_while(char::is_ascii_digit).count() <= 1;
        if number {
            for (offset, next) in words.iter().skip(index + 1).take(4).enumerate() {
                if offset > 0 && STREET_SUFFIXES.contains(&next.text.as_str()) {
                    return Some((word.from, next.to));
                }
                if !next.text.chars().all(char::is_alphabetic) {
                    break;
                }
            }
        }
        let unit = matches!(text, "apt" | "apartment")
            || (text == "box" && index > 0 && words[index - 1].text == "po");
        if unit
            && let Some(next) = words.get(index + 1)
            && next.text.chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            let from = if text == "box" {
                words[index - 1].from
            } else {
                word.from
            };
            return Some((from, next.to));
        }
    }
    None
}
