//! Fleet workers as child processes: both ends of the bridge.
//!
//! The parent writes the shard's plan to a temporary file and starts
//! `consult-load worker --plan FILE`; commands go to the child's stdin and
//! reports come back on its stdout, one JSON object per line. The child's
//! stderr is the parent's, for logs.

use super::{Command, Report, ShardPlan, run_worker};
use anyhow::{Context, Result};
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;

/// Commands or reports buffered inside the child.
const CHANNEL_CAPACITY: usize = 64;

/// A running child worker; killed if still running when dropped.
#[derive(Debug)]
pub(super) struct ChildWorker {
    _child: Child,
    _plan_file: tempfile::NamedTempFile,
}

impl ChildWorker {
    /// Starts `exe worker --plan FILE` and bridges its pipes to the channels.
    pub(super) fn spawn(
        exe: &Path,
        plan: &ShardPlan,
        commands_rx: mpsc::Receiver<Command>,
        reports_tx: mpsc::Sender<Report>,
    ) -> Result<Self> {
        let mut plan_file = tempfile::Builder::new()
            .prefix("consult-load-shard-")
            .suffix(".json")
            .tempfile()
            .context("creating a shard plan file")?;
        serde_json::to_writer(&mut plan_file, plan).context("writing a shard plan")?;
        plan_file.flush().context("writing a shard plan")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .arg("--plan")
            .arg(plan_file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {}", exe.display()))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        tokio::spawn(write_commands(stdin, commands_rx));
        tokio::spawn(read_reports(stdout, reports_tx));
        Ok(Self {
            _child: child,
            _plan_file: plan_file,
        })
    }
}

async fn write_commands(mut stdin: ChildStdin, mut commands_rx: mpsc::Receiver<Command>) {
    while let Some(command) = commands_rx.recv().await {
        let Ok(mut line) = serde_json::to_vec(&command) else {
            continue;
        };
        line.push(b'\n');
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            // The child is gone; its reader reports that.
            return;
        }
    }
}

async fn read_reports(stdout: ChildStdout, reports_tx: mpsc::Sender<Report>) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let report = serde_json::from_str(&line).unwrap_or_else(|error| Report::Failed {
            error: format!("undecodable report from worker: {error}"),
        });
        if reports_tx.send(report).await.is_err() {
            return;
        }
    }
}

/// The child's side: runs the shard planned in `plan_path`, reading
/// commands from stdin and writing reports to stdout until `Close`.
///
/// # Errors
///
/// When the plan cannot be read.
pub async fn run_child(plan_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(plan_path)
        .with_context(|| format!("reading {}", plan_path.display()))?;
    let plan: ShardPlan = serde_json::from_str(&text).context("decoding the shard plan")?;
    let (commands_tx, commands_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (reports_tx, mut reports_rx) = mpsc::channel::<Report>(CHANNEL_CAPACITY);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Command>(&line) {
                Ok(command) => {
                    if commands_tx.send(command).await.is_err() {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, "undecodable command"),
            }
        }
        // End of stdin closes the channel, which the worker takes as Close.
    });
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(report) = reports_rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&report) else {
                continue;
            };
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                return;
            }
        }
    });
    run_worker(plan, commands_rx, reports_tx).await;
    writer.await.context("report writer")?;
    Ok(())
}
