//! Typed commands: one method per client frame, each built on
//! [`Client::request`] with a fresh command id, returning what its `ok`
//! carries. Rooms, chat, status and the dashboard are here; the
//! notification features (Quick Messages, templates, alerts, devices) are in
//! `notify`.
//!
//! # Errors
//!
//! Every method fails as [`Client::request`] does, and with
//! [`ClientError::Protocol`] if the `ok` carries a result of the wrong kind.

use crate::client::Client;
use crate::error::ClientError;
use chrono::{DateTime, Utc};
use consult_protocol::{
    ChatMessage, ClientFrame, CommandResult, ConsultationId, ConsultationView, DashboardEntry,
    Member, ReceiptKind, Seq, UserId,
};

mod notify;

pub use notify::Notified;

/// The answer to `join`, after any replayed `message` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The consultation as it is now.
    pub consultation: ConsultationView,
    /// Members connected to the room now.
    pub members: Vec<Member>,
    /// How many messages were replayed before the answer.
    pub replayed: u32,
}

impl Client {
    /// Round-trip check; returns the hub's clock.
    pub async fn ping(&self) -> Result<DateTime<Utc>, ClientError> {
        let id = self.next_command_id();
        match self.request(ClientFrame::Ping { id }).await? {
            Some(CommandResult::Pong { server_time }) => Ok(server_time),
            other => Err(unexpected("pong", other)),
        }
    }

    /// Replaces the connection's token with `token` (same user, clinic and
    /// role) without reconnecting; returns when the connection now expires.
    ///
    /// # Errors
    ///
    /// [`ClientError::Command`] with `invalid_token`, `token_expired` or
    /// `token_revoked`; the connection then keeps its old token and deadline.
    pub async fn refresh(&self, token: &str) -> Result<DateTime<Utc>, ClientError> {
        let id = self.next_command_id();
        let frame = ClientFrame::Refresh {
            id,
            token: token.to_owned(),
        };
        match self.request(frame).await? {
            Some(CommandResult::Refreshed { expires_at }) => Ok(expires_at),
            other => Err(unexpected("refreshed", other)),
        }
    }

    /// Joins a room; with `since`, the hub first replays later messages as
    /// `message` events.
    pub async fn join(
        &self,
        consultation: &ConsultationId,
        since: Option<Seq>,
    ) -> Result<Joined, ClientError> {
        let frame = ClientFrame::Join {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            since,
        };
        match self.request(frame).await? {
            Some(CommandResult::Joined {
                consultation,
                members,
                replayed,
            }) => Ok(Joined {
                consultation,
                members,
                replayed,
            }),
            other => Err(unexpected("joined", other)),
        }
    }

    /// Leaves a room.
    pub async fn leave(&self, consultation: &ConsultationId) -> Result<(), ClientError> {
        let frame = ClientFrame::Leave {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
        };
        self.request(frame).await.map(drop)
    }

    /// Sends a chat message; returns its sequence number and whether
    /// `client_msg_id` had already been stored (nothing new was written).
    pub async fn send(
        &self,
        consultation: &ConsultationId,
        client_msg_id: impl Into<String>,
        body: impl Into<String>,
    ) -> Result<(Seq, bool), ClientError> {
        let frame = ClientFrame::Send {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            client_msg_id: client_msg_id.into(),
            body: body.into(),
        };
        match self.request(frame).await? {
            Some(CommandResult::Sent { seq, duplicate, .. }) => Ok((seq, duplicate)),
            other => Err(unexpected("sent", other)),
        }
    }

    /// Starts or stops the typing indicator.
    pub async fn typing(
        &self,
        consultation: &ConsultationId,
        active: bool,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Typing {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            active,
        };
        self.request(frame).await.map(drop)
    }

    /// Acknowledges messages up to and including `seq`.
    pub async fn ack(
        &self,
        consultation: &ConsultationId,
        seq: Seq,
        receipt: ReceiptKind,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Ack {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            seq,
            receipt,
        };
        self.request(frame).await.map(drop)
    }

    /// The consultations this user may act on (a patient's own, a provider's
    /// assigned ones, an admin's clinic), by booked start; ended and
    /// cancelled ones only with `include_closed`.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when the hub refuses or the connection fails.
    pub async fn list_consultations(
        &self,
        include_closed: bool,
    ) -> Result<Vec<ConsultationView>, ClientError> {
        let frame = ClientFrame::ListConsultations {
            id: self.next_command_id(),
            include_closed,
        };
        match self.request(frame).await? {
            Some(CommandResult::Consultations { consultations }) => Ok(consultations),
            other => Err(unexpected("consultations", other)),
        }
    }

    /// Pages through stored messages; returns them oldest first and whether
    /// older ones remain.
    pub async fn history(
        &self,
        consultation: &ConsultationId,
        before: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        let frame = ClientFrame::History {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            before,
            limit,
        };
        match self.request(frame).await? {
            Some(CommandResult::History { messages, has_more }) => Ok((messages, has_more)),
            other => Err(unexpected("history", other)),
        }
    }

    /// Staff: opens a scheduled consultation.
    pub async fn open(
        &self,
        consultation: &ConsultationId,
    ) -> Result<ConsultationView, ClientError> {
        let id = self.next_command_id();
        let consultation_id = consultation.clone();
        self.status(ClientFrame::Open {
            id,
            consultation_id,
        })
        .await
    }

    /// Patient: "I'm Ready for My Appointment".
    pub async fn ready(
        &self,
        consultation: &ConsultationId,
    ) -> Result<ConsultationView, ClientError> {
        let id = self.next_command_id();
        let consultation_id = consultation.clone();
        self.status(ClientFrame::Ready {
            id,
            consultation_id,
        })
        .await
    }

    /// Enters the consultation.
    pub async fn enter(
        &self,
        consultation: &ConsultationId,
    ) -> Result<ConsultationView, ClientError> {
        let id = self.next_command_id();
        let consultation_id = consultation.clone();
        self.status(ClientFrame::Enter {
            id,
            consultation_id,
        })
        .await
    }

    /// Staff: ends a consultation in progress.
    pub async fn end(
        &self,
        consultation: &ConsultationId,
    ) -> Result<ConsultationView, ClientError> {
        let id = self.next_command_id();
        let consultation_id = consultation.clone();
        self.status(ClientFrame::End {
            id,
            consultation_id,
        })
        .await
    }

    /// Staff: cancels a consultation that has not ended.
    pub async fn cancel(
        &self,
        consultation: &ConsultationId,
    ) -> Result<ConsultationView, ClientError> {
        let id = self.next_command_id();
        let consultation_id = consultation.clone();
        self.status(ClientFrame::Cancel {
            id,
            consultation_id,
        })
        .await
    }

    /// Staff: subscribes to the "Active and Waiting" list and returns it;
    /// changes follow as `dashboard` events. Admins may name one provider.
    pub async fn watch_dashboard(
        &self,
        provider_id: Option<UserId>,
    ) -> Result<Vec<DashboardEntry>, ClientError> {
        let frame = ClientFrame::WatchDashboard {
            id: self.next_command_id(),
            provider_id,
        };
        match self.request(frame).await? {
            Some(CommandResult::DashboardSnapshot { entries }) => Ok(entries),
            other => Err(unexpected("dashboard_snapshot", other)),
        }
    }

    /// Stops the dashboard subscription.
    pub async fn unwatch_dashboard(&self) -> Result<(), ClientError> {
        let id = self.next_command_id();
        self.request(ClientFrame::UnwatchDashboard { id })
            .await
            .map(drop)
    }

    async fn status(&self, frame: ClientFrame) -> Result<ConsultationView, ClientError> {
        match self.request(frame).await? {
            Some(CommandResult::Status { consultation }) => Ok(consultation),
            other => Err(unexpected("status", other)),
        }
    }
}

pub(super) fn unexpected(expected: &str, got: Option<CommandResult>) -> ClientError {
    ClientError::Protocol(format!("expected a `{expected}` result, got {got:?}"))
}
