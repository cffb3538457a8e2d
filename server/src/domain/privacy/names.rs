//! Participants' names for the privacy check: every part of a display or
//! preferred name of two letters or more (honorifics left out), normalised
//! like the text and matched at word starts. A match must end where the
//! word ends, before digits (`Alex2`) or where another part of a name
//! starts (`AlexRivera`), so `Morganite` does not match `Morgan`.

use super::letters::Letter;
use super::normalize::normalize_str;
use super::trie::{Entry, Trie, ends_word};

/// Honorifics and credentials in display names are not identifying alone.
const TITLES: &[&str] = &[
    "dr", "mr", "mrs", "ms", "mx", "miss", "md", "np", "rn", "do", "pa", "phd", "prof", "sir",
    "jr", "sr",
];

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
            let normal = normalize_str(name);
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
                if part.chars().count() >= 2 && !TITLES.contains(&part) {
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
