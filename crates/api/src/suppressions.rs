//! The tenant's suppression list: `GET/POST /v1/suppressions`,
//! `GET/DELETE /v1/suppressions/{address}`. Addresses compare case-insensitively on
//! the whole address. A tenant key sees its own list; the operator names the tenant
//! with `?tenant=<id>` (or `tenant_id` in the body).

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
use mailroom_model::{Address, now_millis};
use mailroom_store::Suppression;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

const REASONS: [&str; 4] = ["manual", "bounce", "complaint", "unsubscribe"];

type RawQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `?tenant=` (the operator's choice of tenant), the one query parameter every
/// suppression route takes.
fn tenant_param(query: RawQuery, extra: &[&str]) -> Result<Params, ApiError> {
    let mut known = vec!["tenant"];
    known.extend_from_slice(extra);
    Params::new(query, &known)
}

fn normalise(field: &str, address: &str) -> Result<String, ApiError> {
    Address::parse(address.trim())
        .map(|a| a.to_string().to_lowercase())
        .map_err(|e| ApiError::invalid(field, format!("not a valid address: {e}")))
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let q = tenant_param(query, &["after", "limit"])?;
    let tenant = p.acting_tenant(&state, q.get("tenant"), "tenant").await?;
    let limit = q.limit(100, 1000)?;
    let after = q.get("after").map(|a| a.trim().to_lowercase());
    if after.as_ref().is_some_and(|a| a.len() > 254) {
        return Err(ApiError::invalid(
            "after",
            "not a next_after returned by this API (at most 254 characters)",
        ));
    }
    let items = state
        .store
        .list_suppressions(&tenant, after.as_deref(), limit as i64)
        .await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|s| s.address.clone()))
        .flatten();
    Ok(Json(json!({ "suppressions": items, "next_after": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddSuppression {
    address: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
}

pub async fn add(
    State(state): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: AddSuppression = parse_json(&body)?;
    let tenant = p
        .acting_tenant(&state, req.tenant_id.as_deref(), "tenant_id")
        .await?;
    let address = normalise("address", &req.address)?;
    let reason = req.reason.unwrap_or_else(|| "manual".into());
    if !REASONS.contains(&reason.as_str()) {
        return Err(ApiError::invalid(
            "reason",
            format!("one of {}", REASONS.join(", ")),
        ));
    }
    if req.note.as_ref().is_some_and(|n| n.len() > 500) {
        return Err(ApiError::invalid("note", "at most 500 characters"));
    }
    let (entry, created) = state
        .store
        .add_suppression(Suppression {
            tenant_id: tenant.clone(),
            address,
            reason,
            detail: json!({ "note": req.note, "added_by": match p { Principal::Operator => "operator", Principal::Tenant(_) => "tenant" } }),
            message_id: None,
            created_at: now_millis(),
        })
        .await?;
    tracing::info!(tenant_id = %tenant, address = %entry.address, reason = %entry.reason, "suppression added");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(address): Path<String>,
    query: RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let q = tenant_param(query, &[])?;
    let tenant = p.acting_tenant(&state, q.get("tenant"), "tenant").await?;
    let address = normalise("address", &address)?;
    let entry = state
        .store
        .get_suppression(&tenant, &address)
        .await?
        .ok_or_else(|| ApiError::not_found("suppression"))?;
    Ok(Json(entry))
}

pub async fn remove(
    State(state): State<AppState>,
    p: Principal,
    Path(address): Path<String>,
    query: RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let q = tenant_param(query, &[])?;
    let tenant = p.acting_tenant(&state, q.get("tenant"), "tenant").await?;
    let address = normalise("address", &address)?;
    if !state.store.remove_suppression(&tenant, &address).await? {
        return Err(ApiError::not_found("suppression"));
    }
    tracing::info!(tenant_id = %tenant, address = %address, "suppression removed");
    Ok(StatusCode::NO_CONTENT)
}
