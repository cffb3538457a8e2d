//! Identifier and sequence newtypes carried by frames.
//!
//! Identifiers are opaque strings chosen by the host platform (users, clinics)
//! or by the hub (consultations). Keeping them as distinct types stops a user
//! id from being passed where a consultation id is expected.
//!
//! The hub accepts a user, clinic or consultation id only when it is 1 to
//! [`MAX_ID_LEN`] bytes of ASCII letters, digits and [`ID_PUNCTUATION`]
//! ([`id_problem`] says why one is not): no spaces, slashes, percent signs,
//! quotes or control characters, so an id reads the same in a URL path, a
//! log line and a topic name on every store.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string as this identifier.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Why this is not an acceptable id (see [`id_problem`]), or
            /// `None` when it is one.
            pub fn problem(&self) -> Option<&'static str> {
                id_problem(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

/// The longest user, clinic or consultation id the hub accepts, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// The punctuation an id may hold besides ASCII letters and digits. It
/// covers the subject formats of common identity providers (`auth0|…`,
/// `urn:uuid:…`, e-mail addresses, base64 without `/`).
pub const ID_PUNCTUATION: &str = "-_.:@|+~=";

/// Why `value` is not an acceptable id, or `None` when it is one.
pub fn id_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("must not be empty");
    }
    if value.len() > MAX_ID_LEN {
        return Some("must be at most 128 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || ID_PUNCTUATION.contains(c);
    if !value.chars().all(allowed) {
        return Some("may hold only ASCII letters, digits and - _ . : @ | + ~ =");
    }
    None
}

string_id!(
    /// A consultation (one room), assigned by the hub.
    ConsultationId
);
string_id!(
    /// A patient, provider or clinic admin, as known to the host platform.
    UserId
);
string_id!(
    /// A clinic, as known to the host platform.
    ClinicId
);
string_id!(
    /// The client-chosen id of one command, echoed in its `ok` or `error`.
    CommandId
);

/// Position of a message in its consultation, assigned by the database.
///
/// Sequence numbers start at 1 and have no gaps; `0` means "nothing yet".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The value as a plain integer.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_provider_subjects_are_accepted() {
        for id in [
            "pat-alex",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "urn:uuid:0b6d8f1e-3c1a-4f52-9a43-1e2f3a4b5c6d",
            "a.b+clinic@example.org",
            "QmFzZTY0=",
        ] {
            assert_eq!(id_problem(id), None, "{id}");
        }
        assert_eq!(id_problem(&"x".repeat(MAX_ID_LEN)), None);
    }

    #[test]
    fn empty_long_and_unsafe_ids_are_refused() {
        for id in [
            String::new(),
            "x".repeat(MAX_ID_LEN + 1),
            "has space".to_owned(),
            "a/b".to_owned(),
            "50%".to_owned(),
            "quote\"".to_owned(),
            "line\nbreak".to_owned(),
            "caf\u{e9}".to_owned(),
        ] {
            assert!(id_problem(&id).is_some(), "{id:?} should be refused");
        }
        assert!(UserId::from("a b").problem().is_some());
        assert!(ClinicId::from("riverside").problem().is_none());
    }
}
