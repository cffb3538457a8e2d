//! Per-connection room bookkeeping: joining with replay, catching up after
//! lost events, leaving, watching the dashboard, and the hub and broker
//! subscriptions behind them.

use super::commands::CommandError;
use super::connection::{JoinedRoom, Session};
use super::socket::WriteError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::broker::Topic;
use crate::domain::Consultation;
use crate::hub::topics;
use crate::service::{ServiceError, access, dashboard, events, reach};
use crate::store::messages as stored_messages;
use axum::extract::ws::{Message, Utf8Bytes};
use consult_protocol::{CommandResult, ConsultationId, ErrorCode, Seq, ServerFrame, UserId};
use futures_util::{Sink, Stream};
use std::sync::Arc;

/// Messages read from the store per replay page.
const REPLAY_PAGE: u64 = 500;

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    pub(super) fn require_joined(&self, consultation: &ConsultationId) -> Result<(), CommandError> {
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
    pub(super) async fn authorize(
        &mut self,
        consultation: &ConsultationId,
    ) -> Result<(), CommandError> {
        if !self.rooms.contains_key(&topics::room(consultation)) {
            access::authorized_consultation(&self.state, &self.principal, consultation).await?;
        }
        Ok(())
    }

    /// Subscribes first, then reads the room (checking membership), then
    /// replays from the store, then goes live; the cursor drops live
    /// duplicates of replayed messages. A first join without `since`
    /// starts at the room's last message as read: the subscription was
    /// confirmed before that read, so whatever is committed after it
    /// arrives live, and nothing needs replaying.
    pub(super) async fn join(
        &mut self,
        consultation_id: ConsultationId,
        since: Option<Seq>,
    ) -> Result<CommandResult, CommandError> {
        let topic = topics::room(&consultation_id);
        let newly_joined = !self.rooms.contains_key(&topic);
        if newly_joined {
            self.enter_topic(topic.clone(), false).await;
        }
        let consultation =
            match room_to_join(&self.state, &self.principal, &consultation_id, since).await {
                Ok(consultation) => consultation,
                Err(error) => {
                    if newly_joined {
                        self.leave_topic(&topic, None).await;
                    }
                    return Err(error);
                }
            };
        if newly_joined {
            self.state.hub.admit(&topic, self.conn_id);
        }
        let mut cursor = since.map_or(consultation.last_seq, Seq::get);
        if let Some(room) = self.rooms.get(&topic) {
            cursor = cursor.max(room.cursor);
        }
        let replayed = if newly_joined && since.is_none() {
            0
        } else {
            match self.replay(&consultation_id, &mut cursor).await {
                Ok(replayed) => replayed,
                Err(error) => {
                    // The room is not recorded as joined, so the session's
                    // end would not leave it: leave it now, or the hub keeps
                    // listing this connection as a member.
                    if newly_joined {
                        self.leave_topic(&topic, None).await;
                    }
                    return Err(error);
                }
            }
        };
        self.rooms.insert(
            topic.clone(),
            JoinedRoom {
                consultation_id: consultation_id.clone(),
                consultation: Arc::new(consultation.clone()),
                cursor,
            },
        );
        if newly_joined {
            self.announce_presence(&consultation_id, true);
            if self.principal.role.is_staff() {
                reach::warm(&self.state, &consultation);
            }
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
    pub(super) async fn replay(
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
                // The session is closing (4005 or 4006): nothing to catch up.
                Err(CommandError::SessionEnded) => return Ok(()),
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
        match dashboard::catch_up(&self.state, &self.principal, &feed).await {
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

    pub(super) async fn leave(
        &mut self,
        consultation: &ConsultationId,
    ) -> Result<(), CommandError> {
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

    pub(super) async fn watch_dashboard(
        &mut self,
        provider: Option<UserId>,
    ) -> Result<CommandResult, CommandError> {
        let feed = dashboard::feed_for(&self.principal, provider)?;
        let topic = dashboard::topic(&self.principal, &feed);
        if self.dashboard.as_ref().map(|(current, _)| current) != Some(&topic) {
            if let Some((previous, _)) = self.dashboard.take() {
                self.leave_topic(&previous, None).await;
            }
            self.enter_topic(topic.clone(), true).await;
            self.dashboard = Some((topic, feed.clone()));
        }
        let entries = dashboard::snapshot(&self.state, &self.principal, &feed).await?;
        Ok(CommandResult::DashboardSnapshot { entries })
    }

    /// Subscribes to `topic` here and, for its first local subscriber, on
    /// the broker, waiting for the broker's confirmation either way.
    async fn enter_topic(&mut self, topic: Topic, admitted: bool) {
        let result = if self
            .state
            .hub
            .subscribe(topic.clone(), self.subscriber(admitted))
        {
            self.state.broker.subscribe(&topic).await
        } else {
            self.state.broker.await_subscribed(&topic).await
        };
        if let Err(error) = result {
            tracing::warn!(error = %error, topic = %topic, "broker subscribe failed");
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
                self.announce_presence(consultation, false);
            }
        }
    }

    fn announce_presence(&self, consultation: &ConsultationId, online: bool) {
        let frame = ServerFrame::Presence {
            consultation_id: consultation.clone(),
            user: self.principal.user.clone(),
            role: self.principal.role,
            online,
        };
        events::publish(&self.state, topics::room(consultation), None, &frame);
    }
}

/// The consultation `principal` asks to join, if a member may and `since`
/// is not beyond its last message.
async fn room_to_join(
    state: &AppState,
    principal: &Principal,
    consultation_id: &ConsultationId,
    since: Option<Seq>,
) -> Result<Consultation, CommandError> {
    let consultation = access::authorized_consultation(state, principal, consultation_id).await?;
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
    Ok(consultation)
}
