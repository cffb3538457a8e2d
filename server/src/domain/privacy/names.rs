//! Participants' names for the privacy check: every part of a display or
//! preferred name of two letters or more, normalised like the text and
//! matched at word starts. Honorifics are left out only before the name
//! (`Dr Minh Do`), credentials only after it when written as credentials
//! (`Jane Smith, DO`, `Jane Smith MD`), so a surname that is also a title
//! (`Minh Do`) is still a name. A match must end where the
//! word ends, before digits (`Alex2`) or where another part of a name
//! starts (`AlexRivera`), so `Morganite` does not match `Morgan`.

use super::letters::Letter;
use super::normalize::normalize_str;
use super::trie::{Entry, Trie, ends_word};

/// Honorifics, left out while they lead a name (`Dr`, `Ms`): not
/// identifying alone.
const HONORIFICS: &[&str] = &["dr", "mr", "mrs", "ms", "mx", "miss", "prof", "sir"];

/// Credentials and suffixes that are never anyone's name: left out wherever
/// they follow the name.
const SUFFIXES: &[&str] = &["md", "np", "rn", "phd", "jr", "sr"];

/// Credentials that are also surnames (`Do`, `Pa`): left out only after a
/// comma, or written as a credential (`DO`, `D.O.`), after the name.
const CREDENTIAL_OR_NAME: &[&str] = &["do", "pa"];

/// The words of `name` that can identify someone, in order: leading
/// honorifics and trailing credentials left out.
fn identifying_words(name: &str) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut after_comma = false;
    for word in name.split_whitespace() {
        let bare: String = normalize_str(word)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect();
        let title = if kept.is_empty() {
            HONORIFICS.contains(&bare.as_str())
        } else {
            SUFFIXES.contains(&bare.as_str())
                || (CREDENTIAL_OR_NAME.contains(&bare.as_str())
                    && (after_comma || word.contains('.') || !word.chars().any(char::is_lowercase)))
        };
        if !kept.is_empty() && word.contains(',') {
            after_comma = true;
        }
        if !title {
            kept.push(word);
        }
    }
    kept
}

/// The name parts of the participants, compiled per check.
#[derive(Debug, Default)]
pub(crate) struct Names {
    trie: Trie,
}

impl Names {
    /// Compiles the parts of `names`.
    pub(crate) fn new(names: &[&str]) -> Self {
        let mut trie = Trie::default();
        for name in names {
            let normal = normalize_str(&identifying_words(name).join(" "));
            // Each part, and each word with its inner punctuation left out
            // ("O'Brien" is also "obrien").
            let joined = normal.split_whitespace().map(|word| {
                word.chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
            });
            let parts: Vec<String> = normal
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_owned)
                .chain(joined)
                .collect();
            for part in &parts {
                let part = part.as_str();
                if part.chars().count() >= 2 {
                    trie.insert(
                        part,
                        Entry {
                            tag: 0,
                            whole_word: false,
                        },
                    );
                }
            }
        }
        Self { trie }
    }

    /// The end of a name starting at `start`, if one does.
    pub(crate) fn match_at(&self, letters: &[Letter], start: usize) -> Option<usize> {
        if self.trie.is_empty() {
            return None;
        }
        let followed_by_name = |pos: usize| {
            self.trie
                .walk_from(letters, pos, &|end, _| ends_word(letters, end))
                .is_some()
        };
        let end_ok = |pos: usize, _: Entry| {
            ends_word(letters, pos)
                || letters.get(pos).is_some_and(|l| l.c.is_ascii_digit())
                || followed_by_name(pos)
        };
        self.trie
            .match_at(letters, start, &end_ok)
            .map(|(end, _)| end)
    }
}
