//! [`ClientError`], every way a client call can fail.
//!
//! It separates the hub's answers (`Rejected`, `Command`) from transport and
//! protocol failures on our side of the wire.

use consult_protocol::ErrorCode;
use tokio_tungstenite::tungstenite;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection or the WebSocket upgrade failed.
    #[error("could not connect to the hub: {0}")]
    Connect(Box<tungstenite::Error>),
    /// The hub answered `hello` with an `error` frame.
    #[error("hub refused hello: {code}: {message}")]
    Rejected {
        /// Why the hub refused.
        code: ErrorCode,
        /// The hub's explanation.
        message: String,
        /// The WebSocket close code that followed, if the hub sent one in time.
        close_code: Option<u16>,
    },
    /// The hub answered a command with an `error` frame.
    #[error("hub refused command: {code}: {message}")]
    Command {
        /// Why the hub refused.
        code: ErrorCode,
        /// The hub's explanation.
        message: String,
    },
    /// No answer within the configured timeout.
    #[error("no answer from the hub in time")]
    Timeout,
    /// The connection is closed; [`crate::Client::close_info`] says why.
    #[error("connection is closed")]
    Closed,
    /// A [`crate::ResilientClient`] is between connections: the command was
    /// not sent, or its connection dropped before the answer (so it may or
    /// may not have run). Retry once reconnected.
    #[error("disconnected from the hub; retry once reconnected")]
    Disconnected,
    /// The [`crate::TokenProvider`] could not produce a token.
    #[error("no token: {0}")]
    Token(String),
    /// The hub sent something this client cannot make sense of, or the
    /// caller asked for something the protocol does not allow.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The hub's error code, for `Rejected` and `Command`.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Rejected { code, .. } | Self::Command { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short, stable name for the failure: the hub's error code for
    /// `Rejected` and `Command` (`forbidden`, `invalid_token`, ...), and
    /// otherwise `connect_failed`, `timeout`, `closed`, `disconnected`,
    /// `token_unavailable` or `protocol`. Suited to CLI output and metric
    /// labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { code, .. } | Self::Command { code, .. } => code.as_str(),
            Self::Connect(_) => "connect_failed",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Disconnected => "disconnected",
            Self::Token(_) => "token_unavailable",
            Self::Protocol(_) => "protocol",
        }
    }

    /// The message without the kind: the hub's explanation for `Rejected`
    /// and `Command`, the full description otherwise.
    pub fn detail(&self) -> String {
        match self {
            Self::Rejected { message, .. } | Self::Command { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Whether sending the same command again later may succeed: after a
    /// disconnect, a timeout or a failed connect, and for the hub's
    /// `rate_limited` and `unavailable`. A retried command that is not
    /// idempotent may run twice.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Disconnected | Self::Timeout | Self::Connect(_) | Self::Token(_) => true,
            Self::Command { code, .. } => {
                matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable)
            }
            Self::Rejected { .. } | Self::Closed | Self::Protocol(_) => false,
        }
    }

    pub(crate) fn connect(error: tungstenite::Error) -> Self {
        Self::Connect(Box::new(error))
    }
}
