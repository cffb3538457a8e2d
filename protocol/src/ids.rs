//! Identifier and sequence newtypes carried by frames.
//!
//! Identifiers are opaque strings chosen by the host platform (users, clinics)
//! or by the hub (consultations). Keeping them as distinct types stops a user
//! id from being passed where a consultation id is expected.

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
