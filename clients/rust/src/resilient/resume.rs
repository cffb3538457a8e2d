//! Restoring a new connection: join every tracked room again from the
//! last message delivered, watch the dashboard again, and only then let
//! requests through. Events keep flowing to the caller throughout, in
//! order, so a long replay cannot overflow the connection's queue.

use super::connector::Connect;
use super::event::ResilientEvent;
use super::shared::Link;
use super::supervisor::Supervisor;
use crate::client::Client;
use crate::error::ClientError;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

impl<C: Connect> Supervisor<C> {
    /// Joins every tracked room again from its cursor and watches the
    /// dashboard again, then lets requests through. Errors are connection
    /// failures; a refused room or watch is reported and forgotten.
    pub(super) async fn resume(&self, client: &Arc<Client>) -> Result<(), ClientError> {
        let _membership = self.shared.membership.lock().await;
        let plan = self.shared.tracker().plan();
        for (consultation_id, since) in plan.rooms {
            match self
                .pumping(client, client.join(&consultation_id, since))
                .await
            {
                Ok(joined) => {
                    let last_seq = joined.consultation.last_seq;
                    self.shared.tracker().joined(&consultation_id, last_seq);
                    let event = ResilientEvent::Rejoined {
                        consultation_id,
                        joined,
                    };
                    self.emit(event).await;
                }
                Err(ClientError::Command { code, message }) => {
                    self.shared.tracker().left(&consultation_id);
                    let event = ResilientEvent::RejoinFailed {
                        consultation_id,
                        code,
                        message,
                    };
                    self.emit(event).await;
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(provider_id) = plan.dashboard {
            match self
                .pumping(client, client.watch_dashboard(provider_id))
                .await
            {
                Ok(entries) => self.emit(ResilientEvent::DashboardSnapshot(entries)).await,
                Err(ClientError::Command { code, message }) => {
                    self.shared.tracker().set_dashboard(None);
                    let event = ResilientEvent::DashboardFailed { code, message };
                    self.emit(event).await;
                }
                Err(error) => return Err(error),
            }
        }
        self.link_tx.send_replace(Link::Up(client.clone()));
        Ok(())
    }

    /// Awaits `command` while delivering events, so a long replay cannot
    /// fill the connection's queue; then delivers every event that came
    /// before the answer, so nothing reported after it overtakes them.
    async fn pumping<T>(
        &self,
        client: &Client,
        command: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let mut command = pin!(command);
        let result = loop {
            // Both branches are cancel-safe: the command is only polled, and
            // `next_event` loses nothing when dropped.
            tokio::select! {
                biased;
                result = &mut command => break result,
                event = client.next_event() => match event {
                    Some(frame) => self.forward(frame).await,
                    // The connection ended; the command fails with `Closed`.
                    None => break command.await,
                },
            }
        };
        while let Some(frame) = client.try_next_event().await {
            self.forward(frame).await;
        }
        result
    }
}
