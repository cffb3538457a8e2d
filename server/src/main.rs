//! The `consult-hub` binary: parses the command line, loads the config,
//! initialises tracing and runs the chosen subcommand. Its memory comes from
//! jemalloc: why, and what it was measured to save, is in docs/decisions.md
//! ("The hub allocates with jemalloc").

use anyhow::Context;
use clap::{Parser, Subcommand};
use consult_hub::auth::{Authenticator, Principal};
use consult_hub::{App, Config, demo, telemetry};
use consult_protocol::{ClinicId, Role, UserId};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The hub's Rust allocations; SQLite's own stay with the C library.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "consult-hub",
    version,
    about = "Real-time messaging hub for telehealth consultations"
)]
struct Cli {
    /// TOML config file; `CONSULT_…` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL (`sqlite://FILE?mode=rwc` or `postgres://…`).
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (the default).
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Seed demo data and print tokens to try it with.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print a signed token.
    Token {
        /// patient, provider or admin.
        #[arg(long)]
        role: Role,
        /// The user id.
        #[arg(long)]
        user: String,
        /// The clinic id.
        #[arg(long)]
        clinic: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Seed demo data, print tokens, and exit.
    Demo,
    /// Print the configuration reference, or check a configuration.
    #[command(group(clap::ArgGroup::new("action").required(true)))]
    Config {
        /// Print every setting with its default and help, as TOML the hub
        /// loads (reads no config file, environment or database).
        #[arg(long, group = "action")]
        print_defaults: bool,
        /// Load and validate the configuration (`--config`, `CONSULT_…`
        /// variables, `--database`), then exit; provider key files are read
        /// only when the hub starts.
        #[arg(long, group = "action")]
        check: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Config {
        print_defaults: true,
        ..
    }) = cli.command
    {
        let reference = consult_hub::config::defaults_toml()?;
        std::io::stdout()
            .lock()
            .write_all(reference.as_bytes())
            .context("writing the configuration reference")?;
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database {
        config.database.url = url;
    }
    telemetry::init(&config.log);
    // Before anything opens SQLite: its page cache can be set only then.
    consult_hub::store::prepare_sqlite();
    match cli.command.unwrap_or(Command::Serve {
        listen: None,
        demo: false,
    }) {
        Command::Serve { listen, demo } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            config.validate()?;
            serve(config, demo).await
        }
        Command::Migrate => {
            App::build(config).await.context("migrating")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Token {
            role,
            user,
            clinic,
            ttl,
        } => {
            let auth = Authenticator::from_config(&config.auth)?;
            let principal = Principal {
                user: UserId(user),
                role,
                clinic: ClinicId(clinic),
            };
            println!("{}", auth.issue(&principal, ttl)?);
            Ok(())
        }
        Command::Demo => {
            let app = App::build(config).await?;
            let info = demo::seed(app.state()).await?;
            print_demo(&info, None);
            Ok(())
        }
        Command::Config { .. } => {
            config.validate()?;
            println!("configuration is valid");
            Ok(())
        }
    }
}

async fn serve(mut config: Config, demo: bool) -> anyhow::Result<()> {
    // Run from the repository root, the hub serves the bundled web clients.
    if config.web.static_dir.is_none() {
        let bundled = PathBuf::from("clients/web");
        if bundled.join("console").is_dir() {
            config.web.static_dir = Some(bundled);
        }
    }
    if config.web.sdk_dir.is_none() {
        let bundled = PathBuf::from("clients/js/src");
        if bundled.join("consult.js").is_file() {
            config.web.sdk_dir = Some(bundled);
        }
    }
    let listener = consult_hub::app::bind_listener(
        config.listen,
        config.listen_backlog,
        config.http.socket_send_buffer_bytes,
    )
    .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let app = App::build(config).await.context("starting the hub")?;
    if demo {
        let info = demo::seed(app.state()).await?;
        print_demo(&info, Some(address));
    }
    tracing::info!(%address, "consult-hub listening");
    app.run(listener, consult_hub::shutdown_signal()).await?;
    Ok(())
}

fn print_demo(info: &demo::DemoInfo, address: Option<SocketAddr>) {
    println!("\nconsult-hub demo — clinic `{}`\n", demo::CLINIC);
    if let Some(address) = address {
        println!("  provider console:  http://{address}/console/");
        println!("  patient app:       http://{address}/patient/");
        println!("  WebSocket:         ws://{address}/v1/ws");
        println!("  health / metrics:  http://{address}/readyz  http://{address}/metrics\n");
    }
    println!("Consultations:");
    for (id, patient, status) in &info.consultations {
        println!("  {id}  patient {patient:<10} {status}");
    }
    println!("\nTokens (valid 12 h; paste one into the console's sign-in box):");
    for (user, role, name, token) in &info.people {
        println!("  {role:<8} {user:<10} {name}\n    {token}");
    }
    println!(
        "\nThe API key for /v1/ is in the key file (auth.key_file, default ./consult-hub.key).\n"
    );
}
