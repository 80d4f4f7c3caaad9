//! The mail path of `mailroom serve`: the DNS resolver, the delivery engine (with its
//! transport security and traffic shaping) and the ingest pipeline both front doors
//! hand messages to. Starts no listener.

use super::Core;
use crate::config::Config;
use anyhow::{Context, Result};
use mailroom_delivery::Engine;
use mailroom_ingest::{ContentConfig, Ingest, Signer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// One resolver for delivery and the domain checks: the system's, or `dns.nameservers`;
/// with `dns.dnssec`, TLSA answers carry the validating resolver's verdict (DANE).
pub(super) fn resolver(config: &Config) -> Result<Arc<dyn mailroom_dns::Resolver>> {
    let hickory = if config.dns.nameservers.is_empty() {
        mailroom_dns::HickoryResolver::system().context("reading the system DNS configuration")?
    } else {
        mailroom_dns::HickoryResolver::with_nameservers(
            &config.dns.nameservers,
            Duration::from_secs(config.dns.timeout_secs.unwrap_or(5)),
        )
        .context("dns.nameservers")?
    };
    let hickory = if config.dns.dnssec {
        hickory.trust_ad()
    } else {
        hickory
    };
    Ok(Arc::new(hickory))
}

/// The delivery engine (not yet running), or `None` with `delivery.enabled = false`.
/// `own`: this node's SMTP listeners, never delivered to.
pub(super) fn engine(
    config: &Config,
    core: &Core,
    own: Vec<SocketAddr>,
    resolver: &Arc<dyn mailroom_dns::Resolver>,
    live_nodes: &Arc<AtomicUsize>,
) -> Result<Option<Arc<Engine>>> {
    if !config.delivery.enabled {
        tracing::warn!("delivery.enabled = false: messages are queued but not delivered");
        return Ok(None);
    }
    let engine = Engine::new(
        config.delivery_config(own, &core.node_id),
        core.store.clone(),
        resolver.clone(),
        core.delivery_wake.clone(),
        core.shutdown.clone(),
    );
    // Connection limits are divided among live nodes.
    engine.set_live_nodes(live_nodes.clone());
    engine.set_transport_security(mailroom::tls_policy_config::transport_security(
        &config.delivery,
        config.dns.dnssec,
        core.store.clone(),
        resolver.clone(),
    )?);
    if config.shaping.enabled {
        let shaper = mailroom_delivery::shaper::Shaper::new(
            crate::shaping_config::settings(config).context("shaping")?,
            core.store.clone(),
        );
        shaper.set_live_nodes(live_nodes.clone());
        engine.set_shaper(shaper);
    }
    Ok(Some(engine))
}

/// The ingest pipeline: signing, content rules, and (with an engine) the in-memory
/// handoff of fresh messages to delivery.
pub(super) fn ingest(
    config: &Config,
    core: &Core,
    signer: &Arc<Signer>,
    content: Option<ContentConfig>,
    engine: Option<&Arc<Engine>>,
) -> Arc<Ingest> {
    let mut ingest = Ingest::new(
        core.store.clone(),
        core.policy.clone(),
        config.hostname.clone(),
    )
    .with_notify(core.delivery_wake.clone())
    .with_signer(signer.clone());
    if let Some(content) = content {
        ingest = ingest.with_content(Arc::new(content));
    }
    if let Some(engine) = engine {
        // Fresh messages go straight to delivery, in memory, once they are durable.
        ingest = ingest.with_handoff(Arc::new(mailroom_delivery::EngineHandoff(engine.clone())));
    }
    Arc::new(ingest)
}
