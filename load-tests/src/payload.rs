//! The body of a load-test message: its send time first, so any receiver in
//! any harness process can compute delivery latency from it.
//!
//! Format: `<unix µs> <index> x…x`, padded to the requested length. The hub
//! treats it as ordinary chat text.

use std::fmt::Write;

/// Builds a body stamped `sent_unix_us`, at least `min_len` bytes long.
pub fn body(sent_unix_us: u64, index: u64, min_len: usize) -> String {
    let mut text = String::with_capacity(min_len.max(32));
    // Writing to a String cannot fail.
    let _infallible = write!(text, "{sent_unix_us} {index} ");
    while text.len() < min_len {
        text.push('x');
    }
    text
}

/// The send time written by [`body`], if `text` is such a body.
pub fn sent_at(text: &str) -> Option<u64> {
    text.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests;
