//! The REST reads and writes the campaign needs besides [`crate::api`]:
//! a consultation's stored messages and notifications (every page), the
//! cluster-wide presence of its members, and a patient's push devices.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::time::Duration;

/// One stored message, as the checker needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredMessage {
    /// Its `seq`.
    pub seq: u64,
    /// Its sender.
    pub sender: String,
    /// Its `client_msg_id`.
    #[serde(default)]
    pub client_msg_id: Option<String>,
}

/// One notification row, as the checker needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredNotification {
    /// Its id.
    pub id: String,
    /// `pending`, `sending`, `sent`, `failed`, `cancelled`.
    pub status: String,
    /// Send attempts counted.
    pub attempts: u32,
    /// The message that queued it.
    #[serde(default)]
    pub message_seq: Option<u64>,
}

/// One member's presence.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberPresence {
    /// The user.
    pub user: String,
    /// Connected anywhere in the cluster.
    pub online: bool,
}

#[derive(Deserialize)]
struct MessagePage {
    messages: Vec<StoredMessage>,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct NotificationPage {
    notifications: Vec<StoredNotification>,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Presence {
    members: Vec<MemberPresence>,
}

/// A REST client for one node.
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl Rest {
    /// A client for the node at `base`.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, api_key: &str) -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .context("building an HTTP client")?,
            base: base.to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    /// Every stored message of `consultation`, in `seq` order.
    ///
    /// # Errors
    ///
    /// When a page cannot be read.
    pub async fn messages(&self, consultation: &str) -> Result<Vec<StoredMessage>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/consultations/{consultation}/messages?limit=200");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", escape(cursor)));
            }
            let page: MessagePage = self.get(&path).await?;
            all.extend(page.messages);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        all.sort_by_key(|message| message.seq);
        Ok(all)
    }

    /// The newest stored `seq` of `consultation` (0 when none).
    ///
    /// # Errors
    ///
    /// When the request fails.
    pub async fn last_seq(&self, consultation: &str) -> Result<u64> {
        let page: MessagePage = self
            .get(&format!(
                "/v1/consultations/{consultation}/messages?limit=1"
            ))
            .await?;
        Ok(page.messages.last().map_or(0, |message| message.seq))
    }

    /// Every notification row of `consultation`.
    ///
    /// # Errors
    ///
    /// When a page cannot be read.
    pub async fn notifications(&self, consultation: &str) -> Result<Vec<StoredNotification>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/consultations/{consultation}/notifications?limit=500");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", escape(cursor)));
            }
            let page: NotificationPage = self.get(&path).await?;
            all.extend(page.notifications);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(all)
    }

    /// Its members' presence, as this node sees the cluster.
    ///
    /// # Errors
    ///
    /// When the request fails.
    pub async fn presence(&self, consultation: &str) -> Result<Vec<MemberPresence>> {
        let presence: Presence = self
            .get(&format!("/v1/consultations/{consultation}/presence"))
            .await?;
        Ok(presence.members)
    }

    /// Registers a push device for patient `user`.
    ///
    /// # Errors
    ///
    /// When the hub refuses it.
    pub async fn register_device(&self, user: &str, platform: &str, token: &str) -> Result<()> {
        let url = format!("{}/v1/participants/{user}/devices", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.api_key)
            .json(&json!({"platform": platform, "token": token, "notifications_enabled": true}))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !response.status().is_success() {
            bail!("POST {url}: {}", response.status());
        }
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.api_key)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        response
            .json()
            .await
            .with_context(|| format!("decoding GET {url}"))
    }
}

/// Percent-escapes what a cursor may hold besides letters and digits.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
