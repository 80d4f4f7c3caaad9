//! The `mailroom` binary: configuration, wiring, CLI and signals. Only this crate
//! knows every concrete implementation (SQLite store, rustls, axum, tokio listeners).

mod acme;
mod acme_order;
mod backup;
mod cli_deletion;
mod cli_keys;
mod cli_nodes;
mod cli_send;
mod cli_signing;
#[cfg(test)]
mod cli_tests;
mod cli_throttle;
mod client;
mod client_events;
mod https;
mod metrics;
mod node;
mod reload;
mod serve;
mod server_find;
mod shaping_view;
mod store_open;
mod tls;
mod tls_report;

/// The allocator: mimalloc rather than glibc's malloc. The pipeline allocates and frees
/// per message on several threads (tokio workers, SQLite's threads); glibc's arenas
/// spent about 12 % of the server's CPU in `_int_malloc`, `malloc_consolidate` and
/// `unlink_chunk` under the delivery benchmark (BENCHMARKS.md, issue 14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Configuration (and the domain sections and files it needs) lives in the library
// target (src/lib.rs) so the fuzzers reach it.
use mailroom::{acme_config, config, content_config, domains, files, secrets_key, shaping_config};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "mailroom",
    version,
    about = "Self-hostable outbound email service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service (SMTP submission, implicit TLS, HTTP API).
    Serve {
        /// TOML configuration file; without one, the embedded defaults are used.
        #[arg(long, env = "MAILROOM_CONFIG")]
        config: Option<PathBuf>,
        /// Log format on stderr (overrides log.format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a configuration file and name the first bad key.
    CheckConfig {
        #[arg(env = "MAILROOM_CONFIG")]
        config: PathBuf,
    },
    /// Bring the configured database's schema up to date (SQLite file or PostgreSQL),
    /// then exit; `serve` does the same at start.
    Migrate {
        /// TOML configuration file of the service (its [storage]).
        #[arg(long, env = "MAILROOM_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Which server and identity the CLI uses, the server's version and health (`/readyz`).
    Status {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Copy the SQLite store, consistently, while the service runs (PostgreSQL: use
    /// pg_dump). DEST must not exist; it is created with mode 0600.
    Backup {
        /// The file to write.
        dest: PathBuf,
        /// TOML configuration file of the service (its data_dir and [storage]).
        #[arg(long, env = "MAILROOM_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Ask the running server to re-read its configuration file (same as SIGHUP): prints
    /// what changed live and what needs a restart; a bad file changes nothing.
    Reload {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Traffic shaping: throttles and suspensions in force, clear them, tenant egress pools.
    Throttle {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: cli_throttle::ThrottleCmd,
    },
    /// Show the nodes sharing the store: alive or dead, last heartbeat, leased recipients.
    Nodes {
        #[command(flatten)]
        api: client::ApiArgs,
        /// Print the API's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Manage tenants (through the HTTP API).
    Tenant {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client::TenantCmd,
    },
    /// Erase one address (GDPR) from messages, bodies, events, suppressions: replaced by
    /// a redaction everywhere, its waiting mail cancelled; prints the counts per kind.
    Erasure {
        #[command(flatten)]
        api: client::ApiArgs,
        address: String,
        /// Only in this tenant's data (name or id); default: every tenant (operator).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Manage a tenant's SMTP credentials.
    Credential {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client::CredentialCmd,
    },
    /// Manage sending domains.
    Domain {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client::DomainCmd,
    },
    /// Manage a tenant's IP allowlist (relay without AUTH).
    AllowedIps {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client::AllowedIpsCmd,
    },
    /// Show the queue, retry or cancel a message.
    Queue {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: Option<client::QueueCmd>,
    },
    /// Show message status.
    Message {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client::MessageCmd,
    },
    /// Send a message over the HTTP API (tenant API key), or many with --count.
    Send {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        args: cli_send::SendArgs,
    },
    /// Manage the tenant's suppression list.
    Suppression {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: cli_send::SuppressionCmd,
    },
    /// Read the event stream.
    Events {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client_events::EventsCmd,
    },
    /// Manage webhooks (signed event deliveries).
    Webhook {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: client_events::WebhookCmd,
    },
    /// Manage a tenant's named API keys (scopes, rotation, revocation).
    Key {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: cli_keys::KeyCmd,
    },
    /// Choose the DKIM signatures of a tenant or domain (ed25519+rsa, rsa, ed25519, none).
    Signing {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: cli_signing::SigningCmd,
    },
    /// Rotate the operator token.
    OperatorToken {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        cmd: cli_keys::OperatorTokenCmd,
    },
    /// Secrets at rest: rotate the key-encryption key (run with the service stopped).
    Secrets {
        #[command(subcommand)]
        cmd: SecretsCmd,
    },
    /// SMTP load generator: submit N messages over C connections and report rates.
    Bench(mailroom_bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum SecretsCmd {
    /// Generate a new key-encryption key, re-seal every DKIM private key and webhook
    /// secret under it, keep the old key as `<key file>.old` until you delete it.
    RotateKey {
        /// TOML configuration file of the service (its data_dir and [secrets]).
        #[arg(long, env = "MAILROOM_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILROOM_LOG").unwrap_or_else(|_| {
        reload::log_filter(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    });
    // A reload (SIGHUP, `mailroom reload`) replaces the filter (log.level).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    reload::set_log_handle(handle);
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never in files or pipes.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if format == "json" {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, log_format } => {
                let path = config;
                let config = config::load(path.as_deref(), std::env::vars())?;
                let format = match log_format {
                    Some(LogFormat::Json) => "json",
                    Some(LogFormat::Human) => "human",
                    None => config.log.format.as_str(),
                };
                init_logging(format, &config.log.level);
                serve::run(config, path).await
            }
            Command::CheckConfig { config } => {
                let loaded = config::load(Some(&config), std::env::vars())?;
                mailroom::acme_config::check_files(&loaded)?;
                for warning in domains::warnings(&loaded) {
                    eprintln!("warning: {warning}");
                }
                println!("{}: ok", config.display());
                Ok(())
            }
            Command::Migrate { config } => {
                let config = config::load(config.as_deref(), std::env::vars())?;
                init_logging("human", "warn");
                println!("{}", store_open::migrate(&config).await?);
                Ok(())
            }
            Command::Status { api } => server_find::status(&api).await,
            Command::Backup { dest, config } => {
                let config = config::load(config.as_deref(), std::env::vars())?;
                let report = backup::backup(&config, &dest).await?;
                println!(
                    "{}: backup of {} written ({} bytes, {} messages)",
                    dest.display(),
                    config.sqlite_path().display(),
                    report.bytes,
                    report.messages
                );
                Ok(())
            }
            Command::Nodes { api, json } => cli_nodes::nodes(&api, json).await,
            Command::Reload { api } => cli_nodes::reload(&api).await,
            Command::Throttle { api, cmd } => cli_throttle::throttle(&api, cmd).await,
            Command::Tenant { api, cmd } => client::tenant(&api, cmd).await,
            Command::Erasure {
                api,
                address,
                tenant,
            } => cli_deletion::erasure(&api, &address, tenant.as_deref()).await,
            Command::Credential { api, cmd } => client::credential(&api, cmd).await,
            Command::Domain { api, cmd } => client::domain(&api, cmd).await,
            Command::AllowedIps { api, cmd } => client::allowed_ips(&api, cmd).await,
            Command::Message { api, cmd } => client::message(&api, cmd).await,
            Command::Queue { api, cmd } => client::queue(&api, cmd).await,
            Command::Send { api, args } => cli_send::send(&api, args).await,
            Command::Suppression { api, cmd } => cli_send::suppression(&api, cmd).await,
            Command::Events { api, cmd } => client_events::events(&api, cmd).await,
            Command::Webhook { api, cmd } => client_events::webhook(&api, cmd).await,
            Command::Key { api, cmd } => cli_keys::key(&api, cmd).await,
            Command::OperatorToken { api, cmd } => cli_keys::operator_token(&api, cmd).await,
            Command::Signing { api, cmd } => cli_signing::signing(&api, cmd).await,
            Command::Secrets {
                cmd: SecretsCmd::RotateKey { config },
            } => {
                let config = config::load(config.as_deref(), std::env::vars())?;
                init_logging("human", "warn");
                let db_path = config.sqlite_path();
                anyhow::ensure!(
                    config.storage.is_postgres() || db_path.exists(),
                    "no database at {} (data_dir / storage.sqlite_path)",
                    db_path.display()
                );
                let (store, _) = store_open::open(&config).await?;
                println!("{}", secrets_key::rotate(&config, store.as_ref()).await?);
                Ok(())
            }
            Command::Bench(args) => mailroom_bench::run_cli(args).await,
        }
    })
}
