//! Traffic shaping as the operator sees and steers it through the store:
//! `GET /v1/throttles` (throttles and suspensions in force, with the rule, the
//! matched reply and the expiry), `DELETE /v1/throttles[?site=]` (clear them), and
//! `PUT /v1/tenants/{id}/egress-pool` (the egress pool a tenant sends through; the
//! pools themselves are configuration, `[[egress.pools]]`).

use crate::auth::Principal;
use crate::error::parse_json;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use mailroom_model::{TenantId, now_millis};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

type RawQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let throttles = state.store.active_throttles(now_millis()).await?;
    Ok(Json(json!({ "throttles": throttles })))
}

pub async fn clear(
    State(state): State<AppState>,
    p: Principal,
    query: RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let q = Params::new(query, &["site"])?;
    // `?site=` is refused, not read as "every site".
    let site = q.raw("site").map(str::trim);
    if site.is_some_and(|s| s.is_empty() || s.len() > 1000) {
        return Err(ApiError::invalid(
            "site",
            "a site key, e.g. provider:google",
        ));
    }
    let cleared = state.store.clear_throttles(site, now_millis()).await?;
    tracing::info!(
        site = site.unwrap_or("*"),
        cleared,
        "throttles cleared by the operator"
    );
    Ok(Json(json!({ "cleared": cleared })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolBody {
    pool: Option<String>,
}

pub async fn set_pool(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let id = TenantId::parse(&id).ok_or_else(|| ApiError::not_found("tenant"))?;
    let raw: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    if !raw.contains_key("pool") {
        return Err(ApiError::invalid(
            "pool",
            "required: a pool name, or null for the default pool",
        ));
    }
    let b: PoolBody = parse_json(&body)?;
    if let Some(name) = &b.pool
        && (name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
    {
        return Err(ApiError::invalid(
            "pool",
            "a pool name: 1 to 64 letters, digits, '.', '_' or '-' (null: the default pool)",
        ));
    }
    if !state.store.set_tenant_pool(&id, b.pool.as_deref()).await? {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(Json(json!({ "tenant_id": id.to_string(), "pool": b.pool })))
}
