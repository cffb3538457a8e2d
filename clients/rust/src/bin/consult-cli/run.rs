//! Running one subcommand: connect a [`ResilientClient`], do the work,
//! print, close. One-shot commands print their result; `watch` and
//! `dashboard` follow events until interrupted or closed for good.

use crate::args::{Cli, Command};
use crate::failure::Failure;
use crate::output::{self, DashboardList};
use crate::token::{TOKEN_ENV, check_url, resolve_token};
use anyhow::Context as _;
use consult_client::{ConnectionState, ResilientClient, ResilientConfig, ResilientEvent};
use consult_protocol::{AlertChannel, ConsultationId, Seq, ServerFrame, UserId};
use serde::Serialize;
use serde_json::json;
use std::io::Write as _;
use std::pin::pin;

/// Where lines go: results and events to stdout, connection notes to
/// stderr so that stdout stays parseable.
#[derive(Debug)]
struct Printer {
    json: bool,
}

impl Printer {
    fn line(&self, text: &str) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()?;
        Ok(())
    }

    fn lines(&self, lines: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
        lines.into_iter().try_for_each(|line| self.line(&line))
    }

    fn value(&self, value: &impl Serialize) -> anyhow::Result<()> {
        self.line(&serde_json::to_string(value).context("encoding output")?)
    }

    fn note(&self, text: &str) {
        eprintln!("# {text}");
    }

    fn frame(&self, frame: &ServerFrame) -> anyhow::Result<()> {
        if self.json {
            return self.value(frame);
        }
        match output::frame_line(frame) {
            Some(line) => self.line(&line),
            None => Ok(()),
        }
    }
}

/// Runs the command line's subcommand.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    check_url(&cli.url)?;
    let token = resolve_token(cli.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
    let printer = Printer { json: cli.json };
    let (client, _welcome) =
        ResilientClient::connect(cli.url.clone(), token, ResilientConfig::default()).await?;
    let result = execute(&client, &printer, cli.command).await;
    client.close().await;
    result
}

async fn execute(client: &ResilientClient, out: &Printer, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Send {
            consultation,
            text,
            client_msg_id,
        } => {
            let client_msg_id = client_msg_id.unwrap_or_else(fresh_client_msg_id);
            let consultation = ConsultationId::from(consultation);
            let (seq, duplicate) = client.send(&consultation, &client_msg_id, text).await?;
            if out.json {
                let result =
                    json!({"seq": seq, "duplicate": duplicate, "client_msg_id": client_msg_id});
                return out.value(&result);
            }
            out.line(&output::sent_line(seq.get(), duplicate))
        }
        Command::Watch {
            consultation,
            since,
        } => watch(client, out, ConsultationId::from(consultation), since).await,
        Command::Dashboard { provider } => dashboard(client, out, provider.map(UserId::from)).await,
        Command::Quick {
            consultation,
            template,
            vars,
            client_msg_id,
        } => {
            let consultation = ConsultationId::from(consultation);
            let client_msg_id = client_msg_id.unwrap_or_else(fresh_client_msg_id);
            let variables = vars.into_iter().collect();
            let notified = client
                .quick_message(&consultation, template, variables, client_msg_id)
                .await?;
            print_notified(out, &notified)
        }
        Command::Templates { provider } => {
            let provider = provider.map(UserId::from);
            let templates = client
                .call(|client| async move { client.list_templates(provider).await })
                .await?;
            if out.json {
                return out.value(&templates);
            }
            out.lines(templates.iter().map(output::template_line))
        }
        Command::Alert {
            consultation,
            text,
            push,
            sms,
            client_msg_id,
        } => {
            let consultation = ConsultationId::from(consultation);
            let client_msg_id = client_msg_id.unwrap_or_else(fresh_client_msg_id);
            let channels = alert_channels(push, sms);
            let notified = client
                .alert(&consultation, text, &channels, client_msg_id)
                .await?;
            print_notified(out, &notified)
        }
    }
}

async fn watch(
    client: &ResilientClient,
    out: &Printer,
    consultation: ConsultationId,
    since: Option<u64>,
) -> anyhow::Result<()> {
    let joined = client.join(&consultation, since.map(Seq)).await?;
    let view = &joined.consultation;
    out.note(&format!(
        "joined {consultation} ({}, last #{}, replayed {})",
        view.status, view.last_seq, joined.replayed
    ));
    follow(client, out, |event| match event {
        ResilientEvent::Frame(frame) => out.frame(&frame),
        ResilientEvent::Rejoined {
            consultation_id,
            joined,
        } => {
            out.note(&format!(
                "rejoined {consultation_id} ({}, replayed {})",
                joined.consultation.status, joined.replayed
            ));
            Ok(())
        }
        ResilientEvent::RejoinFailed { code, message, .. } => {
            Err(Failure::new(code.as_str(), message).into())
        }
        ResilientEvent::State(_)
        | ResilientEvent::DashboardSnapshot(_)
        | ResilientEvent::DashboardFailed { .. } => Ok(()),
    })
    .await
}

async fn dashboard(
    client: &ResilientClient,
    out: &Printer,
    provider: Option<UserId>,
) -> anyhow::Result<()> {
    let mut list = DashboardList::default();
    let entries = client.watch_dashboard(provider).await?;
    list.replace(&entries);
    print_snapshot(out, &entries, "Active and Waiting")?;
    follow(client, out, |event| match event {
        ResilientEvent::Frame(ServerFrame::Dashboard { entry }) => {
            let change = list.apply(&entry);
            if out.json {
                return out.value(&ServerFrame::Dashboard { entry });
            }
            match output::change_line(change, &entry) {
                Some(line) => out.line(&line),
                None => Ok(()),
            }
        }
        ResilientEvent::Frame(frame) => out.frame(&frame),
        ResilientEvent::DashboardSnapshot(entries) => {
            list.replace(&entries);
            print_snapshot(out, &entries, "Active and Waiting, after reconnect")
        }
        ResilientEvent::DashboardFailed { code, message } => {
            Err(Failure::new(code.as_str(), message).into())
        }
        ResilientEvent::State(_)
        | ResilientEvent::Rejoined { .. }
        | ResilientEvent::RejoinFailed { .. } => Ok(()),
    })
    .await
}

/// Hands every event to `handle` (after noting state changes on stderr)
/// until Ctrl-C, or fails once the client is closed for good.
async fn follow(
    client: &ResilientClient,
    out: &Printer,
    mut handle: impl FnMut(ResilientEvent) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut interrupted = pin!(tokio::signal::ctrl_c());
    loop {
        let event = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            event = client.next_event() => event,
        };
        let Some(event) = event else {
            let info = client.closed().await;
            return Err(Failure::new("closed", info.to_string()).into());
        };
        // The first `Connected` precedes what the subcommand already noted;
        // `Closed` is reported as the error below.
        if let ResilientEvent::State(state) = &event {
            if !matches!(
                state,
                ConnectionState::Connected(_) | ConnectionState::Closed(_)
            ) {
                out.note(&state.to_string());
            }
        }
        handle(event)?;
    }
}

fn print_snapshot(
    out: &Printer,
    entries: &[consult_protocol::DashboardEntry],
    title: &str,
) -> anyhow::Result<()> {
    if out.json {
        return out.value(&json!({"type": "dashboard_snapshot", "entries": entries}));
    }
    out.lines(output::snapshot_lines(entries, title))
}

fn print_notified(out: &Printer, notified: &consult_client::Notified) -> anyhow::Result<()> {
    if out.json {
        return out.value(&json!({
            "seq": notified.seq,
            "duplicate": notified.duplicate,
            "sent_at": notified.sent_at,
            "notifications": notified.notifications,
        }));
    }
    out.lines(output::notified_lines(notified))
}

pub(crate) fn alert_channels(push: bool, sms: bool) -> Vec<AlertChannel> {
    [(push, AlertChannel::Push), (sms, AlertChannel::Sms)]
        .into_iter()
        .filter_map(|(ticked, channel)| ticked.then_some(channel))
        .collect()
}

/// A `client_msg_id` unique enough for one person at a terminal.
fn fresh_client_msg_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("cli-{nanos}-{}", std::process::id())
}
