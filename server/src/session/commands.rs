//! Handling one decoded command: authorize and run the use case, then answer
//! `ok` or `error` with the command's id. Room bookkeeping (join with replay,
//! leave, dashboard watch) is in `rooms`; the notification commands are in
//! `notify_commands`.

use super::connection::{Flow, Session};
use super::socket::WriteError;
use crate::domain::status::StatusAction;
use crate::hub::topics;
use crate::service::{ServiceError, access, messaging, status};
use axum::extract::ws::Message;
use consult_protocol::{
    ClientFrame, CommandResult, ConsultationId, ErrorCode, MessageKind, ServerFrame,
};
use futures_util::{Sink, Stream};
use std::sync::Arc;

/// Consultations remembered per connection as joined-free memberships.
const MEMBERSHIP_CACHE: usize = 256;

/// Why a command did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// Refused or failed in the use case: answered with an `error` frame.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The socket failed mid-command: the session ends.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The session's token was revoked or expired while the command waited:
    /// no answer; the session loop closes it (4006 or 4005) at once.
    #[error("the session ended while the command waited")]
    SessionEnded,
}

impl From<(ErrorCode, String)> for CommandError {
    fn from(refusal: (ErrorCode, String)) -> Self {
        Self::Service(refusal.into())
    }
}

pub(super) type CommandOutcome = Result<Option<CommandResult>, CommandError>;

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    /// Runs one command and answers it.
    pub(crate) async fn on_client_frame(&mut self, frame: ClientFrame) -> Flow {
        let Some(id) = frame.id().cloned() else {
            return Flow::Continue;
        };
        let kind = frame.kind();
        // A send's `ok` leaves with the sender's own copy in one write, an
        // ack's with the `receipt` frame its flush published to the room
        // (published before the ack is answered). Other answers go alone:
        // written together with the events behind them (a join's presence
        // frames), they grow the socket's write buffer, which every idle
        // connection then keeps (7.7 against 7.2 KiB per idle connection,
        // docs/benchmarks.md).
        let with_queued_events =
            matches!(frame, ClientFrame::Send { .. } | ClientFrame::Ack { .. });
        let started = std::time::Instant::now();
        let flow = match self.dispatch(frame).await {
            Ok(result) if with_queued_events => self.answer(&ServerFrame::ok(id, result)).await,
            Ok(result) => self.send_frame(&ServerFrame::ok(id, result)).await,
            Err(CommandError::Service(error)) => {
                if error.is_internal() {
                    tracing::error!(command = kind, error = %error, "command failed");
                }
                self.send_error(Some(id), error.code(), &error.client_message())
                    .await
            }
            // Events delivered while the command waited found a gap they
            // could not fill (see `deliver_while`).
            Err(CommandError::Write(WriteError::CatchUpFailed)) => {
                Flow::Exit(consult_protocol::CloseCode::InternalError)
            }
            Err(CommandError::Write(error)) => {
                tracing::info!(error = %error, "write failed");
                Flow::Exit(consult_protocol::CloseCode::Normal)
            }
            // The loop's next turn sees the revocation or the expiry.
            Err(CommandError::SessionEnded) => Flow::Continue,
        };
        metrics::histogram!("consult_command_seconds", "command" => kind)
            .record(started.elapsed().as_secs_f64());
        flow
    }

    async fn dispatch(&mut self, frame: ClientFrame) -> CommandOutcome {
        // An id the stores could not both keep (or compare alike) is
        // refused before any look-up or subscription, as the REST API does.
        if let Some(problem) = frame.consultation_id().and_then(ConsultationId::problem) {
            return Err((
                ErrorCode::InvalidValue,
                format!("consultation_id {problem}"),
            )
                .into());
        }
        match frame {
            ClientFrame::Hello { .. } => Err((
                ErrorCode::AlreadyAuthenticated,
                "already authenticated".to_owned(),
            )
                .into()),
            ClientFrame::Refresh { token, .. } => self.refresh(&token).await,
            ClientFrame::Ping { .. } => Ok(Some(CommandResult::Pong {
                server_time: chrono::Utc::now(),
            })),
            ClientFrame::Join {
                consultation_id,
                since,
                ..
            } => self.join(consultation_id, since).await.map(Some),
            ClientFrame::Leave {
                consultation_id, ..
            } => self.leave(&consultation_id).await.map(|()| None),
            ClientFrame::Send {
                consultation_id,
                client_msg_id,
                body,
                ..
            } => self.send_chat(consultation_id, client_msg_id, body).await,
            ClientFrame::Typing {
                consultation_id,
                active,
                ..
            } => {
                self.require_joined(&consultation_id)?;
                messaging::typing(&self.state, &self.principal, &consultation_id, active);
                Ok(None)
            }
            ClientFrame::Ack {
                consultation_id,
                seq,
                receipt,
                ..
            } => {
                // A joined room holds the consultation, and its cursor is a
                // `seq` known to be stored: a receipt up to it needs no read.
                let (known, delivered_up_to) = match self.rooms.get(&topics::room(&consultation_id))
                {
                    Some(room) => (Arc::clone(&room.consultation), room.cursor),
                    None => (self.membership(&consultation_id).await?, 0),
                };
                // The flush takes a few milliseconds; the room's events keep
                // flowing to this connection meanwhile.
                let receipts = self.state.receipts.clone();
                let acknowledged = messaging::acknowledge(
                    &receipts,
                    &self.principal,
                    &known,
                    delivered_up_to,
                    seq,
                    receipt,
                );
                self.deliver_while(acknowledged).await??;
                Ok(None)
            }
            ClientFrame::History {
                consultation_id,
                before,
                limit,
                ..
            } => {
                self.authorize(&consultation_id).await?;
                let (messages, has_more) =
                    messaging::history(&self.state, &consultation_id, before, limit).await?;
                Ok(Some(CommandResult::History { messages, has_more }))
            }
            ClientFrame::Open {
                consultation_id, ..
            } => {
                self.change_status(&consultation_id, StatusAction::Open)
                    .await
            }
            ClientFrame::Ready {
                consultation_id, ..
            } => {
                self.change_status(&consultation_id, StatusAction::Ready)
                    .await
            }
            ClientFrame::Enter {
                consultation_id, ..
            } => {
                self.change_status(&consultation_id, StatusAction::Enter)
                    .await
            }
            ClientFrame::End {
                consultation_id, ..
            } => {
                self.change_status(&consultation_id, StatusAction::End)
                    .await
            }
            ClientFrame::Cancel {
                consultation_id, ..
            } => {
                self.change_status(&consultation_id, StatusAction::Cancel)
                    .await
            }
            ClientFrame::WatchDashboard { provider_id, .. } => {
                self.watch_dashboard(provider_id).await.map(Some)
            }
            frame @ (ClientFrame::QuickMessage { .. }
            | ClientFrame::Alert { .. }
            | ClientFrame::ListTemplates { .. }
            | ClientFrame::SaveTemplate { .. }
            | ClientFrame::DeleteTemplate { .. }
            | ClientFrame::RegisterDevice { .. }
            | ClientFrame::SetSmsConsent { .. }
            | ClientFrame::Visibility { .. }
            | ClientFrame::ListNotifications { .. }) => self.dispatch_notify(frame).await,
            ClientFrame::ListConsultations { include_closed, .. } => {
                let consultations =
                    access::consultations_of(&self.state, &self.principal, include_closed).await?;
                Ok(Some(CommandResult::Consultations {
                    consultations: consultations.iter().map(|c| c.view()).collect(),
                }))
            }
            ClientFrame::UnwatchDashboard { .. } => {
                if let Some((topic, _)) = self.dashboard.take() {
                    self.leave_topic(&topic, None).await;
                }
                Ok(None)
            }
        }
    }

    async fn send_chat(
        &mut self,
        consultation_id: ConsultationId,
        client_msg_id: String,
        body: String,
    ) -> CommandOutcome {
        let known = match self.rooms.get(&topics::room(&consultation_id)) {
            Some(room) => Arc::clone(&room.consultation),
            None => self.membership(&consultation_id).await?,
        };
        let outgoing = messaging::Outgoing {
            consultation_id,
            kind: MessageKind::Chat,
            body,
            client_msg_id: Some(client_msg_id),
            notifications: Vec::new(),
            audit: None,
        };
        let sent = messaging::send(&self.state, &self.principal, outgoing, Some(&known)).await?;
        Ok(Some(CommandResult::Sent {
            seq: sent.seq,
            duplicate: sent.duplicate,
            sent_at: sent.sent_at,
        }))
    }

    /// The consultation, if this principal is a member, from the
    /// connection's cache or the database.
    async fn membership(
        &mut self,
        consultation_id: &ConsultationId,
    ) -> Result<Arc<crate::domain::Consultation>, CommandError> {
        if let Some(known) = self.member_of.get(consultation_id) {
            return Ok(Arc::clone(known));
        }
        let consultation = Arc::new(
            access::authorized_consultation(&self.state, &self.principal, consultation_id).await?,
        );
        if self.member_of.len() >= MEMBERSHIP_CACHE {
            self.member_of.clear();
        }
        self.member_of
            .insert(consultation_id.clone(), consultation.clone());
        Ok(consultation)
    }

    async fn change_status(
        &mut self,
        consultation: &ConsultationId,
        action: StatusAction,
    ) -> CommandOutcome {
        let updated = status::apply(&self.state, &self.principal, consultation, action).await?;
        Ok(Some(CommandResult::Status {
            consultation: updated.view(),
        }))
    }
}
