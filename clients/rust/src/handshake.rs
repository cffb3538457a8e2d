//! The `hello` → `welcome` exchange that opens every connection.
//!
//! Generic over the socket so tests can run it over in-memory streams. The
//! token is serialized into the `hello` frame and nowhere else: never the
//! URL, never a log line.

use crate::error::ClientError;
use chrono::{DateTime, Utc};
use consult_protocol::{ClientFrame, ClinicId, ErrorCode, Role, ServerFrame, UserId};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

/// What the hub said in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version the hub speaks.
    pub protocol: u32,
    /// The hub's id for this connection, for support and logs.
    pub conn_id: String,
    /// The authenticated user.
    pub user: UserId,
    /// Its role.
    pub role: Role,
    /// Its clinic.
    pub clinic: ClinicId,
    /// How often the hub pings.
    pub heartbeat_secs: u64,
    /// Largest text frame the hub accepts, in bytes.
    pub max_frame_bytes: usize,
    /// The hub's clock when it welcomed us.
    pub server_time: DateTime<Utc>,
    /// When the hub closes the connection (4005) unless it is refreshed.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How the hub answered `hello`.
#[derive(Debug)]
pub(crate) enum Outcome {
    Welcome(Welcome),
    Rejected { code: ErrorCode, message: String },
}

/// Sends `hello` and reads until `welcome` or `error`.
pub(crate) async fn hello<S>(socket: &mut S, token: &str) -> Result<Outcome, ClientError>
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin,
{
    let hello = ClientFrame::Hello {
        token: token.to_owned(),
    };
    let text = serde_json::to_string(&hello)
        .map_err(|error| ClientError::Protocol(format!("cannot encode hello: {error}")))?;
    socket
        .send(Message::text(text))
        .await
        .map_err(ClientError::connect)?;

    loop {
        let message = match socket.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) => return Err(ClientError::connect(error)),
            None => return Err(closed_before_welcome(None)),
        };
        match message {
            Message::Text(text) => return answer(text.as_str()),
            Message::Close(frame) => {
                return Err(closed_before_welcome(
                    frame.map(|frame| (u16::from(frame.code), frame.reason.to_string())),
                ));
            }
            Message::Binary(_) => {
                return Err(ClientError::Protocol(
                    "binary frame from hub before welcome".to_owned(),
                ));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Reads until the hub's close frame and returns its code; `None` when the
/// stream ends or fails first.
pub(crate) async fn read_close_code<S>(socket: &mut S) -> Option<u16>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Close(frame) = message {
            return frame.map(|frame| u16::from(frame.code));
        }
    }
    None
}

fn answer(text: &str) -> Result<Outcome, ClientError> {
    match serde_json::from_str::<ServerFrame>(text) {
        Ok(ServerFrame::Welcome {
            protocol,
            conn_id,
            user,
            role,
            clinic,
            heartbeat_secs,
            max_frame_bytes,
            server_time,
            expires_at,
        }) => Ok(Outcome::Welcome(Welcome {
            protocol,
            conn_id,
            user,
            role,
            clinic,
            heartbeat_secs,
            max_frame_bytes,
            server_time,
            expires_at,
        })),
        Ok(ServerFrame::Error { code, message, .. }) => Ok(Outcome::Rejected { code, message }),
        Ok(other) => Err(ClientError::Protocol(format!(
            "expected welcome, got {other:?}"
        ))),
        Err(error) => Err(ClientError::Protocol(format!(
            "undecodable frame from hub: {error}"
        ))),
    }
}

fn closed_before_welcome(close: Option<(u16, String)>) -> ClientError {
    let detail = match close {
        Some((code, reason)) => format!("code {code}: {reason}"),
        None => "no close frame".to_owned(),
    };
    ClientError::Protocol(format!(
        "hub closed the connection before welcome ({detail})"
    ))
}
