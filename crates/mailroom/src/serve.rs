//! `mailroom serve`: open the store (SQLite, or PostgreSQL shared with other nodes),
//! load the policy, bind every listener, print where they are (and write them to
//! data_dir/listeners.json), start the heartbeat and the singleton jobs, then run
//! until SIGINT or SIGTERM. On shutdown, listeners stop accepting, open sessions hear `421 4.3.2`, and
//! the process waits (bounded) for sessions that are committing a message.

use crate::config::Config;
use crate::files;
use anyhow::{Context, Result};
use mailroom_ingest::Ingest;
use mailroom_intake::{HealthMonitor, Intake};
use mailroom_policy::Policy;
use mailroom_smtpd::{IntakeHandle, Listener, ListenerKind, Shared};
use mailroom_store::{DynStore, NodeInfo};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

pub async fn run(config: Config) -> Result<()> {
    // Said at every start: mail would leave, but its bounces or its SPF would not work.
    for warning in crate::domains::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let db_path = config.sqlite_path();
    secure_files(&config, &db_path)?;
    let backend = config.storage.backend.clone();
    let (store, pg): (DynStore, _) = crate::store_open::open(&config).await?;
    let node_id = crate::node::resolve_id(&config)?;
    if config.storage.is_postgres() {
        // One SQLite file has one node; on a shared database two must not share an id.
        crate::node::ensure_id_unused(&store, &node_id).await?;
    }
    let started_at = mailroom_model::now_millis();
    let keyring = crate::secrets_key::open(&config, store.as_ref())
        .await?
        .keyring;
    let token_hash = crate::cli_keys::setup_operator_token(&config.data_dir, &store).await?;
    let policy = Policy::load(store.clone(), config.policy_config())
        .await
        .context("loading tenants")?;
    // Rings when a message is queued or a retry is asked for: delivery starts at once.
    let delivery_wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = CancellationToken::new();
    if let Some(pg) = pg {
        tokio::spawn(crate::store_open::wake_on_notify(
            pg,
            delivery_wake.clone(),
            shutdown.clone(),
        ));
    }

    let mut listeners = Vec::new();
    let mut report = serde_json::Map::new();
    for (kind, addrs, name, key) in [
        (
            ListenerKind::Submission,
            &config.smtp.submission_listen,
            "submission",
            "smtp.submission_listen",
        ),
        (
            ListenerKind::ImplicitTls,
            &config.smtp.implicit_tls_listen,
            "implicit_tls",
            "smtp.implicit_tls_listen",
        ),
        (
            ListenerKind::Intake,
            &config.intake.listen,
            "intake",
            "intake.listen",
        ),
    ] {
        let mut bound = Vec::new();
        for addr in addrs {
            let socket = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({key})"))?;
            let local = socket.local_addr()?;
            println!("SMTP {name:<12} listening on {local}");
            bound.push(serde_json::json!(local.to_string()));
            listeners.push(Listener { socket, kind });
        }
        report.insert(name.to_string(), serde_json::Value::Array(bound));
    }
    let http = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let http_addr = http.local_addr()?;
    println!("HTTP API          listening on http://{http_addr}");
    report.insert("http".into(), serde_json::json!(http_addr.to_string()));
    files::write_private(
        &config.data_dir.join("listeners.json"),
        serde_json::Value::Object(report.clone())
            .to_string()
            .as_bytes(),
    )?;

    let own: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.socket.local_addr().ok())
        .collect();
    // One resolver for delivery and the domain checks.
    let resolver: Arc<dyn mailroom_dns::Resolver> =
        Arc::new(if config.dns.nameservers.is_empty() {
            mailroom_dns::HickoryResolver::system()
                .context("reading the system DNS configuration")?
        } else {
            mailroom_dns::HickoryResolver::with_nameservers(
                &config.dns.nameservers,
                Duration::from_secs(config.dns.timeout_secs.unwrap_or(5)),
            )
            .context("dns.nameservers")?
        });
    let smtp_addrs = own.clone();
    // How many nodes are alive (heartbeats), for limits shared among them.
    let live_nodes = Arc::new(AtomicUsize::new(1));
    // Per-second rates are shared among live nodes (see mailroom_policy::quota).
    policy.use_live_nodes(live_nodes.clone());
    let engine = if config.delivery.enabled {
        let engine = mailroom_delivery::Engine::new(
            config.delivery_config(own, &node_id),
            store.clone(),
            resolver.clone(),
            delivery_wake.clone(),
            shutdown.clone(),
        );
        // Connection limits are divided among live nodes.
        engine.set_live_nodes(live_nodes.clone());
        Some(engine)
    } else {
        tracing::warn!("delivery.enabled = false: messages are queued but not delivered");
        None
    };
    let delivery = engine.clone().map(|e| tokio::spawn(e.run()));
    let signer = crate::domains::signer(&config, &store, keyring.clone()).await?;
    let (content, tracking) = crate::content_config::build(&config, http_addr)?;
    let mut ingest = Ingest::new(store.clone(), policy.clone(), config.hostname.clone())
        .with_notify(delivery_wake.clone())
        .with_signer(signer.clone());
    if let Some(content) = content {
        ingest = ingest.with_content(Arc::new(content));
    }
    if let Some(engine) = &engine {
        // Fresh messages go straight to delivery, in memory, once they are durable.
        ingest = ingest.with_handoff(Arc::new(mailroom_delivery::EngineHandoff(engine.clone())));
    }
    let ingest = Arc::new(ingest);
    let acceptor = crate::tls::acceptor(&config)?;
    // Sender health: checked after each recorded bounce or complaint, and periodically.
    let health = Arc::new(HealthMonitor::new(
        store.clone(),
        policy.clone(),
        config.health.enabled,
    ));
    let health_every = Duration::from_secs(config.health.check_interval_secs);
    let monitor = health.clone();
    tokio::spawn(crate::node::run_singleton(
        store.clone(),
        "health-check",
        node_id.clone(),
        health_every,
        health_every,
        shutdown.clone(),
        move || {
            let monitor = monitor.clone();
            async move {
                if let Err(e) = monitor.check_all().await {
                    tracing::warn!(error = %e, "sender health round failed");
                }
            }
        },
    ));
    let intake = (!config.intake.listen.is_empty()).then(|| IntakeHandle {
        pipeline: Arc::new(Intake::new(store.clone(), health.clone())),
        max_message_size: config.intake.max_message_size,
        max_recipients: config.intake.max_recipients,
    });
    let shared = Shared::with_intake(
        config.smtp_config(),
        policy.clone(),
        ingest.clone(),
        Some(acceptor),
        shutdown.clone(),
        intake,
    );

    let mut tasks = Vec::new();
    for listener in listeners {
        tasks.push(tokio::spawn(mailroom_smtpd::serve_listener(
            shared.clone(),
            listener,
        )));
    }
    let webhook_client = mailroom_events::WebhookClient::new(
        Duration::from_secs(config.webhooks.timeout_secs),
        config.webhooks.allow_private,
    )
    .context("building the webhook HTTP client")?
    .with_allowed_hosts(config.webhooks.allowed_hosts.clone());
    let dispatcher = if config.webhooks.enabled {
        let d = mailroom_events::Dispatcher::new(
            store.clone(),
            webhook_client.clone(),
            config.webhooks.dispatcher_config(),
            keyring.clone(),
            shutdown.clone(),
        );
        Some(tokio::spawn(d.run()))
    } else {
        tracing::warn!("webhooks.enabled = false: webhook deliveries accumulate as pending");
        None
    };
    let retention = config.events.retention();
    let pruner = store.clone();
    tokio::spawn(crate::node::run_singleton(
        store.clone(),
        "event-retention",
        node_id.clone(),
        Duration::from_secs(5).min(retention.interval),
        retention.interval,
        shutdown.clone(),
        move || {
            let store = pruner.clone();
            async move {
                match mailroom_events::retention::prune_once(&*store, retention.keep).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "pruned old events"),
                    Err(e) => tracing::warn!(error = %e, "event pruning failed"),
                }
            }
        },
    ));
    let domains = Arc::new(crate::domains::services(
        &config,
        store.clone(),
        policy.clone(),
        signer,
        resolver,
    ));
    let checker = domains.clone();
    tokio::spawn(crate::node::run_singleton(
        store.clone(),
        "domain-checks",
        node_id.clone(),
        Duration::ZERO,
        Duration::from_secs(config.domains.pending_recheck_interval_secs.clamp(1, 60)),
        shutdown.clone(),
        move || {
            let services = checker.clone();
            async move { crate::domains::maintain_once(&services).await }
        },
    ));
    if let Some(addr) = config.managed_domain.dns_listen {
        let bound =
            crate::domains::serve_managed_zone(domains.clone(), addr, shutdown.clone()).await?;
        println!("DNS managed zone  listening on {bound} (UDP and TCP)");
        report.insert("dns".into(), serde_json::json!(bound.to_string()));
        files::write_private(
            &config.data_dir.join("listeners.json"),
            serde_json::Value::Object(report.clone())
                .to_string()
                .as_bytes(),
        )?;
    }
    let api_state = mailroom_api::AppState {
        domains,
        store: store.clone(),
        policy: policy.clone(),
        operator_token_hash: Arc::new(mailroom_api::OperatorToken::new(token_hash)),
        delivery_wake: delivery_wake.clone(),
        ingest: ingest.clone(),
        hostname: Arc::new(config.hostname.clone()),
        max_api_recipients: config.http.max_recipients,
        inflight_keys: Default::default(),
        metrics: Some(crate::metrics::install(shutdown.clone())?),
        webhooks: webhook_client,
        keyring,
        tracking: Some(tracking),
    };
    // Changes made through other nodes (directory, DKIM keys, operator token) and their
    // daily quota counts reach this node's caches.
    mailroom_api::spawn_refreshers(
        &api_state,
        mailroom_api::RefreshIntervals::default(),
        shutdown.clone(),
    );
    let app = mailroom_api::app(api_state);
    let keys = store.clone();
    tokio::spawn(crate::node::run_singleton(
        store.clone(),
        "idempotency-prune",
        node_id.clone(),
        Duration::ZERO,
        Duration::from_secs(3600),
        shutdown.clone(),
        move || prune_idempotency_keys(keys.clone()),
    ));
    let heartbeat = Duration::from_secs(config.node.heartbeat_secs);
    let info = NodeInfo {
        id: node_id.clone(),
        started_at,
        last_seen: started_at,
        version: env!("CARGO_PKG_VERSION").to_string(),
        detail: crate::node::detail(&backend, &smtp_addrs, http_addr, heartbeat),
    };
    // The first heartbeat before the start is reported, so `/v1/nodes` shows this node.
    if let Err(e) = crate::node::beat(&store, &info).await {
        tracing::warn!(error = %e, "first heartbeat failed");
    }
    let heartbeats = tokio::spawn(crate::node::run_heartbeats(
        store.clone(),
        info,
        heartbeat,
        live_nodes.clone(),
        shutdown.clone(),
    ));
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(
            http,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await
    });
    tracing::info!(data_dir = %config.data_dir.display(), hostname = %config.hostname, node_id = %node_id, backend = %backend, "mailroom started");

    wait_for_signal().await;
    tracing::info!("shutting down: closing listeners and sessions");
    shutdown.cancel();
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
    Ok(())
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

/// Forgets idempotency keys older than their 24-hour window (run hourly, on one node).
async fn prune_idempotency_keys(store: DynStore) {
    let before = mailroom_model::now_millis() - mailroom_api::IDEMPOTENCY_WINDOW_MS;
    match store.prune_idempotency(before).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "old idempotency keys pruned"),
        Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
    }
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
