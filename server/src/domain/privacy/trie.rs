//! A character trie of normalised terms, walked over the letter stream from
//! a word start: joined parts of a word are skipped over, a space in a term
//! needs a word break (or nothing) in the text, and a digit inside a word
//! may stand for the letter it looks like (`t3st`, `h1v`).

use super::letters::{Gap, Letter};

/// What a term in the trie stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Index of what it refuses as (a kind or a name).
    pub(crate) tag: u8,
    /// Matches only where a word (or joined part) ends.
    pub(crate) whole_word: bool,
}

#[derive(Debug, Default)]
struct Node {
    children: Vec<(char, u32)>,
    entry: Option<Entry>,
}

/// Terms as a trie; built once, walked per text.
#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
    /// Longest term, in characters.
    longest: usize,
}

impl Default for Trie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
            longest: 0,
        }
    }
}

/// Letters a digit is written for.
fn leet(c: char) -> &'static [char] {
    match c {
        '0' => &['o'],
        '1' => &['i', 'l'],
        '3' => &['e'],
        '4' => &['a'],
        '5' => &['s'],
        '7' => &['t'],
        '8' => &['b'],
        '9' => &['g'],
        _ => &[],
    }
}

impl Trie {
    /// Adds a normalised term (letters, digits, single spaces between
    /// words). An existing entry keeps its whole-word flag unless this one
    /// is looser.
    pub(crate) fn insert(&mut self, term: &str, entry: Entry) {
        let mut node = 0usize;
        let mut count = 0;
        for c in term.chars() {
            count += 1;
            node = match self.child(node, c) {
                Some(next) => next,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    let id = u32::try_from(next).unwrap_or(u32::MAX);
                    let children = &mut self.nodes[node].children;
                    let at = children.partition_point(|&(k, _)| k < c);
                    children.insert(at, (c, id));
                    next
                }
            };
        }
        self.longest = self.longest.max(count);
        let slot = &mut self.nodes[node].entry;
        match slot {
            Some(existing) if !existing.whole_word || entry.whole_word => {}
            _ => *slot = Some(entry),
        }
    }

    /// True when no term was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes[0].children.is_empty()
    }

    fn child(&self, node: usize, c: char) -> Option<usize> {
        let children = &self.nodes.get(node)?.children;
        children
            .binary_search_by(|&(k, _)| k.cmp(&c))
            .ok()
            .map(|i| children[i].1 as usize)
    }

    /// The first term matching at `start` (a word start) whose end passes
    /// `end_ok`: `(end index in letters, entry)`.
    pub(crate) fn match_at(
        &self,
        letters: &[Letter],
        start: usize,
        end_ok: &dyn Fn(usize, Entry) -> bool,
    ) -> Option<(usize, Entry)> {
        if !letters.get(start)?.starts_word() {
            return None;
        }
        self.walk(letters, 0, start, start, end_ok)
    }

    /// Like [`Trie::match_at`] but from any letter, word start or not.
    pub(crate) fn walk_from(
        &self,
        letters: &[Letter],
        start: usize,
        end_ok: &dyn Fn(usize, Entry) -> bool,
    ) -> Option<(usize, Entry)> {
        self.walk(letters, 0, start, start, end_ok)
    }

    fn walk(
        &self,
        letters: &[Letter],
        node: usize,
        pos: usize,
        start: usize,
        end_ok: &dyn Fn(usize, Entry) -> bool,
    ) -> Option<(usize, Entry)> {
        if pos > start
            && let Some(entry) = self.nodes[node].entry
            && (!entry.whole_word || ends_word(letters, pos))
            && mostly_letters(&letters[start..pos])
            && end_ok(pos, entry)
        {
            return Some((pos, entry));
        }
        if pos - start > self.longest * 2 {
            return None;
        }
        let letter = letters.get(pos)?;
        let mut node = node;
        if pos > start && letter.gap == Gap::Space {
            node = self.child(node, ' ')?;
        } else if pos > start
            && letter.gap == Gap::Joiner
            && let Some(space) = self.child(node, ' ')
            && let Some(found) = self.step(letters, space, pos, start, letter, end_ok)
        {
            return Some(found);
        }
        self.step(letters, node, pos, start, letter, end_ok)
    }

    fn step(
        &self,
        letters: &[Letter],
        node: usize,
        pos: usize,
        start: usize,
        letter: &Letter,
        end_ok: &dyn Fn(usize, Entry) -> bool,
    ) -> Option<(usize, Entry)> {
        if let Some(next) = self.child(node, letter.c)
            && let Some(found) = self.walk(letters, next, pos + 1, start, end_ok)
        {
            return Some(found);
        }
        leet(letter.c).iter().find_map(|&c| {
            let next = self.child(node, c)?;
            self.walk(letters, next, pos + 1, start, end_ok)
        })
    }
}

/// Digits read as letters only inside words that are mostly letters
/// (`h1v`, `t3st`), so numbers such as `14b` are not read as words.
fn mostly_letters(span: &[Letter]) -> bool {
    let digits = span.iter().filter(|l| l.c.is_ascii_digit()).count();
    digits * 2 < span.len()
}

/// True when a word or joined part ends before `pos`.
pub(crate) fn ends_word(letters: &[Letter], pos: usize) -> bool {
    letters.get(pos).is_none_or(Letter::starts_word)
}

/// The end of the word part that `pos` is in (up to the next joiner or
/// word break).
pub(crate) fn part_end(letters: &[Letter], pos: usize) -> usize {
    let mut end = pos;
    while letters.get(end).is_some_and(|l| l.gap == Gap::None) {
        end += 1;
    }
    end
}
