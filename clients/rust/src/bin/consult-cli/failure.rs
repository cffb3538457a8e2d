//! [`Failure`]: what the CLI prints as `error: <code>: <message>` before it
//! exits non-zero, and how any error becomes one.

use consult_client::ClientError;
use std::fmt;

/// A failure with a short machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The code and message of any error the subcommands return: the hub's
    /// error code for refusals, the client's failure kind for the rest.
    pub(crate) fn from_anyhow(error: &anyhow::Error) -> Self {
        if let Some(failure) = error.downcast_ref::<Failure>() {
            return failure.clone();
        }
        if let Some(client) = error.downcast_ref::<ClientError>() {
            return Self::new(client.kind(), client.detail());
        }
        Self::new("failed", format!("{error:#}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}
