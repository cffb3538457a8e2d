//! The authenticated session: one task owning the socket, selecting over
//! shutdown, slow-consumer kick, token revocation and expiry, the outbound
//! queue, inbound frames and the heartbeat. Each branch is one named call. One exit path always runs:
//! unsubscribe from the hub (by connection id), tell the broker, mark the
//! user offline, send the close frame, record metrics.

use super::commands::CommandError;
use super::ending::{Cause, Ending};
use super::rate_limit::TokenBucket;
use super::socket::{Socket, WriteError};
use crate::app::AppState;
use crate::auth::{Principal, VerifiedToken};
use crate::broker::{Event, Topic};
use crate::connection_slots::UserSlot;
use crate::domain::PersonKey;
use crate::hub::Subscriber;
use axum::extract::ws::{Message, Utf8Bytes};
use consult_protocol::{
    ClientFrame, CloseCode, CommandId, ConsultationId, ErrorCode, ServerFrame, decode_client_frame,
};
use futures_util::{Sink, Stream};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

/// Frames written per flush at most when draining the outbound queue.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// A room this connection has joined.
#[derive(Debug, Clone)]
pub(crate) struct JoinedRoom {
    pub(crate) consultation_id: ConsultationId,
    /// The consultation as it was at join; only its participants are relied
    /// on (they never change), which spares a look-up per message. Shared,
    /// so that a send takes it without copying its strings.
    pub(crate) consultation: Arc<crate::domain::Consultation>,
    /// Highest sequence number delivered; lower ones are duplicates.
    pub(crate) cursor: u64,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Close with this code.
    Close(CloseCode),
    /// The socket is gone; nothing to send.
    Gone,
}

/// What to do after handling an inbound frame.
pub(crate) enum Flow {
    Continue,
    Exit(CloseCode),
}

/// An authenticated connection.
#[derive(Debug)]
pub struct Session<S> {
    pub(crate) socket: Socket<S>,
    pub(crate) state: Arc<AppState>,
    pub(crate) principal: Principal,
    pub(crate) conn_id: u64,
    outbound_tx: mpsc::Sender<Arc<Event>>,
    outbound_rx: mpsc::Receiver<Arc<Event>>,
    /// The node's shutdown, the hub's kick and the token's revocation.
    pub(crate) ending: Ending,
    pub(crate) rooms: HashMap<Topic, JoinedRoom>,
    /// The watched dashboard feed, if any.
    pub(crate) dashboard: Option<(Topic, crate::service::dashboard::Feed)>,
    limiter: TokenBucket,
    strikes: u32,
    last_heard: Instant,
    /// The app is in the foreground (as it last said with `visibility`).
    pub(crate) foreground: bool,
    /// Consultations this principal was found to be a member of without
    /// joining them (membership never changes), sparing a read per send.
    pub(crate) member_of: HashMap<ConsultationId, Arc<crate::domain::Consultation>>,
    /// When the token (plus leeway) runs out; `refresh` moves it.
    pub(crate) expires_at: Instant,
    /// This connection's place under the user's connection cap.
    _user_slot: UserSlot,
}

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    pub(crate) async fn start(
        socket: Socket<S>,
        state: Arc<AppState>,
        token: &VerifiedToken,
        checked_at: std::time::Instant,
        conn_id: u64,
        user_slot: UserSlot,
    ) -> Self {
        let principal = token.principal.clone();
        let session_config = &state.config.session;
        let (outbound_tx, outbound_rx) = mpsc::channel(session_config.outbound_queue_capacity);
        let limiter = TokenBucket::new(
            session_config.rate_limit_per_sec,
            session_config.rate_limit_burst,
        );
        state
            .presence
            .connected(&PersonKey::of(&principal), true)
            .await;
        metrics::gauge!("consult_connections_active").increment(1.0);
        let ending = Ending::under(&state.sessions_shutdown);
        let mut session = Self {
            socket,
            state,
            principal,
            conn_id,
            outbound_tx,
            outbound_rx,
            ending,
            rooms: HashMap::new(),
            dashboard: None,
            limiter,
            strikes: 0,
            last_heard: Instant::now(),
            foreground: true,
            member_of: HashMap::new(),
            expires_at: Instant::now(),
            _user_slot: user_slot,
        };
        session.adopt_token(token, checked_at);
        session
    }

    /// This connection as a hub subscriber, admitted as a member or not
    /// yet (see [`crate::hub`]).
    pub(crate) fn subscriber(&self, admitted: bool) -> Subscriber {
        Subscriber {
            conn_id: self.conn_id,
            user: self.principal.user.clone(),
            role: self.principal.role,
            outbound_tx: self.outbound_tx.clone(),
            slow_consumer: self.ending.slow_consumer().clone(),
            admitted,
        }
    }

    /// Runs until the client leaves, misbehaves, or the hub shuts down.
    ///
    /// Not an `async fn` with `#[tracing::instrument]`: that keeps the body's
    /// future twice (as a local and inside `Instrumented`), and this future
    /// is what every idle connection costs.
    pub fn run(self) -> impl std::future::Future<Output = ()> + Send {
        let span =
            tracing::info_span!("session", conn_id = self.conn_id, user = %self.principal.user);
        Box::new(self).run_loop().instrument(span)
    }

    /// The session loop. Every handler is boxed: an idle session's state
    /// machine then holds only the loop's own state, not room for the
    /// largest handler (the boxes live only while an event is handled).
    async fn run_loop(mut self: Box<Self>) {
        let heartbeat_every =
            Duration::from_secs(self.state.config.session.heartbeat_interval_secs);
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let watch = self.ending.watch();
        let mut ended = std::pin::pin!(watch.cancelled());
        let mut expiry = Box::pin(tokio::time::sleep_until(self.expires_at));
        let exit = loop {
            tokio::select! {
                biased;
                () = &mut ended => match self.ending.cause(&self.state.sessions_shutdown) {
                    Some(Cause::Shutdown) => break Box::pin(self.on_shutdown()).await,
                    Some(Cause::SlowConsumer) => break Exit::Close(CloseCode::SlowConsumer),
                    Some(Cause::Revoked) | None => {
                        Box::pin(self.on_revoked()).await;
                        break Exit::Close(CloseCode::TokenRevoked);
                    }
                },
                () = &mut expiry => {
                    if Instant::now() >= self.expires_at {
                        Box::pin(self.on_expired()).await;
                        break Exit::Close(CloseCode::TokenExpired);
                    }
                    expiry.as_mut().reset(self.expires_at);
                }
                Some(event) = self.outbound_rx.recv() => {
                    match Box::pin(self.on_hub_event(event)).await {
                        Ok(()) => {}
                        Err(WriteError::CatchUpFailed) => {
                            break Exit::Close(CloseCode::InternalError);
                        }
                        Err(error) => {
                            tracing::info!(error = %error, "write failed");
                            break Exit::Gone;
                        }
                    }
                }
                inbound = self.socket.next() => match Box::pin(self.on_inbound(inbound)).await {
                    Flow::Continue => {
                        // A `refresh` may have moved the deadline either way.
                        if expiry.deadline() != self.expires_at {
                            expiry.as_mut().reset(self.expires_at);
                        }
                    }
                    Flow::Exit(code) => break Exit::Close(code),
                },
                _ = heartbeat.tick() => {
                    if let Some(exit) = Box::pin(self.on_heartbeat()).await {
                        break exit;
                    }
                }
            }
        };
        Box::pin(self.finish(exit)).await;
    }

    /// Awaits `work` (a command waiting on the store) while delivering the
    /// hub events that arrive meanwhile, as the session loop would: events
    /// may come between answers (protocol.md, "Envelope"), so a command
    /// that waits, such as an `ack` for its receipt flush, does not hold
    /// back the room's messages. Only for commands whose answer has no
    /// order to keep with events: a `send`'s `ok` must come before the
    /// sender's own copy, so it does not take this way.
    ///
    /// As in the session loop, a revocation or the token's expiry ends the
    /// wait at once: the work is dropped unanswered
    /// ([`CommandError::SessionEnded`]) and nothing more is delivered. A
    /// shutdown or a kick does not: the work is answered, and the session
    /// loop then ends the session.
    pub(crate) async fn deliver_while<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, CommandError> {
        let mut work = std::pin::pin!(work);
        let watch = self.ending.watch();
        let mut ended = std::pin::pin!(watch.cancelled());
        let mut watching = true;
        let mut expiry = std::pin::pin!(tokio::time::sleep_until(self.expires_at));
        loop {
            tokio::select! {
                biased;
                () = &mut ended, if watching => {
                    let cause = self.ending.cause(&self.state.sessions_shutdown);
                    if matches!(cause, Some(Cause::Revoked) | None) {
                        return Err(CommandError::SessionEnded);
                    }
                    watching = false;
                }
                () = &mut expiry => return Err(CommandError::SessionEnded),
                done = &mut work => return Ok(done),
                Some(event) = self.outbound_rx.recv() => {
                    Box::pin(self.on_hub_event(event)).await?;
                }
            }
        }
    }

    /// Delivers one hub event and whatever else is queued, then flushes once.
    async fn on_hub_event(&mut self, first: Arc<Event>) -> Result<(), WriteError> {
        let written = usize::from(self.feed_event(&first).await?);
        if self.feed_queued(written).await? > 0 {
            self.socket.flush().await?;
        }
        Ok(())
    }

    /// Feeds the hub events already queued, up to [`MAX_FRAMES_PER_FLUSH`]
    /// frames counting the `written` ones fed before; the total fed.
    async fn feed_queued(&mut self, mut written: usize) -> Result<usize, WriteError> {
        while written < MAX_FRAMES_PER_FLUSH {
            match self.outbound_rx.try_recv() {
                Ok(event) => written += usize::from(self.feed_event(&event).await?),
                Err(_) => break,
            }
        }
        Ok(written)
    }

    /// Sends a command's answer and, in the same write, the hub events
    /// already queued behind it. A sender's own copy of its message is
    /// queued before its `ok` is ready (the writer publishes, then answers),
    /// so the two leave in one write, the `ok` first as the protocol
    /// promises.
    ///
    /// An answer larger than the session's answer ceiling would overflow
    /// what the connection may buffer (and lose the connection): an
    /// `answer_too_large` error for the same command goes in its place.
    pub(crate) async fn answer(&mut self, frame: &ServerFrame) -> Flow {
        let encoded = match self.encode_within_ceiling(frame) {
            Ok(encoded) => encoded,
            Err(id) => return self.refuse_too_large(id).await,
        };
        let written = async {
            self.socket
                .feed(Message::Text(Utf8Bytes::from(encoded)))
                .await?;
            self.feed_queued(1).await?;
            self.socket.flush().await
        }
        .await;
        match written {
            Ok(()) => Flow::Continue,
            Err(WriteError::CatchUpFailed) => Flow::Exit(CloseCode::InternalError),
            Err(error) => {
                tracing::info!(error = %error, "write failed");
                Flow::Exit(CloseCode::Normal)
            }
        }
    }

    /// Feeds one event unless it is a duplicate of a replayed message. A
    /// resync marker, or a message beyond the next expected sequence number
    /// (a gap), first catches the room up from the database.
    ///
    /// After a gap fill the cursor stands at what the database holds, and
    /// the event itself is never fed: it was replayed with the rest, or the
    /// database does not hold its `seq` (a bogus event). Only the database
    /// moves a cursor past the next expected `seq`, so a bogus `seq` cannot
    /// make the next real message look like a duplicate.
    async fn feed_event(&mut self, event: &Event) -> Result<bool, WriteError> {
        // A room this connection subscribed to but was refused (see
        // `join`), or left, may still have events queued here.
        if !self.rooms.contains_key(&event.topic)
            && self
                .dashboard
                .as_ref()
                .is_none_or(|(topic, _)| *topic != event.topic)
        {
            return Ok(false);
        }
        if event.is_resync() {
            Box::pin(self.catch_up(&event.topic)).await?;
            return Ok(true);
        }
        if let (Some(seq), Some(cursor)) = (
            event.seq,
            self.rooms.get(&event.topic).map(|room| room.cursor),
        ) {
            if seq > cursor.saturating_add(1) {
                metrics::counter!("consult_gap_fills_total").increment(1);
                Box::pin(self.catch_up(&event.topic)).await?;
                let held = self.rooms.get(&event.topic).map(|room| room.cursor);
                if held.is_some_and(|held| seq > held) {
                    metrics::counter!("consult_events_not_in_database_total").increment(1);
                    tracing::warn!(
                        topic = %event.topic,
                        seq,
                        "dropped an event whose seq the database does not hold"
                    );
                }
                return Ok(false);
            }
            let Some(room) = self.rooms.get_mut(&event.topic) else {
                return Ok(false);
            };
            if seq <= room.cursor {
                return Ok(false);
            }
            room.cursor = seq;
        }
        let Ok(text) = Utf8Bytes::try_from(event.frame.clone()) else {
            tracing::error!(topic = %event.topic, "dropping an event that is not UTF-8");
            return Ok(false);
        };
        self.socket.feed(Message::Text(text)).await?;
        Ok(true)
    }

    async fn on_inbound(&mut self, inbound: Option<Result<Message, axum::Error>>) -> Flow {
        let message = match inbound {
            None => return Flow::Exit(CloseCode::Normal),
            Some(Err(error)) => {
                tracing::info!(error = %error, "read failed");
                return Flow::Exit(read_error_close_code(&error));
            }
            Some(Ok(message)) => message,
        };
        self.last_heard = Instant::now();
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            if let Some(flow) = self.over_rate_limit(&message).await {
                return flow;
            }
        }
        match message {
            Message::Text(text) => self.on_text(&text).await,
            Message::Binary(_) => {
                self.send_error(
                    None,
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not supported",
                )
                .await
            }
            Message::Close(_) => Flow::Exit(CloseCode::Normal),
            Message::Ping(_) | Message::Pong(_) => Flow::Continue,
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        if text.len() > self.state.config.session.max_message_bytes {
            return self
                .send_error(
                    None,
                    ErrorCode::FrameTooLarge,
                    "frame exceeds the size limit",
                )
                .await;
        }
        match decode_client_frame(text) {
            Ok(ClientFrame::Hello { .. }) => {
                self.send_error(
                    None,
                    ErrorCode::AlreadyAuthenticated,
                    "already authenticated",
                )
                .await
            }
            // Boxed: command futures are large and short-lived; inlined, they
            // would make every idle session's state machine as big as the
            // largest of them.
            Ok(frame) => Box::pin(self.on_client_frame(frame)).await,
            Err(error) => self.send_error(error.id, error.code, &error.message).await,
        }
    }

    /// Counts a data frame against the rate limit; `Some` when it is refused
    /// (an error frame, or the close after too many refusals in a row).
    async fn over_rate_limit(&mut self, message: &Message) -> Option<Flow> {
        if self.limiter.try_take() {
            self.strikes = 0;
            return None;
        }
        self.strikes += 1;
        if self.strikes > self.state.config.session.rate_limit_strikes {
            return Some(Flow::Exit(CloseCode::RateLimitExceeded));
        }
        let id = match message {
            Message::Text(text) if text.len() <= self.state.config.session.max_message_bytes => {
                decode_client_frame(text).ok().and_then(|f| f.id().cloned())
            }
            _ => None,
        };
        Some(
            self.send_error(id, ErrorCode::RateLimited, "too many commands; slow down")
                .await,
        )
    }

    async fn on_heartbeat(&mut self) -> Option<Exit> {
        let idle = Duration::from_secs(self.state.config.session.idle_timeout_secs);
        if self.last_heard.elapsed() >= idle {
            return Some(Exit::Close(CloseCode::IdleTimeout));
        }
        match self.socket.send(Message::Ping(bytes::Bytes::new())).await {
            Ok(()) => None,
            Err(_) => Some(Exit::Gone),
        }
    }

    /// Flushes what is queued, then says goodbye with 1001 (reconnect).
    async fn on_shutdown(&mut self) -> Exit {
        while let Ok(event) = self.outbound_rx.try_recv() {
            if self.on_hub_event(event).await.is_err() {
                return Exit::Gone;
            }
        }
        Exit::Close(CloseCode::GoingAway)
    }

    /// Sends an error frame; a failed write ends the session.
    pub(crate) async fn send_error(
        &mut self,
        id: Option<CommandId>,
        code: ErrorCode,
        message: &str,
    ) -> Flow {
        metrics::counter!("consult_client_errors_total", "code" => code.as_str()).increment(1);
        // The code only: the message may quote what the client sent (a name
        // or a health term a privacy refusal names), which never goes to the log.
        tracing::info!(code = %code, "error sent to client");
        self.send_frame(&ServerFrame::error(id, code, message))
            .await
    }

    /// `frame` encoded; or, when it is larger than the session's answer
    /// ceiling (it would overflow what the connection may buffer, and lose
    /// the connection), the id of the command it answers.
    fn encode_within_ceiling(&self, frame: &ServerFrame) -> Result<String, Option<CommandId>> {
        let encoded = frame.to_json();
        if encoded.len() <= self.state.config.session.answer_ceiling_bytes() {
            return Ok(encoded);
        }
        tracing::warn!(bytes = encoded.len(), "answer too large for the connection");
        Err(match frame {
            ServerFrame::Ok { id, .. } | ServerFrame::Error { id: Some(id), .. } => {
                Some(id.clone())
            }
            _ => None,
        })
    }

    /// Answers command `id` with `answer_too_large` in place of an answer
    /// that does not fit.
    async fn refuse_too_large(&mut self, id: Option<CommandId>) -> Flow {
        self.send_error(
            id,
            ErrorCode::AnswerTooLarge,
            "the answer is larger than this connection may buffer; ask for less",
        )
        .await
    }

    /// Sends a frame (an answer too large for the connection is refused
    /// instead); a failed write ends the session.
    pub(crate) async fn send_frame(&mut self, frame: &ServerFrame) -> Flow {
        let encoded = match self.encode_within_ceiling(frame) {
            Ok(encoded) => encoded,
            Err(id) => return Box::pin(self.refuse_too_large(id)).await,
        };
        match self
            .socket
            .send(Message::Text(Utf8Bytes::from(encoded)))
            .await
        {
            Ok(()) => Flow::Continue,
            Err(error) => {
                tracing::info!(error = %error, "write failed");
                Flow::Exit(CloseCode::Normal)
            }
        }
    }

    async fn finish(&mut self, exit: Exit) {
        self.state.revocations.untrack(self.conn_id);
        let rooms: Vec<(Topic, JoinedRoom)> = self.rooms.drain().collect();
        for (topic, room) in rooms {
            self.leave_topic(&topic, Some(&room.consultation_id)).await;
        }
        if let Some((topic, _)) = self.dashboard.take() {
            self.leave_topic(&topic, None).await;
        }
        self.state
            .presence
            .disconnected(&PersonKey::of(&self.principal), self.foreground)
            .await;
        metrics::gauge!("consult_connections_active").decrement(1.0);
        match exit {
            Exit::Close(code) => {
                if code == CloseCode::SlowConsumer {
                    tracing::warn!("closing slow consumer");
                }
                self.socket.close(code).await;
            }
            Exit::Gone => {
                metrics::counter!("consult_session_closes_total", "code" => "gone").increment(1);
            }
        }
        tracing::info!(?exit, "session ended");
    }
}

/// The close code for a failed read: 1009 when the frame exceeded the hard
/// size cap, 1007 for a text frame that is not UTF-8, 1000 otherwise.
pub(crate) fn read_error_close_code(error: &axum::Error) -> CloseCode {
    let text = error.to_string();
    if text.contains("Message too long") || text.contains("too big") || text.contains("Space limit")
    {
        CloseCode::MessageTooBig
    } else if text.contains("UTF-8") {
        CloseCode::InvalidPayload
    } else {
        CloseCode::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::Session;
    use axum::extract::ws::WebSocket;
    use std::future::Future;
    use std::sync::Arc;

    /// The size of the future a two-argument function returns.
    fn future_size<A, B, F, Fut>(_: &F) -> usize
    where
        F: FnOnce(A, B) -> Fut,
        Fut: Future,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connection's task holds this future for as long as it is
    /// connected: it must keep only the loop's own state (the session itself
    /// is boxed, handlers are boxed while they run). It was 5 KiB when the
    /// session value and the largest handler were kept inline.
    #[test]
    fn connection_task_future_stays_small() {
        let task = future_size(&crate::session::run::<WebSocket>);
        assert!(task <= 512, "connection task future is {task} bytes");
        let session = std::mem::size_of::<Session<WebSocket>>();
        assert!(session <= 768, "session is {session} bytes");
    }

    #[test]
    fn future_size_measures_the_returned_future() {
        async fn holds(buffer: [u8; 600], state: Arc<()>) {
            tokio::task::yield_now().await;
            drop((buffer.len(), state));
        }
        assert!(future_size(&holds) >= 600);
    }
}
