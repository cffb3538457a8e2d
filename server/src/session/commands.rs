//! Handling one decoded command: authorize and run the use case, then answer
//! `ok` or `error` with the command's id. Room bookkeeping (join with replay,
//! leave, dashboard watch) lives here because it is per-connection state.

use super::connection::{Flow, JoinedRoom, Session};
use super::socket::WriteError;
use crate::broker::Topic;
use crate::domain::status::StatusAction;
use crate::hub::topics;
use crate::service::messaging::Sent;
use crate::service::{
    ServiceError, access, alerts, contacts, dashboard, events, messaging, quick, status, templates,
};
use crate::store::messages as stored_messages;
use axum::extract::ws::{Message, Utf8Bytes};
use consult_protocol::{
    ClientFrame, CommandResult, ConsultationId, ErrorCode, MessageKind, Seq, ServerFrame, UserId,
};
use futures_util::{Sink, Stream};

/// Messages read from the store per replay page.
const REPLAY_PAGE: u64 = 500;

/// Why a command did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// Refused or failed in the use case: answered with an `error` frame.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The socket failed mid-command: the session ends.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<(ErrorCode, String)> for CommandError {
    fn from(refusal: (ErrorCode, String)) -> Self {
        Self::Service(refusal.into())
    }
}

type CommandOutcome = Result<Option<CommandResult>, CommandError>;

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
        match self.dispatch(frame).await {
            Ok(result) => self.send_frame(&ServerFrame::ok(id, result)).await,
            Err(CommandError::Service(error)) => {
                if error.is_internal() {
                    tracing::error!(command = kind, error = %error, "command failed");
                }
                self.send_error(Some(id), error.code(), &error.client_message())
                    .await
            }
            Err(CommandError::Write(error)) => {
                tracing::info!(error = %error, "write failed");
                Flow::Exit(consult_protocol::CloseCode::Normal)
            }
        }
    }

    async fn dispatch(&mut self, frame: ClientFrame) -> CommandOutcome {
        match frame {
            ClientFrame::Hello { .. } => Err((
                ErrorCode::AlreadyAuthenticated,
                "already authenticated".to_owned(),
            )
                .into()),
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
                messaging::typing(&self.state, &self.principal, &consultation_id, active).await;
                Ok(None)
            }
            ClientFrame::Ack {
                consultation_id,
                seq,
                receipt,
                ..
            } => {
                self.authorize(&consultation_id).await?;
                messaging::acknowledge(
                    &self.state,
                    &self.principal,
                    &consultation_id,
                    seq,
                    receipt,
                )
                .await?;
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
            ClientFrame::QuickMessage {
                consultation_id,
                template_id,
                variables,
                client_msg_id,
                ..
            } => {
                let quick = quick::QuickMessage {
                    consultation_id,
                    template_id,
                    variables,
                    client_msg_id,
                };
                let sent = quick::send(&self.state, &self.principal, quick).await?;
                Ok(Some(notified(sent)))
            }
            ClientFrame::Alert {
                consultation_id,
                body,
                channels,
                client_msg_id,
                ..
            } => {
                let alert = alerts::Alert {
                    consultation_id,
                    body,
                    channels,
                    client_msg_id,
                };
                let sent = alerts::send(&self.state, &self.principal, alert).await?;
                Ok(Some(notified(sent)))
            }
            ClientFrame::ListTemplates { provider_id, .. } => {
                let templates = templates::list(&self.state, &self.principal, provider_id).await?;
                Ok(Some(CommandResult::Templates { templates }))
            }
            ClientFrame::SaveTemplate {
                template_id,
                provider_id,
                title,
                body,
                position,
                ..
            } => {
                let input = templates::TemplateInput {
                    template_id,
                    provider_id,
                    title,
                    body,
                    position,
                };
                let template = templates::save(&self.state, &self.principal, input).await?;
                Ok(Some(CommandResult::Template { template }))
            }
            ClientFrame::DeleteTemplate { template_id, .. } => {
                templates::delete(&self.state, &self.principal, &template_id).await?;
                Ok(None)
            }
            ClientFrame::RegisterDevice {
                platform,
                token,
                notifications_enabled,
                ..
            } => {
                contacts::register_device(
                    &self.state,
                    &self.principal,
                    platform,
                    &token,
                    notifications_enabled,
                )
                .await?;
                Ok(None)
            }
            ClientFrame::SetSmsConsent { consent, .. } => {
                contacts::set_sms_consent(&self.state, &self.principal, consent).await?;
                Ok(None)
            }
            ClientFrame::Visibility { foreground, .. } => {
                if foreground != self.foreground {
                    self.foreground = foreground;
                    self.state
                        .presence
                        .set_foreground(&self.principal.user, foreground)
                        .await;
                }
                Ok(None)
            }
            ClientFrame::ListConsultations { include_closed, .. } => {
                let consultations =
                    access::consultations_of(&self.state, &self.principal, include_closed).await?;
                Ok(Some(CommandResult::Consultations {
                    consultations: consultations.iter().map(|c| c.view()).collect(),
                }))
            }
            ClientFrame::ListNotifications {
                consultation_id, ..
            } => {
                if !self.principal.role.is_staff() {
                    return Err((
                        ErrorCode::Forbidden,
                        "only staff see notification outcomes".to_owned(),
                    )
                        .into());
                }
                self.authorize(&consultation_id).await?;
                let rows = crate::store::outbox::for_consultation(
                    self.state.store.connection(),
                    &consultation_id,
                )
                .await
                .map_err(ServiceError::from)?;
                Ok(Some(CommandResult::Notifications {
                    notifications: rows.iter().map(|row| row.view()).collect(),
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

    fn require_joined(&self, consultation: &ConsultationId) -> Result<(), CommandError> {
        if self.rooms.contains_key(&topics::room(consultation)) {
            Ok(())
        } else {
            Err((
                ErrorCode::NotJoined,
                format!("join consultation {consultation} first"),
            )
                .into())
        }
    }

    /// Checks membership, skipping the look-up for joined rooms.
    async fn authorize(&mut self, consultation: &ConsultationId) -> Result<(), CommandError> {
        if !self.rooms.contains_key(&topics::room(consultation)) {
            access::authorized_consultation(&self.state, &self.principal, consultation).await?;
        }
        Ok(())
    }

    async fn send_chat(
        &mut self,
        consultation_id: ConsultationId,
        client_msg_id: String,
        body: String,
    ) -> CommandOutcome {
        let known = self
            .rooms
            .get(&topics::room(&consultation_id))
            .map(|room| room.consultation.clone());
        let outgoing = messaging::Outgoing {
            consultation_id,
            kind: MessageKind::Chat,
            body,
            client_msg_id: Some(client_msg_id),
            notifications: Vec::new(),
        };
        let sent = messaging::send(&self.state, &self.principal, outgoing, known.as_ref()).await?;
        Ok(Some(CommandResult::Sent {
            seq: sent.seq,
            duplicate: sent.duplicate,
            sent_at: sent.sent_at,
        }))
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

    /// Subscribes first, then replays from the store, then goes live; the
    /// cursor drops live duplicates of replayed messages.
    async fn join(
        &mut self,
        consultation_id: ConsultationId,
        since: Option<Seq>,
    ) -> Result<CommandResult, CommandError> {
        let consultation =
            access::authorized_consultation(&self.state, &self.principal, &consultation_id).await?;
        if let Some(since) = since {
            if since.get() > consultation.last_seq {
                return Err((
                    ErrorCode::InvalidValue,
                    format!(
                        "since {since} is beyond the last message ({})",
                        consultation.last_seq
                    ),
                )
                    .into());
            }
        }
        let topic = topics::room(&consultation_id);
        let newly_joined = !self.rooms.contains_key(&topic);
        if newly_joined {
            self.enter_topic(topic.clone()).await;
        }
        let mut cursor = since.map_or(consultation.last_seq, Seq::get);
        if let Some(room) = self.rooms.get(&topic) {
            cursor = cursor.max(room.cursor);
        }
        let replayed = self.replay(&consultation_id, &mut cursor).await?;
        self.rooms.insert(
            topic.clone(),
            JoinedRoom {
                consultation_id: consultation_id.clone(),
                consultation: consultation.clone(),
                cursor,
            },
        );
        if newly_joined {
            self.announce_presence(&consultation_id, true).await;
        }
        let mut view = consultation.view();
        view.last_seq = Seq(view.last_seq.get().max(cursor));
        Ok(CommandResult::Joined {
            consultation: view,
            members: self.state.hub.members(&topic),
            replayed,
        })
    }

    /// Writes every stored message after `cursor`, advancing it.
    async fn replay(
        &mut self,
        consultation: &ConsultationId,
        cursor: &mut u64,
    ) -> Result<u32, CommandError> {
        let mut replayed = 0u32;
        loop {
            let page = stored_messages::after(
                self.state.store.connection(),
                consultation,
                *cursor,
                REPLAY_PAGE,
            )
            .await
            .map_err(ServiceError::from)?;
            let full_page = page.len() as u64 == REPLAY_PAGE;
            for message in page {
                *cursor = message.seq.get();
                replayed = replayed.saturating_add(1);
                let frame = ServerFrame::Message { message };
                self.socket
                    .feed(Message::Text(Utf8Bytes::from(frame.to_json())))
                    .await?;
            }
            self.socket.flush().await?;
            if !full_page {
                return Ok(replayed);
            }
        }
    }

    /// Catches `topic` up from the database after events may have been lost:
    /// a room replays what came after its cursor; the dashboard resends
    /// every row (clients keep the highest `rev`).
    pub(crate) async fn catch_up(&mut self, topic: &Topic) -> Result<(), WriteError> {
        if let Some(room) = self.rooms.get(topic) {
            let consultation = room.consultation_id.clone();
            let mut cursor = room.cursor;
            match self.replay(&consultation, &mut cursor).await {
                Ok(_) => {}
                Err(CommandError::Write(error)) => return Err(error),
                Err(CommandError::Service(error)) => {
                    tracing::error!(error = %error, "catch-up from the database failed");
                    return Err(WriteError::CatchUpFailed);
                }
            }
            if let Some(room) = self.rooms.get_mut(topic) {
                room.cursor = room.cursor.max(cursor);
            }
            return Ok(());
        }
        let Some((current, feed)) = self.dashboard.clone() else {
            return Ok(());
        };
        if &current != topic {
            return Ok(());
        }
        match dashboard::snapshot(&self.state, &self.principal, &feed).await {
            Ok(entries) => {
                for entry in entries {
                    let frame = ServerFrame::Dashboard { entry };
                    self.socket
                        .feed(Message::Text(Utf8Bytes::from(frame.to_json())))
                        .await?;
                }
                self.socket.flush().await
            }
            Err(error) => {
                tracing::error!(error = %error, "dashboard catch-up failed");
                Ok(())
            }
        }
    }

    async fn leave(&mut self, consultation: &ConsultationId) -> Result<(), CommandError> {
        let topic = topics::room(consultation);
        if self.rooms.remove(&topic).is_none() {
            return Err((
                ErrorCode::NotJoined,
                format!("consultation {consultation} is not joined"),
            )
                .into());
        }
        self.leave_topic(&topic, Some(consultation)).await;
        Ok(())
    }

    async fn watch_dashboard(
        &mut self,
        provider: Option<UserId>,
    ) -> Result<CommandResult, CommandError> {
        let feed = dashboard::feed_for(&self.principal, provider)?;
        let topic = dashboard::topic(&self.principal, &feed);
        if self.dashboard.as_ref().map(|(current, _)| current) != Some(&topic) {
            if let Some((previous, _)) = self.dashboard.take() {
                self.leave_topic(&previous, None).await;
            }
            self.enter_topic(topic.clone()).await;
            self.dashboard = Some((topic, feed.clone()));
        }
        let entries = dashboard::snapshot(&self.state, &self.principal, &feed).await?;
        Ok(CommandResult::DashboardSnapshot { entries })
    }

    async fn enter_topic(&mut self, topic: Topic) {
        if self.state.hub.subscribe(topic.clone(), self.subscriber()) {
            if let Err(error) = self.state.broker.subscribe(&topic).await {
                tracing::warn!(error = %error, topic = %topic, "broker subscribe failed");
            }
        }
    }

    /// Unsubscribes from `topic`; for a room, tells it this user left.
    pub(crate) async fn leave_topic(&mut self, topic: &Topic, room: Option<&ConsultationId>) {
        if self.state.hub.unsubscribe(topic, self.conn_id) {
            if let Err(error) = self.state.broker.unsubscribe(topic).await {
                tracing::warn!(error = %error, topic = %topic, "broker unsubscribe failed");
            }
        }
        if let Some(consultation) = room {
            if self.state.hub.connections_of(topic, &self.principal.user) == 0 {
                self.announce_presence(consultation, false).await;
            }
        }
    }

    async fn announce_presence(&mut self, consultation: &ConsultationId, online: bool) {
        let frame = ServerFrame::Presence {
            consultation_id: consultation.clone(),
            user: self.principal.user.clone(),
            role: self.principal.role,
            online,
        };
        events::publish(&self.state, topics::room(consultation), None, &frame).await;
    }
}

fn notified(sent: Sent) -> CommandResult {
    CommandResult::Notified {
        seq: sent.seq,
        duplicate: sent.duplicate,
        sent_at: sent.sent_at,
        notifications: sent.notifications,
    }
}
