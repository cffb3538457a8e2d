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

    pub(crate) fn connect(error: tungstenite::Error) -> Self {
        Self::Connect(Box::new(error))
    }
}
