//! The background work of `mailroom serve`: the webhook dispatcher, TLS-RPT reports,
//! and the singleton jobs one node of the cluster runs at a time (event retention,
//! domain checks, pruning idempotency keys and counters), plus this node's heartbeats.

use super::Core;
use crate::config::Config;
use anyhow::{Context, Result};
use mailroom_api::DomainServices;
use mailroom_events::WebhookClient;
use mailroom_ingest::{Ingest, Signer};
use mailroom_store::{DynStore, NodeInfo};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The webhook HTTP client (the API's test deliveries use it too) and, with
/// `webhooks.enabled`, the running dispatcher.
pub(super) fn webhooks(
    config: &Config,
    core: &Core,
) -> Result<(WebhookClient, Option<JoinHandle<()>>)> {
    let webhook_client = WebhookClient::new(
        Duration::from_secs(config.webhooks.timeout_secs),
        config.webhooks.allow_private,
    )
    .context("building the webhook HTTP client")?
    .with_allowed_hosts(config.webhooks.allowed_hosts.clone());
    let dispatcher = if config.webhooks.enabled {
        let d = mailroom_events::Dispatcher::new(
            core.store.clone(),
            webhook_client.clone(),
            config.webhooks.dispatcher_config(),
            core.keyring.clone(),
            core.shutdown.clone(),
        );
        Some(tokio::spawn(d.run()))
    } else {
        tracing::warn!("webhooks.enabled = false: webhook deliveries accumulate as pending");
        None
    };
    Ok((webhook_client, dispatcher))
}

/// With `delivery.tls_rpt = "on"`, sends the daily TLS-RPT reports.
pub(super) fn tls_reports(
    config: &Config,
    core: &Core,
    resolver: &Arc<dyn mailroom_dns::Resolver>,
    ingest: &Arc<Ingest>,
) -> Result<()> {
    if config.delivery.tls_rpt != "on" {
        return Ok(());
    }
    let offset = config
        .delivery
        .tls_rpt_clock_offset_secs
        .saturating_mul(1000);
    let organization = if config.delivery.tls_rpt_organization.is_empty() {
        config.hostname.clone()
    } else {
        config.delivery.tls_rpt_organization.clone()
    };
    let reporter = Arc::new(crate::tls_report::TlsReporter {
        store: core.store.clone(),
        resolver: resolver.clone(),
        ingest: ingest.clone(),
        http: mailroom::tls_policy_config::report_client(&config.delivery, resolver.clone())?,
        tenant: config.delivery.tls_rpt_tenant.clone(),
        from: config.delivery.tls_rpt_from.clone(),
        submitter: mailroom_delivery::tls_policy::rpt::Submitter {
            organization,
            contact: config.delivery.tls_rpt_from.clone(),
            host: config.hostname.clone(),
        },
        clock: Arc::new(move || mailroom_model::now_millis().saturating_add(offset)),
        owner: format!("{}/{:08x}", core.node_id, rand::random::<u32>()),
        last_day: std::sync::Mutex::new(None),
        pending: std::sync::Mutex::new(Vec::new()),
    });
    tokio::spawn(crate::tls_report::run(
        reporter,
        Duration::from_secs(config.delivery.tls_rpt_check_secs),
        core.shutdown.clone(),
    ));
    Ok(())
}

/// Deletes events past `events.retention` (singleton `event-retention`).
pub(super) fn event_retention(config: &Config, core: &Core) {
    let retention = config.events.retention();
    let pruner = core.store.clone();
    tokio::spawn(crate::node::run_singleton(
        core.store.clone(),
        "event-retention",
        core.node_id.clone(),
        Duration::from_secs(5).min(retention.interval),
        retention.interval,
        core.shutdown.clone(),
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
}

/// The domain services (the API's domain routes and the managed zone use them) and
/// their periodic DNS checks and key rotation (singleton `domain-checks`).
pub(super) fn domain_checks(
    config: &Config,
    core: &Core,
    signer: Arc<Signer>,
    resolver: Arc<dyn mailroom_dns::Resolver>,
) -> Arc<DomainServices> {
    let domains = Arc::new(crate::domains::services(
        config,
        core.store.clone(),
        core.policy.clone(),
        signer,
        resolver,
    ));
    let checker = domains.clone();
    tokio::spawn(crate::node::run_singleton(
        core.store.clone(),
        "domain-checks",
        core.node_id.clone(),
        Duration::ZERO,
        Duration::from_secs(config.domains.pending_recheck_interval_secs.clamp(1, 60)),
        core.shutdown.clone(),
        move || {
            let services = checker.clone();
            async move { crate::domains::maintain_once(&services).await }
        },
    ));
    domains
}

/// Hourly idempotency-key pruning and ten-minutely counter pruning (singletons).
pub(super) fn prunes(core: &Core) {
    let keys = core.store.clone();
    tokio::spawn(crate::node::run_singleton(
        core.store.clone(),
        "idempotency-prune",
        core.node_id.clone(),
        Duration::ZERO,
        Duration::from_secs(3600),
        core.shutdown.clone(),
        move || prune_idempotency_keys(keys.clone()),
    ));
    // Minute and hour event counters past what `GET /v1/stats` reads (day rows stay).
    let counters = core.store.clone();
    tokio::spawn(crate::node::run_singleton(
        core.store.clone(),
        "counter-prune",
        core.node_id.clone(),
        Duration::ZERO,
        Duration::from_secs(600),
        core.shutdown.clone(),
        move || prune_counters(counters.clone()),
    ));
}

/// This node's heartbeats, the first one sent before returning (so `/v1/nodes` shows
/// the node as soon as its start is reported); the task ends with a last "stopped" beat.
pub(super) async fn heartbeats(
    core: &Core,
    info: NodeInfo,
    period: Duration,
    live_nodes: &Arc<AtomicUsize>,
) -> JoinHandle<()> {
    if let Err(e) = crate::node::beat(&core.store, &info).await {
        tracing::warn!(error = %e, "first heartbeat failed");
    }
    tokio::spawn(crate::node::run_heartbeats(
        core.store.clone(),
        info,
        period,
        live_nodes.clone(),
        core.shutdown.clone(),
    ))
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

async fn prune_counters(store: DynStore) {
    match store.prune_counters(mailroom_model::now_millis()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "old minute/hour event counters pruned"),
        Err(e) => tracing::warn!(error = %e, "pruning event counters failed"),
    }
}
