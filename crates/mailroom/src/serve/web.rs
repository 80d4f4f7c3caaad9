//! The HTTP side of `mailroom serve`: the API state and router (with the console,
//! reload, shaping view and ACME status), the refreshers and the SIGHUP reloader, and
//! serving it on the HTTP and HTTPS listeners until shutdown.

use super::Core;
use crate::config::Config;
use anyhow::Result;
use mailroom_api::{DomainServices, TrackingState};
use mailroom_delivery::Engine;
use mailroom_events::WebhookClient;
use mailroom_ingest::Ingest;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// What the router is built from, besides the configuration and the core.
pub(super) struct Parts {
    /// The configuration file, re-read on reload.
    pub path: Option<std::path::PathBuf>,
    pub hangups: crate::reload::Hangups,
    pub domains: Arc<DomainServices>,
    pub token_hash: String,
    pub ingest: Arc<Ingest>,
    pub webhooks: WebhookClient,
    pub tracking: TrackingState,
    pub engine: Option<Arc<Engine>>,
    pub cert: Arc<crate::tls::LiveCert>,
    pub http_addr: SocketAddr,
    /// This node's SMTP listeners (a reload keeps delivery from connecting to them).
    pub own_listeners: Vec<SocketAddr>,
    pub acme: Option<crate::acme::StatusHandle>,
}

/// Builds the API router and starts what keeps its caches current: the refreshers
/// (changes made through other nodes) and the SIGHUP reloader.
pub(super) fn app(config: &Config, core: &Core, parts: Parts) -> Result<axum::Router> {
    let api_state = mailroom_api::AppState {
        domains: parts.domains,
        store: core.store.clone(),
        policy: core.policy.clone(),
        operator_token_hash: Arc::new(mailroom_api::OperatorToken::new(parts.token_hash)),
        delivery_wake: core.delivery_wake.clone(),
        ingest: parts.ingest.clone(),
        hostname: Arc::new(config.hostname.clone()),
        max_api_recipients: config.http.max_recipients,
        inflight_keys: Default::default(),
        metrics: Some(crate::metrics::install(core.shutdown.clone())?),
        webhooks: parts.webhooks,
        keyring: core.keyring.clone(),
        tracking: Some(parts.tracking),
        console: mailroom::console_config::settings(&config.console),
    };
    // Changes made through other nodes (directory, DKIM keys, operator token) and their
    // daily quota counts reach this node's caches.
    mailroom_api::spawn_refreshers(
        &api_state,
        mailroom_api::RefreshIntervals::default(),
        core.shutdown.clone(),
    );
    let reloader = Arc::new(crate::reload::Reloader {
        path: parts.path,
        started: config.clone(),
        current: tokio::sync::Mutex::new(config.clone()),
        policy: core.policy.clone(),
        engine: parts.engine.clone(),
        ingest: parts.ingest,
        cert: parts.cert,
        http_addr: parts.http_addr,
        own_listeners: parts.own_listeners,
        node_id: core.node_id.clone(),
    });
    tokio::spawn(crate::reload::on_hangup(
        parts.hangups,
        reloader.clone(),
        core.shutdown.clone(),
    ));
    // The web console (`/ui/`, `/` redirects there) is a client of the same API.
    let mut app = mailroom_api::app(api_state)
        .merge(mailroom_console::router())
        .layer(axum::Extension(crate::reload::api(reloader)));
    if let Some(engine) = &parts.engine
        && let Some(shaper) = engine.shaper()
    {
        // `GET /v1/queue/destinations` shows this node's sites, limits and warm-up.
        app = app.layer(axum::Extension(mailroom_api::ShapingLive(Arc::new(
            crate::shaping_view::View {
                engine: engine.clone(),
                shaper: shaper.clone(),
            },
        ))));
    }
    if let Some(status) = parts.acme {
        app = app.layer(axum::Extension(status.api()));
    }
    Ok(app)
}

/// Serves `app` on every HTTPS listener and on the HTTP listener, each until
/// shutdown; returns the HTTP server's task.
pub(super) fn serve(
    core: &Core,
    app: axum::Router,
    http: TcpListener,
    https: Vec<TcpListener>,
    acceptor: TlsAcceptor,
) -> JoinHandle<std::io::Result<()>> {
    for socket in https {
        tokio::spawn(crate::https::serve(
            socket,
            acceptor.clone(),
            app.clone(),
            core.shutdown.clone(),
        ));
    }
    let http_shutdown = core.shutdown.clone();
    tokio::spawn(async move {
        axum::serve(
            http,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await
    })
}
