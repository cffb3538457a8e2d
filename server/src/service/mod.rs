//! The hub's use cases, shared by WebSocket sessions and the HTTP API:
//! authorize, validate, persist, audit, publish. Each function takes the
//! [`AppState`] and a [`Principal`]; none knows how the request arrived.
//!
//! [`AppState`]: crate::app::AppState
//! [`Principal`]: crate::auth::Principal

pub mod access;
pub mod alerts;
pub mod answer_size;
pub mod contacts;
pub mod dashboard;
pub mod events;
pub mod identity;
pub mod messaging;
pub mod notifications;
pub mod partitions;
pub mod publisher;
pub mod quick;
pub mod reach;
pub mod refresh_ahead;
pub mod registered_clinics;
pub mod registrations;
pub mod retention;
pub mod revocations;
pub mod status;
pub mod templates;

use crate::store::StoreError;
use consult_protocol::{ErrorCode, UserId};

/// Why a use case did not complete: the client's fault, or ours.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Refused for a reason the client can act on.
    #[error("{code}: {message}")]
    Refused {
        /// The wire code.
        code: ErrorCode,
        /// The explanation sent to the client.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// `invalid_value` naming `field` when `id` is given and breaks the id
    /// rule ([`consult_protocol::ids::id_problem`]).
    ///
    /// # Errors
    ///
    /// The refusal.
    pub fn check_optional_id(field: &str, id: Option<&UserId>) -> Result<(), Self> {
        match id.and_then(UserId::problem) {
            Some(problem) => Err(Self::refused(
                ErrorCode::InvalidValue,
                format!("{field} {problem}"),
            )),
            None => Ok(()),
        }
    }

    /// A refusal with `code`.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::Store(StoreError::WriterStopped | StoreError::ReceiptsStopped) => {
                ErrorCode::Unavailable
            }
            Self::Store(_) => ErrorCode::Internal,
        }
    }

    /// The text safe to send to the client: internal details stay in logs.
    pub fn client_message(&self) -> String {
        match self {
            Self::Refused { message, .. } => message.clone(),
            Self::Store(StoreError::WriterStopped) => {
                "the message writer is not running (shutdown or restart); retry".to_owned()
            }
            Self::Store(StoreError::ReceiptsStopped) => {
                "the receipt writer is not running (shutdown or restart); retry".to_owned()
            }
            Self::Store(_) => "internal error; it has been logged".to_owned(),
        }
    }

    /// True when the fault is ours (worth an error-level log).
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Store(_))
    }
}

impl From<(ErrorCode, String)> for ServiceError {
    fn from((code, message): (ErrorCode, String)) -> Self {
        Self::Refused { code, message }
    }
}
