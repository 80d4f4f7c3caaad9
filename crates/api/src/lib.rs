//! The HTTP API (axum): tenants, SMTP credentials, IP allowlists, sending domains,
//! message status, the event stream and webhooks, with RFC 7807 problem responses
//! that name the offending field. `app(state)` builds the router, so tests drive it without a socket. Business rules
//! live in `policy`, `ingest` and `store`; handlers only translate.

mod auth;
mod error;
mod events;
mod messages;
mod openapi;
mod query;
mod tenants;
mod webhooks;

pub use error::ApiError;

use axum::Router;
use axum::routing::{delete, get, post};
use mailroom_policy::Policy;
use mailroom_store::DynStore;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub policy: Arc<Policy>,
    /// SHA-256 (hex) of the operator token; the token itself is never kept in memory.
    pub operator_token_hash: Arc<String>,
    /// Wakes the delivery scheduler (after a retry request).
    pub delivery_wake: Arc<tokio::sync::Notify>,
    /// Sends webhook test pings; also says whether webhook URLs may be private.
    pub webhooks: mailroom_events::WebhookClient,
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
        .route(
            "/v1/messages/{id}",
            get(messages::show).delete(messages::cancel),
        )
        .route("/v1/messages/{id}/retry", post(messages::retry))
        .route("/v1/queue", get(messages::queue))
        .route("/v1/queue/summary", get(messages::summary))
        .route("/v1/events", get(events::list))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::show)
                .patch(webhooks::update)
                .delete(webhooks::remove),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
}
