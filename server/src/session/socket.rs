//! The connection's socket: reading frames, and writing frames and closes,
//! each write under the write timeout. A close is a handshake: after the
//! close frame the socket keeps reading (and discarding) until the client's
//! own close frame or [`CLOSE_DRAIN`], so that a client still writing does
//! not draw a TCP reset that would discard the answers sent before it.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use consult_protocol::{CloseCode, ServerFrame};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::time::Duration;

/// How long a close waits for the client's close frame, reading and
/// discarding what the client still sends, before the socket is dropped.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// Why a write failed; either way the connection is finished.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The peer did not read within the write timeout.
    #[error("write timed out")]
    TimedOut,
    /// The socket failed or is closed.
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
    /// Events may be missing and the database could not fill the gap: the
    /// session closes (1011) so that the client resumes from its last
    /// sequence number instead of reading past the gap.
    #[error("could not catch up from the database")]
    CatchUpFailed,
}

/// A socket with a write timeout.
#[derive(Debug)]
pub struct Socket<S> {
    inner: S,
    write_timeout: Duration,
}

impl<S> Socket<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    /// The next inbound message; cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Message, axum::Error>> {
        self.inner.next().await
    }
}

impl<S> Socket<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    /// Wraps `inner`.
    pub fn new(inner: S, write_timeout: Duration) -> Self {
        Self {
            inner,
            write_timeout,
        }
    }

    /// Encodes and sends one frame, flushing.
    ///
    /// # Errors
    ///
    /// [`WriteError`] when the socket fails or the write times out.
    pub async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), WriteError> {
        self.send(Message::Text(Utf8Bytes::from(frame.to_json())))
            .await
    }

    /// Sends one message, flushing.
    ///
    /// # Errors
    ///
    /// [`WriteError`] when the socket fails or the write times out.
    pub async fn send(&mut self, message: Message) -> Result<(), WriteError> {
        tokio::time::timeout(self.write_timeout, self.inner.send(message))
            .await
            .map_err(|_| WriteError::TimedOut)??;
        Ok(())
    }

    /// Queues one message without flushing.
    ///
    /// # Errors
    ///
    /// [`WriteError`] when the socket fails or the write times out.
    pub async fn feed(&mut self, message: Message) -> Result<(), WriteError> {
        tokio::time::timeout(self.write_timeout, self.inner.feed(message))
            .await
            .map_err(|_| WriteError::TimedOut)??;
        Ok(())
    }

    /// Flushes what was fed.
    ///
    /// # Errors
    ///
    /// [`WriteError`] when the socket fails or the write times out.
    pub async fn flush(&mut self) -> Result<(), WriteError> {
        tokio::time::timeout(self.write_timeout, self.inner.flush())
            .await
            .map_err(|_| WriteError::TimedOut)??;
        Ok(())
    }
}

impl<S> Socket<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    /// Sends a close frame with `code`, then reads and discards until the
    /// client's close frame, the end of the stream or [`CLOSE_DRAIN`];
    /// failures are logged, not returned, since the connection ends either
    /// way.
    pub async fn close(&mut self, code: CloseCode) {
        metrics::counter!("consult_session_closes_total", "code" => code.code().to_string())
            .increment(1);
        let frame = CloseFrame {
            code: code.code(),
            reason: Utf8Bytes::from_static(code.reason()),
        };
        if let Err(error) = self.send(Message::Close(Some(frame))).await {
            tracing::debug!(error = %error, "close frame not sent");
            return;
        }
        let drained = tokio::time::timeout(CLOSE_DRAIN, async {
            while let Some(Ok(message)) = self.inner.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::debug!(
                close = code.code(),
                "no close frame from the client in time"
            );
        }
    }
}
