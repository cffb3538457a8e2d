//! The command line: global options and one subcommand per task.
//!
//! There is deliberately no option carrying the token itself: arguments
//! show in `ps` and shell history. The token comes from `--token-file` or
//! the `CONSULT_TOKEN` environment variable (see `token`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The hub's default WebSocket URL.
pub(crate) const DEFAULT_URL: &str = "ws://127.0.0.1:8080/v1/ws";

/// Command-line client for consult-hub.
#[derive(Debug, Parser)]
#[command(
    name = "consult-cli",
    version,
    after_help = "The token (a JWT) is read from --token-file PATH, else from the \
                  CONSULT_TOKEN environment variable; never from the command line or the URL."
)]
pub(crate) struct Cli {
    /// The hub's WebSocket URL, without credentials or query.
    #[arg(long, global = true, default_value = DEFAULT_URL, env = "CONSULT_URL")]
    pub(crate) url: String,
    /// A file holding the token (surrounding whitespace is ignored).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) token_file: Option<PathBuf>,
    /// Print events and results as JSON, one value per line.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub(crate) enum Command {
    /// Send a chat message (retried across reconnects, stored once).
    Send {
        /// The consultation.
        #[arg(long, value_name = "ID")]
        consultation: String,
        /// The message.
        #[arg(long)]
        text: String,
        /// Idempotency key; a fresh one by default. Reuse it to retry safely.
        #[arg(long, value_name = "ID")]
        client_msg_id: Option<String>,
    },
    /// Join a consultation and print its messages, status changes,
    /// receipts, typing and presence until interrupted; resumes without
    /// gaps after reconnects.
    Watch {
        /// The consultation.
        #[arg(long, value_name = "ID")]
        consultation: String,
        /// Replay the messages after this sequence number first (0: all).
        #[arg(long, value_name = "N")]
        since: Option<u64>,
    },
    /// Print the "Active and Waiting" list, then its changes, until
    /// interrupted.
    Dashboard {
        /// Admins: one provider's list.
        #[arg(long, value_name = "ID")]
        provider: Option<String>,
    },
    /// Send a Quick Message from a template.
    Quick {
        /// The consultation.
        #[arg(long, value_name = "ID")]
        consultation: String,
        /// The template.
        #[arg(long, value_name = "ID")]
        template: String,
        /// A template variable, as NAME=VALUE; repeat for more.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Idempotency key; a fresh one by default.
        #[arg(long, value_name = "ID")]
        client_msg_id: Option<String>,
    },
    /// List the Quick Message templates.
    Templates {
        /// Admins: include this provider's own templates.
        #[arg(long, value_name = "ID")]
        provider: Option<String>,
    },
    /// "Alert Patient": a short generic message in the chat, also sent by
    /// push and/or SMS.
    Alert {
        /// The consultation.
        #[arg(long, value_name = "ID")]
        consultation: String,
        /// The text: no names, no health details.
        #[arg(long)]
        text: String,
        /// Also send a push notification.
        #[arg(long)]
        push: bool,
        /// Also send a text message.
        #[arg(long)]
        sms: bool,
        /// Idempotency key; a fresh one by default.
        #[arg(long, value_name = "ID")]
        client_msg_id: Option<String>,
    },
}

/// Parses `NAME=VALUE`; the value may contain `=`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

#[cfg(test)]
mod tests;
