//! The handshake: a connection is a [`PendingSession`] until a valid `hello`
//! turns it into a [`Session`]. Anything else first gets `hello_required`
//! (or the decoding error); a bad, expired or revoked token gets an error
//! frame and close 4001;
//! silence past the handshake timeout gets close 4000.

use super::connection::Session;
use super::socket::Socket;
use crate::app::AppState;
use crate::auth::VerifiedToken;
use crate::domain::PersonKey;
use crate::service::identity;
use axum::extract::ws::Message;
use consult_protocol::{
    ClientFrame, CloseCode, ErrorCode, PROTOCOL_VERSION, ServerFrame, decode_client_frame,
};
use futures_util::{Sink, Stream};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Frames a client may send before `hello` before it is closed.
const MAX_PRE_HELLO_FRAMES: u32 = 10;

/// A connection that has not authenticated yet.
#[derive(Debug)]
pub struct PendingSession<S> {
    socket: Socket<S>,
    state: Arc<AppState>,
    conn_id: u64,
}

enum HelloOutcome {
    /// The token, and when its checks began: a disconnect from then on
    /// closes the session.
    Authenticated(Box<VerifiedToken>, std::time::Instant),
    Close(CloseCode),
}

impl<S> PendingSession<S>
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    /// Wraps a freshly upgraded socket.
    pub fn new(socket: S, state: Arc<AppState>) -> Self {
        let write_timeout = Duration::from_secs(state.config.session.write_timeout_secs);
        Self {
            socket: Socket::new(socket, write_timeout),
            conn_id: state.next_conn_id(),
            state,
        }
    }

    /// Waits for a valid `hello`, answering `welcome`. Returns `None` when the
    /// connection ended instead.
    #[tracing::instrument(name = "handshake", skip_all, fields(conn_id = self.conn_id))]
    pub async fn authenticate(mut self) -> Option<Session<S>> {
        let timeout = Duration::from_millis(self.state.config.session.handshake_timeout_ms);
        let deadline = Instant::now() + timeout;
        let shutdown = self.state.sessions_shutdown.clone();
        let outcome = tokio::select! {
            outcome = self.await_hello() => outcome,
            () = tokio::time::sleep_until(deadline) => HelloOutcome::Close(CloseCode::HandshakeTimeout),
            () = shutdown.cancelled() => HelloOutcome::Close(CloseCode::GoingAway),
        };
        match outcome {
            HelloOutcome::Authenticated(token, checked_at) => {
                self.welcome(*token, checked_at).await
            }
            HelloOutcome::Close(code) => {
                tracing::info!(close = code.code(), "handshake ended");
                self.socket.close(code).await;
                None
            }
        }
    }

    async fn await_hello(&mut self) -> HelloOutcome {
        let max_bytes = self.state.config.session.max_message_bytes;
        let mut frames = 0;
        loop {
            let message = match self.socket.next().await {
                None => return HelloOutcome::Close(CloseCode::Normal),
                Some(Err(error)) => {
                    return HelloOutcome::Close(super::connection::read_error_close_code(&error));
                }
                Some(Ok(message)) => message,
            };
            // Every data frame counts, binary as well as text: an
            // unauthenticated client gets MAX_PRE_HELLO_FRAMES of them.
            if matches!(message, Message::Text(_) | Message::Binary(_)) {
                frames += 1;
                if frames > MAX_PRE_HELLO_FRAMES {
                    return HelloOutcome::Close(CloseCode::AuthFailed);
                }
            }
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(_) => {
                    self.refuse(
                        None,
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not supported",
                    )
                    .await;
                    continue;
                }
                Message::Close(_) => return HelloOutcome::Close(CloseCode::Normal),
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if text.len() > max_bytes {
                self.refuse(
                    None,
                    ErrorCode::FrameTooLarge,
                    "frame exceeds the size limit",
                )
                .await;
                continue;
            }
            match decode_client_frame(&text) {
                Ok(ClientFrame::Hello { token }) => {
                    let checked_at = std::time::Instant::now();
                    match identity::authenticate(&self.state, &token).await {
                        Ok(verified) => {
                            return HelloOutcome::Authenticated(Box::new(verified), checked_at);
                        }
                        Err(error) => {
                            let code = error.code();
                            self.refuse(None, code, &error.client_message()).await;
                            if error.is_internal() {
                                // Not the token's fault: the client may retry.
                                tracing::error!(error = %error, "hello failed");
                                return HelloOutcome::Close(CloseCode::InternalError);
                            }
                            tracing::info!(code = code.as_str(), "hello refused");
                            return HelloOutcome::Close(CloseCode::AuthFailed);
                        }
                    }
                }
                Ok(other) => {
                    self.refuse(
                        other.id().cloned(),
                        ErrorCode::HelloRequired,
                        "send hello with a token first",
                    )
                    .await;
                }
                Err(error) => self.refuse(error.id, error.code, &error.message).await,
            }
        }
    }

    async fn refuse(
        &mut self,
        id: Option<consult_protocol::CommandId>,
        code: ErrorCode,
        message: &str,
    ) {
        metrics::counter!("consult_client_errors_total", "code" => code.as_str()).increment(1);
        let frame = ServerFrame::error(id, code, message);
        if let Err(error) = self.socket.send_frame(&frame).await {
            tracing::debug!(error = %error, "error frame not sent");
        }
    }

    async fn welcome(
        mut self,
        token: VerifiedToken,
        checked_at: std::time::Instant,
    ) -> Option<Session<S>> {
        let principal = &token.principal;
        let Some(user_slot) = self
            .state
            .connection_slots
            .take_user(&PersonKey::of(principal))
        else {
            self.refuse(
                None,
                ErrorCode::TooManyConnections,
                "this user holds as many connections to this node as it may; close one",
            )
            .await;
            tracing::warn!(user = %principal.user, "hello refused: too many connections for the user");
            self.socket.close(CloseCode::TooManyConnections).await;
            return None;
        };
        let session_config = &self.state.config.session;
        let frame = ServerFrame::Welcome {
            protocol: PROTOCOL_VERSION,
            conn_id: self.conn_id.to_string(),
            user: principal.user.clone(),
            role: principal.role,
            clinic: principal.clinic.clone(),
            heartbeat_secs: session_config.heartbeat_interval_secs,
            max_frame_bytes: session_config.max_message_bytes,
            server_time: chrono::Utc::now(),
            expires_at: super::token_life::expiry_time(token.expires_at),
        };
        if let Err(error) = self.socket.send_frame(&frame).await {
            tracing::debug!(error = %error, "welcome not sent");
            return None;
        }
        tracing::info!(user = %principal.user, role = %principal.role, "authenticated");
        Some(
            Session::start(
                self.socket,
                self.state,
                &token,
                checked_at,
                self.conn_id,
                user_slot,
            )
            .await,
        )
    }
}
