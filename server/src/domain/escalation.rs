//! The escalation plan: which push and SMS notifications a message to the
//! patient queues, when each falls due, and what cancels it.
//!
//! In-app first. A chat or Quick Message to a patient with no live
//! connection queues a push after a short grace window (a reconnect or a
//! delivered receipt inside it cancels the push). A connected patient gets a
//! push only if no delivered receipt comes within the clinic's escalation
//! time, except that a Quick Message to an app in the background pushes at
//! once. When the clinic's policy names an SMS time, a message still unread
//! then goes out by SMS. An alert goes out at once on exactly the channels
//! the provider ticked. Every rule stops as soon as the patient acknowledges.

use consult_protocol::{AlertChannel, DevicePlatform, NotificationReason};
use std::time::Duration;

/// How the hub can reach the patient right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// A live connection anywhere in the cluster.
    pub online: bool,
    /// A connection whose app is in the foreground.
    pub foreground: bool,
    /// Devices with notifications on.
    pub devices: Vec<(DevicePlatform, String)>,
    /// A phone number with SMS consent and no opt-out.
    pub sms_phone: Option<String>,
}

/// A clinic's escalation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// No delivered receipt within this → push.
    pub push_after: Duration,
    /// Patient offline → push after this grace window.
    pub offline_grace: Duration,
    /// Still unread after this → SMS; `None` never escalates to SMS.
    pub sms_after_unread: Option<Duration>,
    /// Put the message text in pushes (privacy-checked); otherwise a
    /// generic line.
    pub push_include_text: bool,
}

/// What caused the notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A chat message from staff.
    Chat,
    /// A Quick Message.
    Quick,
    /// "Alert Patient" with the ticked channels.
    Alert {
        /// Push ticked.
        push: bool,
        /// SMS ticked.
        sms: bool,
    },
}

/// When a due notification is no longer needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRule {
    /// Always send.
    Never,
    /// Cancel if the patient acknowledged delivery of the message.
    Delivered,
    /// Cancel if the patient read the message.
    Read,
    /// Cancel if the patient is connected again or acknowledged delivery.
    OnlineOrDelivered,
}

impl CancelRule {
    /// The name stored in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::OnlineOrDelivered => "online_or_delivered",
        }
    }

    /// Parses a stored name; unknown names never cancel.
    pub fn parse(name: &str) -> Self {
        match name {
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "online_or_delivered" => Self::OnlineOrDelivered,
            _ => Self::Never,
        }
    }

    /// True when the notification for message `seq` is no longer needed.
    pub fn cancels(self, seq: u64, delivered: u64, read: u64, online: bool) -> bool {
        match self {
            Self::Never => false,
            Self::Delivered => delivered >= seq,
            Self::Read => read >= seq,
            Self::OnlineOrDelivered => online || delivered >= seq,
        }
    }
}

/// Where one notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A device's push token.
    Device(DevicePlatform, String),
    /// A phone number.
    Phone(String),
}

/// One notification to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Push or SMS.
    pub channel: AlertChannel,
    /// Device or phone.
    pub target: Target,
    /// Time from now until it is due.
    pub delay: Duration,
    /// Why.
    pub reason: NotificationReason,
    /// What cancels it.
    pub cancel: CancelRule,
    /// Carry the message text (otherwise a generic line).
    pub full_text: bool,
}

/// Plans the notifications for one message to the patient.
pub fn plan(trigger: Trigger, reach: &Reach, policy: &Policy) -> Vec<Planned> {
    let mut planned = Vec::new();
    let push = |delay, reason, cancel, full_text, planned: &mut Vec<Planned>| {
        for (platform, token) in &reach.devices {
            planned.push(Planned {
                channel: AlertChannel::Push,
                target: Target::Device(*platform, token.clone()),
                delay,
                reason,
                cancel,
                full_text,
            });
        }
    };
    match trigger {
        Trigger::Alert {
            push: tick_push,
            sms,
        } => {
            if tick_push {
                push(
                    Duration::ZERO,
                    NotificationReason::Alert,
                    CancelRule::Never,
                    true,
                    &mut planned,
                );
            }
            if let (true, Some(phone)) = (sms, &reach.sms_phone) {
                planned.push(Planned {
                    channel: AlertChannel::Sms,
                    target: Target::Phone(phone.clone()),
                    delay: Duration::ZERO,
                    reason: NotificationReason::Alert,
                    cancel: CancelRule::Never,
                    full_text: true,
                });
            }
        }
        Trigger::Chat | Trigger::Quick => {
            let include = policy.push_include_text;
            if !reach.online {
                push(
                    policy.offline_grace,
                    NotificationReason::Offline,
                    CancelRule::OnlineOrDelivered,
                    include,
                    &mut planned,
                );
            } else if trigger == Trigger::Quick && !reach.foreground {
                push(
                    Duration::ZERO,
                    NotificationReason::Quick,
                    CancelRule::Never,
                    include,
                    &mut planned,
                );
            } else {
                push(
                    policy.push_after,
                    NotificationReason::Escalation,
                    CancelRule::Delivered,
                    include,
                    &mut planned,
                );
            }
            if let (Some(after), Some(phone)) = (policy.sms_after_unread, &reach.sms_phone) {
                planned.push(Planned {
                    channel: AlertChannel::Sms,
                    target: Target::Phone(phone.clone()),
                    delay: after,
                    reason: NotificationReason::Unread,
                    cancel: CancelRule::Read,
                    full_text: false,
                });
            }
        }
    }
    planned
}

/// Title of every push notification.
pub const PUSH_TITLE: &str = "Your care team";
/// Push text when message text is not included.
pub const GENERIC_PUSH_BODY: &str =
    "You have a new message about your appointment. Open the app to read it.";
/// Text of an SMS for an unread message.
pub const GENERIC_SMS_BODY: &str = "You have an unread message about your appointment. Please open the app to read it. Reply STOP to opt out.";

#[cfg(test)]
mod tests;
