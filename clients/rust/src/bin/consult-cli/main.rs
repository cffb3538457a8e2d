//! `consult-cli`: a command-line client for consult-hub, built on
//! [`consult_client::ResilientClient`].
//!
//! ```text
//! export CONSULT_TOKEN=$(cat provider.jwt)      # or --token-file provider.jwt
//! consult-cli send --consultation k1 --text "Running 5 minutes late"
//! consult-cli watch --consultation k1 --since 0
//! consult-cli dashboard
//! consult-cli quick --consultation k1 --template t1 --var minutes=10
//! consult-cli templates
//! consult-cli alert --consultation k1 --text "Your provider is ready" --push --sms
//! ```
//!
//! Failures print `error: <code>: <message>` on stderr and exit with 1
//! (clap's usage errors exit with 2).
//!
//! # Layout
//!
//! - `args`: the command line (clap).
//! - `token`: reading the token; checking the URL carries none.
//! - `run`: the subcommands.
//! - `output`: text lines and the dashboard list.
//! - `failure`: the `error: <code>: <message>` report.

mod args;
mod failure;
mod output;
mod run;
mod token;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match run::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing left to report to.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", failure::Failure::from_anyhow(&error));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
}
