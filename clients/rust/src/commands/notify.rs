//! Typed commands of the notification features: Quick Messages and their
//! templates, "Alert Patient", device registration, SMS consent, app
//! visibility and the notification list.
//!
//! # Errors
//!
//! As for every typed command (see the parent module).

use super::unexpected;
use crate::client::Client;
use crate::error::ClientError;
use chrono::{DateTime, Utc};
use consult_protocol::{
    AlertChannel, ClientFrame, CommandResult, ConsultationId, DevicePlatform, NotificationView,
    QuickTemplate, Seq, UserId,
};
use std::collections::BTreeMap;

/// The answer to `quick_message` and `alert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    /// The chat message's sequence number.
    pub seq: Seq,
    /// True when this `client_msg_id` was already stored; nothing new was
    /// written or queued.
    pub duplicate: bool,
    /// When the hub stored the message.
    pub sent_at: DateTime<Utc>,
    /// The push and SMS notifications queued for it.
    pub notifications: Vec<NotificationView>,
}

impl Client {
    /// Staff: sends a Quick Message from a template, joined or not.
    pub async fn quick_message(
        &self,
        consultation: &ConsultationId,
        template_id: impl Into<String>,
        variables: BTreeMap<String, String>,
        client_msg_id: impl Into<String>,
    ) -> Result<Notified, ClientError> {
        let frame = ClientFrame::QuickMessage {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            template_id: template_id.into(),
            variables,
            client_msg_id: client_msg_id.into(),
        };
        self.notified(frame).await
    }

    /// Staff: "Alert Patient" on the ticked channels.
    pub async fn alert(
        &self,
        consultation: &ConsultationId,
        body: impl Into<String>,
        channels: &[AlertChannel],
        client_msg_id: impl Into<String>,
    ) -> Result<Notified, ClientError> {
        let frame = ClientFrame::Alert {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
            body: body.into(),
            channels: channels.to_vec(),
            client_msg_id: client_msg_id.into(),
        };
        self.notified(frame).await
    }

    /// Staff: the Quick Message templates available, in drop-down order.
    /// Admins may name the provider whose own templates to include.
    pub async fn list_templates(
        &self,
        provider_id: Option<UserId>,
    ) -> Result<Vec<QuickTemplate>, ClientError> {
        let frame = ClientFrame::ListTemplates {
            id: self.next_command_id(),
            provider_id,
        };
        match self.request(frame).await? {
            Some(CommandResult::Templates { templates }) => Ok(templates),
            other => Err(unexpected("templates", other)),
        }
    }

    /// Staff: creates (`template_id` absent) or updates a template; returns
    /// it as stored.
    pub async fn save_template(
        &self,
        template_id: Option<String>,
        provider_id: Option<UserId>,
        title: impl Into<String>,
        body: impl Into<String>,
        position: Option<i32>,
    ) -> Result<QuickTemplate, ClientError> {
        let frame = ClientFrame::SaveTemplate {
            id: self.next_command_id(),
            template_id,
            provider_id,
            title: title.into(),
            body: body.into(),
            position,
        };
        match self.request(frame).await? {
            Some(CommandResult::Template { template }) => Ok(template),
            other => Err(unexpected("template", other)),
        }
    }

    /// Staff: deletes a template.
    pub async fn delete_template(&self, template_id: impl Into<String>) -> Result<(), ClientError> {
        let frame = ClientFrame::DeleteTemplate {
            id: self.next_command_id(),
            template_id: template_id.into(),
        };
        self.request(frame).await.map(drop)
    }

    /// Patient: registers (or updates) this device's push token.
    pub async fn register_device(
        &self,
        platform: DevicePlatform,
        token: impl Into<String>,
        notifications_enabled: bool,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::RegisterDevice {
            id: self.next_command_id(),
            platform,
            token: token.into(),
            notifications_enabled,
        };
        self.request(frame).await.map(drop)
    }

    /// Patient: gives or withdraws consent to text messages.
    pub async fn set_sms_consent(&self, consent: bool) -> Result<(), ClientError> {
        let frame = ClientFrame::SetSmsConsent {
            id: self.next_command_id(),
            consent,
        };
        self.request(frame).await.map(drop)
    }

    /// Patient app: it went to the foreground or the background.
    pub async fn visibility(&self, foreground: bool) -> Result<(), ClientError> {
        let frame = ClientFrame::Visibility {
            id: self.next_command_id(),
            foreground,
        };
        self.request(frame).await.map(drop)
    }

    /// Staff: the consultation's notifications, oldest first.
    pub async fn list_notifications(
        &self,
        consultation: &ConsultationId,
    ) -> Result<Vec<NotificationView>, ClientError> {
        let frame = ClientFrame::ListNotifications {
            id: self.next_command_id(),
            consultation_id: consultation.clone(),
        };
        match self.request(frame).await? {
            Some(CommandResult::Notifications { notifications, .. }) => Ok(notifications),
            other => Err(unexpected("notifications", other)),
        }
    }

    async fn notified(&self, frame: ClientFrame) -> Result<Notified, ClientError> {
        match self.request(frame).await? {
            Some(CommandResult::Notified {
                seq,
                duplicate,
                sent_at,
                notifications,
            }) => Ok(Notified {
                seq,
                duplicate,
                sent_at,
                notifications,
            }),
            other => Err(unexpected("notified", other)),
        }
    }
}
