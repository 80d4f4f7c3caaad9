//! The HTTP API (axum): tenants, SMTP credentials, IP allowlists, sending domains and
//! message status, with RFC 7807 problem responses that name the offending field.
//! `app(state)` builds the router, so tests drive it without a socket. Business rules
//! live in `policy`, `ingest` and `store`; handlers only translate.

mod auth;
pub mod compose;
mod domains;
mod error;
pub mod lifecycle;
mod messages;
mod openapi;
mod send;
mod suppressions;
mod tenants;

pub use error::ApiError;
pub use lifecycle::DomainServices;
pub use send::IDEMPOTENCY_WINDOW_MS;

use axum::Router;
use axum::routing::{delete, get, post};
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
    /// SHA-256 (hex) of the operator token; the token itself is never kept in memory.
    pub operator_token_hash: Arc<String>,
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
    /// Sending domains: resolver, record options, key rotation (see `lifecycle`).
    pub domains: Arc<DomainServices>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/openapi.json", get(openapi::spec))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{id}",
            get(tenants::show).patch(tenants::update),
        )
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
        .route("/v1/domains", get(tenants::all_domains))
        .route("/v1/domains/{name}", get(domains::show))
        .route("/v1/domains/{name}/verify", post(domains::verify))
        .route("/v1/domains/{name}/dkim/rotate", post(domains::rotate))
        .route(
            "/v1/domains/{name}/senders",
            axum::routing::put(domains::put_senders),
        )
        .route("/v1/messages", post(send::send))
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
            get(messages::show).delete(messages::cancel),
        )
        .route("/v1/messages/{id}/retry", post(messages::retry))
        .route("/v1/queue", get(messages::queue))
        .route("/v1/queue/summary", get(messages::summary))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
}
