//! The HTTP API (axum): tenants, SMTP credentials, IP allowlists, sending domains,
//! message status, the event stream and webhooks, the nodes sharing the store, ACME HTTP-01 challenge answers, with RFC 7807 problem responses
//! that name the offending field; console sessions (cookie + CSRF), stats from the event counters, message search. `app(state)` builds the router, so tests drive it without a socket. Business rules
//! live in `policy`, `ingest` and `store`; handlers only translate. The API keeps the
//! whole `Store` (`DynStore`): between them its routes use every role.

mod acme;
mod admin;
mod auth;
mod canonical;
pub mod compose;
mod contract;
mod deletion;
mod destinations;
mod domains;
mod erasure;
mod error;
mod events;
mod health;
mod keys;
mod message_page;
mod messages;
mod nodes;
mod observe;
mod openapi;
mod provider;
mod quarantine;
mod query;
mod refresh;
mod reports;
mod search;
mod send;
mod session;
mod signin_limit;
mod signing;
mod stats;
mod suppressions;
mod tenants;
mod throttles;
mod tracking;
mod webhooks;

pub use acme::CertificateStatus;
pub use admin::{ReloadFuture, Reloader};
pub use auth::{OperatorToken, SEND_ROUTES, scope_allows};
pub use destinations::{LimitsLive, ShapingLive, ShapingView, SiteLive, WarmupLive};
pub use error::ApiError;
pub use keys::{DEFAULT_ROTATION_GRACE_SECS, MAX_ROTATION_GRACE_SECS};
pub use mailroom_domains::DomainServices;
pub use nodes::{ALIVE_HEARTBEATS, DEFAULT_HEARTBEAT_MS, node_is_alive};
pub use send::IDEMPOTENCY_WINDOW_MS;
pub use session::{ConsoleSettings, DEFAULT_SESSION_TTL_SECS, SESSION_COOKIE};
pub use tracking::TrackingState;

// Keeping this node's caches in step with the other nodes'.
pub use refresh::{OperatorTokenCache, RefreshIntervals, refresher, spawn_refreshers};

use axum::Router;
use axum::routing::{delete, get, post, put};
use mailroom_ingest::Ingest;
use mailroom_model::TenantId;
use mailroom_policy::Policy;
use mailroom_store::DynStore;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub policy: Arc<Policy>,
    /// SHA-256 (hex) of the operator token, replaced when it is rotated; the token
    /// itself is never kept in memory.
    pub operator_token_hash: Arc<OperatorToken>,
    /// Wakes the delivery scheduler (after a retry request).
    pub delivery_wake: Arc<tokio::sync::Notify>,
    /// The submission pipeline shared with SMTP.
    pub ingest: Arc<Ingest>,
    /// Used in generated `Message-ID:`s.
    pub hostname: Arc<String>,
    /// Recipients (to + cc + bcc) per HTTP message, before the tenant's own limit.
    pub max_api_recipients: usize,
    /// Idempotency keys whose request is being processed, so that two concurrent
    /// requests with one key cannot both create a message.
    pub inflight_keys: Arc<Mutex<HashSet<(TenantId, String)>>>,
    /// Renders the Prometheus text exposition of every recorded metric (`None`: no
    /// recorder installed, `/metrics` answers 503).
    pub metrics: Option<MetricsRenderer>,
    /// Sends webhook test pings; also says whether webhook URLs may be private.
    pub webhooks: mailroom_events::WebhookClient,
    /// Sending domains: resolver, record options, key rotation (see the `mailroom-domains` crate).
    pub domains: Arc<DomainServices>,
    /// Seals webhook secrets before they are stored and opens them for test pings.
    pub keyring: Arc<mailroom_secrets::Keyring>,
    /// Checks tracking tokens for the public `/t/...` endpoints (`None`: tracking is
    /// off and they answer 404).
    pub tracking: Option<TrackingState>,
    /// Console sessions: lifetime, cookie flags, the failed sign-in limiter.
    pub console: ConsoleSettings,
}

pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(observe::readyz))
        .route("/metrics", get(observe::metrics))
        .route("/.well-known/acme-challenge/{token}", get(acme::challenge))
        .route("/v1/openapi.json", get(openapi::spec))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{id}",
            get(tenants::show)
                .patch(tenants::update)
                .delete(deletion::delete_tenant),
        )
        .route("/v1/tenants/{id}/health", get(health::show))
        .route(
            "/v1/tenants/{id}/smtp-credentials",
            post(tenants::create_credential).get(tenants::list_credentials),
        )
        .route(
            "/v1/tenants/{id}/smtp-credentials/{cred}",
            delete(tenants::revoke_credential),
        )
        .route(
            "/v1/tenants/{id}/allowed-ips",
            get(tenants::get_allowed_ips).put(tenants::put_allowed_ips),
        )
        .route(
            "/v1/tenants/{id}/domains",
            post(tenants::add_domain).get(tenants::list_domains),
        )
        .route(
            "/v1/tenants/{id}/signing",
            get(signing::get_tenant).put(signing::put_tenant),
        )
        .route(
            "/v1/domains/{name}/signing",
            get(signing::get_domain).put(signing::put_domain),
        )
        .route("/v1/domains", get(tenants::all_domains))
        .route(
            "/v1/domains/{name}",
            get(domains::show).delete(deletion::delete_domain),
        )
        .route("/v1/domains/{name}/verify", post(domains::verify))
        .route("/v1/domains/{name}/reports", get(reports::show))
        .route("/v1/domains/{name}/dkim/rotate", post(domains::rotate))
        .route(
            "/v1/domains/{name}/senders",
            axum::routing::put(domains::put_senders),
        )
        .route("/v1/messages", post(send::send).get(search::list))
        .route(
            "/v1/session",
            post(session::create)
                .get(session::show)
                .delete(session::remove),
        )
        .route("/v1/stats", get(stats::show))
        .route(
            "/v1/suppressions",
            get(suppressions::list).post(suppressions::add),
        )
        .route(
            "/v1/suppressions/{address}",
            get(suppressions::show).delete(suppressions::remove),
        )
        .route(
            "/v1/messages/{id}",
            get(message_page::show).delete(messages::cancel),
        )
        .route("/v1/messages/{id}/retry", post(messages::retry))
        .route("/v1/messages/{id}/release", post(quarantine::release))
        .route("/v1/quarantine", get(quarantine::list))
        .route("/t/o/{token}", get(tracking::open))
        .route("/t/c/{token}", get(tracking::click))
        .route(
            "/t/u/{token}",
            get(tracking::unsubscribe_page).post(tracking::unsubscribe),
        )
        .route("/v1/queue", get(messages::queue))
        .route("/v1/queue/summary", get(messages::summary))
        .route("/v1/queue/destinations", get(destinations::list))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/admin/reload", post(admin::reload))
        .route(
            "/v1/throttles",
            get(throttles::list).delete(throttles::clear),
        )
        .route("/v1/tenants/{id}/egress-pool", put(throttles::set_pool))
        .route("/v1/events", get(events::list))
        .route("/v1/erasure", post(erasure::erase))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::show)
                .patch(webhooks::update)
                .delete(webhooks::remove),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{id}", get(keys::show).delete(keys::revoke))
        .route("/v1/keys/{id}/rotate", post(keys::rotate))
        .route(
            "/v1/operator-token/rotate",
            post(keys::rotate_operator_token),
        )
        // Undeclared or repeated query parameters: a 422 problem (see `contract`).
        .route_layer(axum::middleware::from_fn(contract::query_rules))
        .fallback(|| async { ApiError::not_found("route").with_field("path") })
        // Every error the framework itself answers becomes a problem too.
        .layer(axum::middleware::map_response(contract::problem_bodies))
        .with_state(state)
}
