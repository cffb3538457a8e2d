//! `consult-floor serve`: the floor room hub (see `consult_load::floor`),
//! listening on `CONSULT_LISTEN` (default 127.0.0.1:8080). Started by the
//! harness as a hub is: `consult-load fanout --spawn-hub
//! target/release/consult-floor`. With `CONSULT_FLOOR__STORE=sqlite` (for
//! the harness: `--hub-env CONSULT_FLOOR__STORE=sqlite`) it is the stored
//! floor, writing to the SQLite file of `CONSULT_DATABASE__URL`; with
//! `log`, to an append-only file beside it.

use anyhow::{Context, Result, bail};
use consult_load::floor::{DEFAULT_LISTEN, StoreConfig, StoreKind, serve};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("serve") | None => {}
        Some(other) => bail!("usage: consult-floor [serve]; unknown argument {other}"),
    }
    let listen = std::env::var("CONSULT_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let address = listen
        .parse()
        .with_context(|| format!("CONSULT_LISTEN must be HOST:PORT, not {listen}"))?;
    let store = match std::env::var("CONSULT_FLOOR__STORE").ok().as_deref() {
        None | Some("") => None,
        Some(kind) => Some(StoreConfig::from_vars(StoreKind::parse(kind)?, |name| {
            std::env::var(name).ok()
        })?),
    };
    serve(address, store).await
}
