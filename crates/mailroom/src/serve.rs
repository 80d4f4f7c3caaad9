//! `mailroom serve`: open the store (SQLite, or PostgreSQL shared with other nodes),
//! load the policy, bind every listener, print where they are (and write them to
//! data_dir/listeners.json), start the heartbeat and the singleton jobs, then run
//! until SIGINT or SIGTERM. On shutdown, listeners stop accepting, open sessions hear `421 4.3.2`, and
//! the process waits (bounded) for sessions that are committing a message.
//!
//! `run` wires the parts in order; each part is started by its own module:
//! `listeners` (binding sockets, `listeners.json`), `pipeline` (resolver, delivery
//! engine, ingest), `smtp` (sender health, intake, SMTP sessions), `jobs` (webhooks,
//! TLS-RPT, singleton jobs, heartbeats) and `web` (API router, reload, HTTP/HTTPS).

mod jobs;
mod listeners;
mod pipeline;
mod smtp;
mod web;

use crate::config::Config;
use crate::files;
use anyhow::{Context, Result};
use mailroom_policy::Policy;
use mailroom_secrets::Keyring;
use mailroom_store::{DynStore, NodeInfo};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// What every part of the service is started with.
struct Core {
    store: DynStore,
    node_id: String,
    policy: Arc<Policy>,
    /// Opens sealed secrets (DKIM keys, webhook secrets).
    keyring: Arc<Keyring>,
    /// Rings when a message is queued or a retry is asked for: delivery starts at once.
    delivery_wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
}

/// `path`: the configuration file `config` came from, re-read on reload.
pub async fn run(config: Config, path: Option<std::path::PathBuf>) -> Result<()> {
    // Installed first: SIGHUP's default action would end the process.
    let hangups = crate::reload::hangups()?;
    // Said at every start: mail would leave, but its bounces or its SPF would not work.
    for warning in crate::domains::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let db_path = config.sqlite_path();
    secure_files(&config, &db_path)?;
    let backend = config.storage.backend.clone();
    let (core, started_at, token_hash) = open(&config).await?;

    let mut bound = listeners::bind(&config).await?;
    let own = bound.smtp_addrs();
    let resolver = pipeline::resolver(&config)?;
    // How many nodes are alive (heartbeats), for limits shared among them.
    let live_nodes = Arc::new(AtomicUsize::new(1));
    // Per-second rates are shared among live nodes (see mailroom_policy::quota).
    core.policy.use_live_nodes(live_nodes.clone());
    let engine = pipeline::engine(&config, &core, own.clone(), &resolver, &live_nodes)?;
    let delivery = engine.clone().map(|e| tokio::spawn(e.run()));
    let signer = crate::domains::signer(&config, &core.store, core.keyring.clone()).await?;
    let (content, tracking) = crate::content_config::build(&config, bound.http_addr)?;
    let ingest = pipeline::ingest(&config, &core, &signer, content, engine.as_ref());
    mailroom::acme_config::check_files(&config)?;
    let (acceptor, live_cert) = crate::tls::acceptor(&config)?;
    let https_acceptor = acceptor.clone();
    let acme_status = crate::acme::spawn(
        &config,
        core.store.clone(),
        live_cert.clone(),
        core.shutdown.clone(),
    );
    let smtp_listeners = std::mem::take(&mut bound.smtp);
    let (shared, tasks) = smtp::start(&config, &core, &ingest, acceptor, smtp_listeners);

    let (webhook_client, dispatcher) = jobs::webhooks(&config, &core)?;
    jobs::tls_reports(&config, &core, &resolver, &ingest)?;
    jobs::event_retention(&config, &core);
    let domains = jobs::domain_checks(&config, &core, signer, resolver);
    bound
        .managed_zone(&config, domains.clone(), core.shutdown.clone())
        .await?;
    let app = web::app(
        &config,
        &core,
        web::Parts {
            path,
            hangups,
            domains,
            token_hash,
            ingest,
            webhooks: webhook_client,
            tracking,
            engine,
            cert: live_cert,
            http_addr: bound.http_addr,
            own_listeners: own.clone(),
            acme: acme_status,
        },
    )?;
    jobs::prunes(&core);
    let heartbeat = Duration::from_secs(config.node.heartbeat_secs);
    let info = NodeInfo {
        id: core.node_id.clone(),
        started_at,
        last_seen: started_at,
        version: env!("CARGO_PKG_VERSION").to_string(),
        detail: crate::node::detail(&backend, &own, bound.http_addr, heartbeat),
    };
    let heartbeats = jobs::heartbeats(&core, info, heartbeat, &live_nodes).await;
    let http_task = web::serve(&core, app, bound.http, bound.https, https_acceptor);
    tracing::info!(data_dir = %config.data_dir.display(), hostname = %config.hostname, node_id = %core.node_id, backend = %backend, "mailroom started");

    wait_for_signal().await;
    shut_down(
        &core, &shared, http_task, delivery, dispatcher, tasks, heartbeats,
    )
    .await;
    Ok(())
}

/// Opens the store, resolves this node's id, opens the keyring, sets up the operator
/// token and loads the policy; returns the core, the start time and the operator
/// token's digest.
async fn open(config: &Config) -> Result<(Core, i64, String)> {
    let (store, pg): (DynStore, _) = crate::store_open::open(config).await?;
    let node_id = crate::node::resolve_id(config)?;
    if config.storage.is_postgres() {
        // One SQLite file has one node; on a shared database two must not share an id.
        crate::node::ensure_id_unused(&store, &node_id).await?;
    }
    let started_at = mailroom_model::now_millis();
    let keyring = crate::secrets_key::open(config, store.as_ref())
        .await?
        .keyring;
    let token_hash = crate::cli_keys::setup_operator_token(&config.data_dir, &store).await?;
    let policy = Policy::load(store.clone(), config.policy_config())
        .await
        .context("loading tenants")?;
    let delivery_wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = CancellationToken::new();
    if let Some(pg) = pg {
        tokio::spawn(crate::store_open::wake_on_notify(
            pg,
            delivery_wake.clone(),
            shutdown.clone(),
        ));
    }
    let core = Core {
        store,
        node_id,
        policy,
        keyring,
        delivery_wake,
        shutdown,
    };
    Ok((core, started_at, token_hash))
}

/// Stops accepting, tells open sessions `421`, and waits (each wait bounded) for
/// sessions, the HTTP server, deliveries in flight, webhook attempts and the last
/// heartbeat.
async fn shut_down(
    core: &Core,
    shared: &mailroom_smtpd::Shared,
    http_task: JoinHandle<std::io::Result<()>>,
    delivery: Option<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    heartbeats: JoinHandle<()>,
) {
    tracing::info!("shutting down: closing listeners and sessions");
    core.shutdown.cancel();
    shared.tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not finish within the grace period");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    if let Some(d) = delivery {
        // In-flight deliveries finish (bounded by their SMTP timeouts); queued work is
        // released for the next start.
        if tokio::time::timeout(SHUTDOWN_GRACE, d).await.is_err() {
            tracing::warn!(
                "deliveries still running at the end of the grace period; their leases will expire"
            );
        }
    }
    if let Some(d) = dispatcher
        && tokio::time::timeout(SHUTDOWN_GRACE, d).await.is_err()
    {
        tracing::warn!("webhook attempts still running at shutdown; they will be retried");
    }
    for t in tasks {
        t.abort();
    }
    // The last heartbeat says "stopped": the other nodes count this one out at once.
    let _ = tokio::time::timeout(Duration::from_secs(5), heartbeats).await;
    tracing::info!("stopped");
}

/// Makes the data directory `0700` and every file in it `0600` (and the database
/// files, when `storage.sqlite_path` puts them elsewhere), logging what it corrected.
fn secure_files(config: &Config, db_path: &std::path::Path) -> Result<()> {
    let mut changed = files::secure_data_dir(&config.data_dir)
        .with_context(|| format!("securing data_dir {}", config.data_dir.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db_path.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if let Some(old) = files::secure_file(&p)? {
            changed.push((p, old));
        }
    }
    for (path, old) in changed {
        tracing::warn!(path = %path.display(), old_mode = format!("{old:o}"), "was open to other local users; mode corrected (data_dir 0700, files 0600)");
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
