//! The vocabulary of the privacy check: the built-in health and personal
//! terms (`vocabulary.txt`, with its provenance) plus configured terms,
//! normalised like the text and compiled once into a trie.

use super::normalize::normalize_str;
use super::trie::{Entry, Trie};
use std::sync::LazyLock;

/// The built-in term list, as shipped.
pub const BUILTIN_SOURCE: &str = include_str!("vocabulary.txt");

/// What a vocabulary term reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKind {
    /// A condition, medication, procedure, test or specialty.
    Health,
    /// A personal identifier (date of birth, record number).
    Personal,
}

impl TermKind {
    fn tag(self) -> u8 {
        match self {
            Self::Health => 0,
            Self::Personal => 1,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Self {
        if tag == 1 {
            Self::Personal
        } else {
            Self::Health
        }
    }
}

/// Compiled terms; build once and share.
#[derive(Debug)]
pub struct Vocabulary {
    pub(crate) trie: Trie,
    terms: usize,
}

static BUILTIN: LazyLock<Vocabulary> = LazyLock::new(|| Vocabulary::build::<&str>(&[]));

impl Vocabulary {
    /// The built-in vocabulary alone.
    pub fn builtin() -> &'static Self {
        &BUILTIN
    }

    /// The built-in vocabulary plus configured health terms (any case or
    /// form: they are normalised like the text).
    pub fn build<S: AsRef<str>>(configured: &[S]) -> Self {
        let mut vocabulary = Self {
            trie: Trie::default(),
            terms: 0,
        };
        let mut kind = TermKind::Health;
        for line in BUILTIN_SOURCE.lines() {
            let line = line.trim();
            match line {
                "" => {}
                "[health]" => kind = TermKind::Health,
                "[personal]" => kind = TermKind::Personal,
                _ if line.starts_with('#') => {}
                _ => vocabulary.add(line, kind),
            }
        }
        for term in configured {
            vocabulary.add(term.as_ref(), TermKind::Health);
        }
        vocabulary
    }

    /// How many terms were compiled.
    pub fn len(&self) -> usize {
        self.terms
    }

    /// True when there are no terms.
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    fn add(&mut self, raw: &str, kind: TermKind) {
        let (forced_whole, raw) = match raw.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let normal = normalize_str(raw);
        let words: Vec<&str> = normal
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return;
        }
        let letters: usize = words.iter().map(|w| w.chars().count()).sum();
        let entry = Entry {
            tag: kind.tag(),
            whole_word: forced_whole || letters <= 3,
        };
        let spaced = words.join(" ");
        let joined = words.concat();
        for form in [spaced, joined] {
            if entry.whole_word {
                self.trie.insert(&format!("{form}s"), entry);
            }
            self.trie.insert(&form, entry);
        }
        self.terms += 1;
    }
}
