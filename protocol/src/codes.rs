//! Error codes carried by `error` frames and WebSocket close codes.
//!
//! Every refusal the hub makes is one of these codes; `docs/protocol.md`
//! lists each with its meaning and whether the connection stays open.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a command or frame was refused. Serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text frame is not valid JSON.
    InvalidJson,
    /// The frame's `type` is not one the hub knows.
    UnknownType,
    /// A required field is missing or a field has the wrong shape.
    InvalidFrame,
    /// The frame is larger than the configured message size limit.
    FrameTooLarge,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// A command arrived before a successful `hello`.
    HelloRequired,
    /// A second `hello` on an authenticated connection.
    AlreadyAuthenticated,
    /// The token is missing, forged, signed with an unknown key or malformed.
    InvalidToken,
    /// The token has expired.
    TokenExpired,
    /// The token was revoked by the host platform.
    TokenRevoked,
    /// The principal may not do this to this consultation.
    Forbidden,
    /// No such consultation (or template, or other named object).
    NotFound,
    /// The command needs the consultation to be joined first.
    NotJoined,
    /// The consultation's status does not allow this change.
    InvalidTransition,
    /// The patient must tap "I'm Ready" before entering.
    NotReady,
    /// The client message id was already used for a different message.
    DuplicateClientMsgId,
    /// Too many commands; retry later.
    RateLimited,
    /// The user holds as many connections to this node as it may; close one
    /// (or retry later).
    TooManyConnections,
    /// A field's value is out of range (empty text, too long, bad limit).
    InvalidValue,
    /// Outbound text failed the privacy check.
    PrivacyViolation,
    /// The consultation is ended or cancelled.
    ConsultationClosed,
    /// A ticked notification channel cannot reach the patient (no device
    /// with notifications on, no phone, no SMS consent, or opted out).
    ChannelUnavailable,
    /// The hub cannot do it right now (shutting down, or a consultation
    /// changing too fast); retry later.
    Unavailable,
    /// The answer would not fit in what the connection may buffer; ask for
    /// less (a smaller page, a narrower list).
    AnswerTooLarge,
    /// An unexpected failure inside the hub; details are in its logs.
    Internal,
}

impl ErrorCode {
    /// Every error code, in declaration order (a new variant goes here too;
    /// the tests check the list against the wire names).
    pub const ALL: [Self; 25] = [
        Self::InvalidJson,
        Self::UnknownType,
        Self::InvalidFrame,
        Self::FrameTooLarge,
        Self::BinaryNotSupported,
        Self::HelloRequired,
        Self::AlreadyAuthenticated,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::TokenRevoked,
        Self::Forbidden,
        Self::NotFound,
        Self::NotJoined,
        Self::InvalidTransition,
        Self::NotReady,
        Self::DuplicateClientMsgId,
        Self::RateLimited,
        Self::TooManyConnections,
        Self::InvalidValue,
        Self::PrivacyViolation,
        Self::ConsultationClosed,
        Self::ChannelUnavailable,
        Self::Unavailable,
        Self::AnswerTooLarge,
        Self::Internal,
    ];

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::UnknownType => "unknown_type",
            Self::InvalidFrame => "invalid_frame",
            Self::FrameTooLarge => "frame_too_large",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::HelloRequired => "hello_required",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::NotJoined => "not_joined",
            Self::InvalidTransition => "invalid_transition",
            Self::NotReady => "not_ready",
            Self::DuplicateClientMsgId => "duplicate_client_msg_id",
            Self::RateLimited => "rate_limited",
            Self::TooManyConnections => "too_many_connections",
            Self::InvalidValue => "invalid_value",
            Self::PrivacyViolation => "privacy_violation",
            Self::ConsultationClosed => "consultation_closed",
            Self::ChannelUnavailable => "channel_unavailable",
            Self::Unavailable => "unavailable",
            Self::AnswerTooLarge => "answer_too_large",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the hub uses. 1xxx are RFC 6455; 4xxx are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the client asked to close.
    Normal,
    /// 1001: the hub is shutting down or draining; reconnect (elsewhere).
    GoingAway,
    /// 1007: a text frame was not valid UTF-8 (RFC 6455 §7.4.1).
    InvalidPayload,
    /// 1009: a frame exceeded the hard size cap; the stream cannot continue.
    MessageTooBig,
    /// 1011: unexpected server failure.
    InternalError,
    /// 4000: no `hello` within the handshake timeout.
    HandshakeTimeout,
    /// 4001: `hello` carried an invalid or expired token.
    AuthFailed,
    /// 4002: nothing heard from the client within the idle timeout.
    IdleTimeout,
    /// 4003: the client did not read fast enough; its queue overflowed.
    SlowConsumer,
    /// 4004: the client kept sending after being rate limited.
    RateLimitExceeded,
    /// 4005: the session's token expired (plus leeway) without a `refresh`.
    TokenExpired,
    /// 4006: the session's token was revoked, or its user disconnected, by
    /// the host platform.
    TokenRevoked,
    /// 4007: the user holds as many connections to this node as it may.
    TooManyConnections,
}

impl CloseCode {
    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::InvalidPayload => 1007,
            Self::MessageTooBig => 1009,
            Self::InternalError => 1011,
            Self::HandshakeTimeout => 4000,
            Self::AuthFailed => 4001,
            Self::IdleTimeout => 4002,
            Self::SlowConsumer => 4003,
            Self::RateLimitExceeded => 4004,
            Self::TokenExpired => 4005,
            Self::TokenRevoked => 4006,
            Self::TooManyConnections => 4007,
        }
    }

    /// The short reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::GoingAway => "server going away, reconnect",
            Self::InvalidPayload => "text frame is not valid UTF-8",
            Self::MessageTooBig => "message too big",
            Self::InternalError => "internal error",
            Self::HandshakeTimeout => "hello not received in time",
            Self::AuthFailed => "authentication failed",
            Self::IdleTimeout => "idle timeout",
            Self::SlowConsumer => "slow consumer",
            Self::RateLimitExceeded => "rate limit exceeded",
            Self::TokenExpired => "token expired",
            Self::TokenRevoked => "token revoked",
            Self::TooManyConnections => "too many connections for this user",
        }
    }

    /// Looks a numeric code up; `None` for codes the hub never sends.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|candidate| candidate.code() == code)
    }

    /// Every close code the hub sends.
    pub const ALL: [Self; 13] = [
        Self::Normal,
        Self::GoingAway,
        Self::InvalidPayload,
        Self::MessageTooBig,
        Self::InternalError,
        Self::HandshakeTimeout,
        Self::AuthFailed,
        Self::IdleTimeout,
        Self::SlowConsumer,
        Self::RateLimitExceeded,
        Self::TokenExpired,
        Self::TokenRevoked,
        Self::TooManyConnections,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_lists_hold_each_code_once_and_match_the_wire_names() {
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, code.as_str(), "serde and as_str agree");
        }
        let numbers: HashSet<u16> = CloseCode::ALL.iter().map(|code| code.code()).collect();
        assert_eq!(numbers.len(), CloseCode::ALL.len());
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
    }
}
