//! `DELETE /v1/domains/{name}` (operator, the owning tenant): the domain and its DKIM
//! keys are deleted with a `domain.deleted` event (the store does both in one
//! transaction); the policy directory and the signing cache are reloaded, so from the
//! reply on the domain can neither send nor sign.
//!
//! Mail already accepted from the domain is delivered as it is: it was authorised and
//! DKIM-signed when it was accepted, and an accepted message is never dropped. Its count
//! is in the reply and the event (`queued_recipients`); cancel it with
//! `DELETE /v1/messages/{id}` if it must not leave.
//!
//! `DELETE /v1/tenants/{id}[?purge=true]` (operator): the tenant and everything it
//! owns, with a `tenant.deleted` event (see `DeletionStore::delete_tenant`). Unlike a
//! domain's, a deleted tenant's waiting mail is cancelled: nobody is left to answer
//! for it (its bounces, complaints and webhooks have no owner any more).

use crate::auth::Principal;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use mailroom_model::{TenantId, now_millis, parse_domain};
use serde_json::json;
use std::collections::HashMap;

pub async fn delete_domain(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let name = parse_domain(name.trim())
        .map_err(|_| ApiError::not_found("domain"))?
        .to_string();
    let d = state
        .store
        .get_domain(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("domain"))?;
    // A tenant sees only its own domains: another's looks missing.
    match &p {
        Principal::Operator => {}
        Principal::Tenant(t) if t.tenant_id == d.tenant_id => {}
        Principal::Tenant(_) => return Err(ApiError::not_found("domain")),
    }
    let gone = state
        .store
        .delete_domain(&d.name)
        .await?
        .ok_or_else(|| ApiError::not_found("domain"))?;
    state.policy.reload().await.map_err(ApiError::storage)?;
    state
        .domains
        .signer
        .reload(state.domains.store.as_ref())
        .await
        .map_err(ApiError::storage)?;
    tracing::info!(
        domain = %gone.name,
        tenant = %gone.tenant_id,
        dkim_keys = gone.dkim_keys,
        queued_recipients = gone.queued_recipients,
        "domain deleted"
    );
    Ok(Json(json!({
        "name": gone.name,
        "tenant_id": gone.tenant_id,
        "deleted": true,
        "dkim_keys_deleted": gone.dkim_keys,
        "queued_recipients": gone.queued_recipients,
        "queued_mail": "delivered",
        "event_id": gone.event.id,
    })))
}

/// Reloads the policy directory and the signing cache after a deletion, so this node
/// forgets at once what went (other nodes follow the directory version).
async fn reload_caches(state: &AppState) -> Result<(), ApiError> {
    state.policy.reload().await.map_err(ApiError::storage)?;
    state
        .domains
        .signer
        .reload(state.domains.store.as_ref())
        .await
        .map_err(ApiError::storage)
}

pub async fn delete_tenant(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let params = Params::new(query, &["purge"])?;
    let purge = match params.raw("purge") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("purge", "true or false")),
    };
    let id = TenantId::parse(&id).ok_or_else(|| ApiError::not_found("tenant"))?;
    let gone = state
        .store
        .delete_tenant(&id, purge, now_millis())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    reload_caches(&state).await?;
    let r = &gone.removed;
    tracing::info!(
        tenant = %gone.name,
        tenant_id = %gone.tenant_id,
        purged = gone.purged,
        api_keys = r.api_keys,
        smtp_credentials = r.smtp_credentials,
        domains = r.domains,
        webhooks = r.webhooks,
        cancelled_recipients = r.cancelled_recipients,
        messages = r.messages,
        events = r.events,
        "tenant deleted"
    );
    Ok(Json(json!({
        "tenant_id": gone.tenant_id,
        "name": gone.name,
        "deleted": true,
        "purged": gone.purged,
        "removed": gone.removed,
        "queued_mail": {
            "cancelled": r.cancelled_recipients,
            "reason": "the tenant was deleted: recipients still waiting (queued, deferred, \
                quarantined) are cancelled, each with a `cancelled` event; one whose attempt \
                was in flight is recorded as delivered if that attempt succeeds",
        },
        "new_mail": "refused: its API keys get 401 and its SMTP credentials 535 from now on",
        "messages_and_events": if gone.purged {
            "purged now, bodies included (only the tenant.deleted event remains)"
        } else {
            "kept: events until events.retention_days prunes them; DELETE again with ?purge=true removes them (and the messages) at once"
        },
        "event_id": gone.event.id,
    })))
}
