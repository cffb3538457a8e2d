//! Commands of the notification features: Quick Messages, alerts,
//! templates, the patient's devices, SMS consent and app visibility, and the
//! notification outcomes staff look at.

use super::commands::{CommandError, CommandOutcome};
use super::connection::Session;
use crate::domain::PersonKey;
use crate::service::messaging::Sent;
use crate::service::{alerts, contacts, quick, templates};
use axum::extract::ws::Message;
use consult_protocol::{ClientFrame, CommandResult, ErrorCode};
use futures_util::{Sink, Stream};

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
{
    /// Runs one notification command.
    pub(super) async fn dispatch_notify(&mut self, frame: ClientFrame) -> CommandOutcome {
        match frame {
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
                        .set_foreground(&PersonKey::of(&self.principal), foreground)
                        .await;
                }
                Ok(None)
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
                let (notifications, has_more) =
                    crate::service::notifications::listed(&self.state, &consultation_id).await?;
                Ok(Some(CommandResult::Notifications {
                    notifications,
                    has_more,
                }))
            }
            other => Err(CommandError::from((
                ErrorCode::UnknownType,
                format!("{} is not a notification command", other.kind()),
            ))),
        }
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
