//! Commands on a [`ResilientClient`]. Room and dashboard commands record
//! what to restore after a reconnect; idempotent commands are retried
//! across reconnects; [`ResilientClient::call`] runs any other [`Client`]
//! command on the current connection.
//!
//! # Errors
//!
//! As the [`Client`] commands, with [`ClientError::Disconnected`] (retryable)
//! for a command issued between connections or whose connection dropped
//! before the answer, and [`ClientError::Closed`] once closed for good.

use super::ResilientClient;
use super::event::Stats;
use super::shared::Link;
use crate::client::Client;
use crate::commands::{Joined, Notified};
use crate::error::ClientError;
use consult_protocol::{AlertChannel, ConsultationId, DashboardEntry, Seq, UserId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::time::{Instant, timeout_at};

impl ResilientClient {
    /// Runs one [`Client`] command on the current connection, as in
    /// `resilient.call(|client| async move { client.ping().await })`.
    /// Rooms joined this way are not restored after a reconnect; use
    /// [`ResilientClient::join`] for those.
    pub async fn call<T, F, Fut>(&self, command: F) -> Result<T, ClientError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.up()?;
        command(client).await.map_err(|error| self.lost(error))
    }

    /// Runs an idempotent command; when its connection drops before the
    /// answer, waits for the next connection and runs it again, for up to
    /// the retry timeout. Only for commands the hub de-duplicates (by
    /// `client_msg_id`); anything else may run twice.
    pub async fn retrying<T, F, Fut>(&self, mut command: F) -> Result<T, ClientError>
    where
        F: FnMut(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + self.retry_timeout;
        let mut failed: Option<Arc<Client>> = None;
        loop {
            let client = self.up_after(failed.as_ref(), deadline).await?;
            if failed.is_some() {
                Stats::bump(&self.shared.stats.retried_commands);
            }
            match command(client.clone()).await {
                Err(ClientError::Closed) => failed = Some(client),
                other => return other,
            }
        }
    }

    /// Joins a room, as [`Client::join`], and keeps it joined across
    /// reconnects from the last message delivered.
    pub async fn join(
        &self,
        consultation: &ConsultationId,
        since: Option<Seq>,
    ) -> Result<Joined, ClientError> {
        let _membership = self.shared.membership.lock().await;
        let client = self.up()?;
        let previous = self.shared.tracker().joining(consultation, since);
        match client.join(consultation, since).await {
            Ok(joined) => {
                let last_seq = joined.consultation.last_seq;
                self.shared.tracker().joined(consultation, last_seq);
                Ok(joined)
            }
            Err(error) => {
                self.shared.tracker().restore(consultation, previous);
                Err(self.lost(error))
            }
        }
    }

    /// Leaves a room; it is not joined again after a reconnect. Leaving
    /// while disconnected succeeds: the next connection does not join it.
    pub async fn leave(&self, consultation: &ConsultationId) -> Result<(), ClientError> {
        let _membership = self.shared.membership.lock().await;
        self.shared.tracker().left(consultation);
        self.unless_down(|client| async move { client.leave(consultation).await })
            .await
    }

    /// Watches the dashboard, as [`Client::watch_dashboard`], and again
    /// after every reconnect (announced by
    /// [`super::ResilientEvent::DashboardSnapshot`]).
    pub async fn watch_dashboard(
        &self,
        provider_id: Option<UserId>,
    ) -> Result<Vec<DashboardEntry>, ClientError> {
        let _membership = self.shared.membership.lock().await;
        let client = self.up()?;
        let entries = client
            .watch_dashboard(provider_id.clone())
            .await
            .map_err(|error| self.lost(error))?;
        self.shared.tracker().set_dashboard(Some(provider_id));
        Ok(entries)
    }

    /// Stops watching the dashboard, here and after reconnects. Succeeds
    /// while disconnected.
    pub async fn unwatch_dashboard(&self) -> Result<(), ClientError> {
        let _membership = self.shared.membership.lock().await;
        self.shared.tracker().set_dashboard(None);
        self.unless_down(|client| async move { client.unwatch_dashboard().await })
            .await
    }

    /// Sends a chat message, as [`Client::send`], retried across reconnects
    /// with the same `client_msg_id` (the hub then answers `duplicate` with
    /// the original `seq` if the first try was stored).
    pub async fn send(
        &self,
        consultation: &ConsultationId,
        client_msg_id: impl Into<String>,
        body: impl Into<String>,
    ) -> Result<(Seq, bool), ClientError> {
        let (client_msg_id, body) = (client_msg_id.into(), body.into());
        self.retrying(|client| {
            let (client_msg_id, body) = (client_msg_id.clone(), body.clone());
            async move { client.send(consultation, client_msg_id, body).await }
        })
        .await
    }

    /// Staff: a Quick Message, as [`Client::quick_message`], retried across
    /// reconnects with the same `client_msg_id`.
    pub async fn quick_message(
        &self,
        consultation: &ConsultationId,
        template_id: impl Into<String>,
        variables: BTreeMap<String, String>,
        client_msg_id: impl Into<String>,
    ) -> Result<Notified, ClientError> {
        let (template_id, client_msg_id) = (template_id.into(), client_msg_id.into());
        self.retrying(|client| {
            let (template_id, variables) = (template_id.clone(), variables.clone());
            let client_msg_id = client_msg_id.clone();
            async move {
                client
                    .quick_message(consultation, template_id, variables, client_msg_id)
                    .await
            }
        })
        .await
    }

    /// Staff: "Alert Patient", as [`Client::alert`], retried across
    /// reconnects with the same `client_msg_id`.
    pub async fn alert(
        &self,
        consultation: &ConsultationId,
        body: impl Into<String>,
        channels: &[AlertChannel],
        client_msg_id: impl Into<String>,
    ) -> Result<Notified, ClientError> {
        let (body, client_msg_id) = (body.into(), client_msg_id.into());
        self.retrying(|client| {
            let (body, client_msg_id) = (body.clone(), client_msg_id.clone());
            async move {
                client
                    .alert(consultation, body, channels, client_msg_id)
                    .await
            }
        })
        .await
    }

    /// Runs `command` if connected; between connections (or when the
    /// connection drops first) there is nothing to undo, so that is `Ok`.
    async fn unless_down<F, Fut>(&self, command: F) -> Result<(), ClientError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<(), ClientError>>,
    {
        match self.call(command).await {
            Err(ClientError::Disconnected) => Ok(()),
            other => other,
        }
    }

    /// Waits for a connection other than `failed`, until `deadline`.
    async fn up_after(
        &self,
        failed: Option<&Arc<Client>>,
        deadline: Instant,
    ) -> Result<Arc<Client>, ClientError> {
        let mut link_rx = self.link_rx.clone();
        let usable = |link: &Link| match link {
            Link::Up(client) => failed.is_none_or(|failed| !Arc::ptr_eq(client, failed)),
            Link::Down => false,
            Link::Closed(_) => true,
        };
        match timeout_at(deadline, link_rx.wait_for(usable)).await {
            Err(_elapsed) => Err(ClientError::Disconnected),
            Ok(Ok(link)) => match &*link {
                Link::Up(client) => Ok(client.clone()),
                Link::Down | Link::Closed(_) => Err(ClientError::Closed),
            },
            // The supervisor publishes `Closed` before it goes.
            Ok(Err(_)) => Err(ClientError::Closed),
        }
    }
}
