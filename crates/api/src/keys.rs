//! Named API keys of a tenant (`/v1/keys`): create (the secret is shown once), list
//! with `last_used_at`, show, revoke (the next request with it is `401`) and rotate (a
//! new secret; the old one works until `previous_secret_expires_at`). A tenant key of
//! scope `full` manages its own tenant's keys, `read` may list them; the operator
//! manages every tenant's and names the tenant when creating, as for webhooks. Also
//! the operator token's rotation (`/v1/operator-token/rotate`).

use crate::auth::Principal;
use crate::error::parse_json;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mailroom_model::{ApiKeyId, KeyScope, now_millis};
use mailroom_policy::secrets;
use mailroom_store::{ApiKeyRecord, NewApiKey};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// How long the old secret keeps working after a rotation unless the request says.
pub const DEFAULT_ROTATION_GRACE_SECS: u64 = 24 * 3600;
/// The longest overlap a rotation may ask for (30 days).
pub const MAX_ROTATION_GRACE_SECS: u64 = 30 * 24 * 3600;
const MAX_NAME: usize = 64;

fn view(state: &AppState, k: &ApiKeyRecord) -> Value {
    // This process may have seen a use the store has not been told about yet.
    let last_used = match (k.last_used_at, state.policy.key_last_used(&k.id)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    json!({
        "id": k.id,
        "tenant_id": k.tenant_id,
        "name": k.name,
        "scope": k.scope,
        "created_at": k.created_at,
        "last_used_at": last_used,
        "rotated_at": k.rotated_at,
        "previous_secret_expires_at": k.previous_secret_expires_at,
    })
}

/// The key, if the caller may see it (a foreign one looks missing).
async fn visible(state: &AppState, p: &Principal, id: &str) -> Result<ApiKeyRecord, ApiError> {
    let id = ApiKeyId::parse(id).ok_or_else(|| ApiError::not_found("key"))?;
    let key = state
        .store
        .get_api_key(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    match p {
        Principal::Operator => Ok(key),
        Principal::Tenant(t) if t.tenant_id == key.tenant_id => Ok(key),
        Principal::Tenant(_) => Err(ApiError::not_found("key")),
    }
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_NAME} characters, no control characters"),
        ));
    }
    Ok(name.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scope: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: CreateKey = parse_json(&body)?;
    let tenant = p
        .acting_tenant(&state, req.tenant_id.as_deref(), "tenant_id")
        .await?;
    let name = check_name(&req.name)?;
    let scope = KeyScope::parse(&req.scope)
        .ok_or_else(|| ApiError::invalid("scope", "one of: send, read, full"))?;
    let secret = secrets::new_api_key();
    let record = state
        .store
        .create_api_key(NewApiKey {
            id: ApiKeyId::generate(),
            tenant_id: tenant,
            name,
            scope,
            secret_hash: secrets::hash_api_key(&secret),
        })
        .await
        .map_err(|e| match e {
            mailroom_store::StoreError::Conflict(_) => {
                ApiError::conflict("a key with this name").with_field("name")
            }
            e => e.into(),
        })?;
    state.policy.reload().await?;
    tracing::info!(key = %record.id, tenant_id = %record.tenant_id, scope = %record.scope, "API key created");
    let mut body = view(&state, &record);
    body["api_key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = Params::new(query, &["tenant"])?;
    let tenant = p.listed_tenant(q.get("tenant"))?;
    let keys = state.store.list_api_keys(tenant.as_ref()).await?;
    Ok(Json(json!({
        "keys": keys.iter().map(|k| view(&state, k)).collect::<Vec<_>>()
    })))
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let key = visible(&state, &p, &id).await?;
    Ok(Json(view(&state, &key)))
}

pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let key = visible(&state, &p, &id).await?;
    if !state.store.revoke_api_key(&key.id).await? {
        return Err(ApiError::not_found("key"));
    }
    // The directory is reloaded before answering: the next request is already 401.
    state.policy.reload().await?;
    tracing::info!(key = %key.id, tenant_id = %key.tenant_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    #[serde(default)]
    grace_seconds: Option<u64>,
}

pub async fn rotate(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let key = visible(&state, &p, &id).await?;
    let req: RotateKey = parse_json(&body)?;
    let grace = req.grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
    if grace > MAX_ROTATION_GRACE_SECS {
        return Err(ApiError::invalid(
            "grace_seconds",
            format!("0 to {MAX_ROTATION_GRACE_SECS} (30 days)"),
        ));
    }
    let secret = secrets::new_api_key();
    let old_expires_at = now_millis() + (grace as i64) * 1000;
    let record = state
        .store
        .rotate_api_key(&key.id, &secrets::hash_api_key(&secret), old_expires_at)
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    state.policy.reload().await?;
    tracing::info!(key = %record.id, tenant_id = %record.tenant_id, grace_seconds = grace, "API key rotated");
    let mut body = view(&state, &record);
    body["api_key"] = json!(secret);
    Ok(Json(body))
}

/// Replaces the operator token: the new one is returned once, only its digest is
/// stored, and the old one stops working before this answer is sent.
pub async fn rotate_operator_token(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let token = secrets::new_operator_token();
    let hash = secrets::hash_api_key(&token);
    state.store.set_operator_token_hash(&hash).await?;
    state.operator_token_hash.set(hash);
    tracing::info!("operator token rotated");
    Ok(Json(json!({ "token": token })))
}
