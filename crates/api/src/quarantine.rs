//! Quarantine: messages held by content protection. `GET /v1/quarantine` lists them
//! (a tenant sees its own), `POST /v1/messages/{id}/release` makes the held recipients
//! deliverable (event `released`), and `DELETE /v1/messages/{id}` (in `messages.rs`)
//! deletes them from the queue (event `cancelled`).

use crate::auth::Principal;
use crate::messages::visible;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde_json::json;
use std::collections::HashMap;

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = Params::new(query, &["limit"])?.limit(100, 1000)? as i64;
    let tenant = match &p {
        Principal::Operator => None,
        Principal::Tenant(t) => Some(t.tenant_id.clone()),
    };
    let items = state.store.list_quarantined(tenant.as_ref(), limit).await?;
    Ok(Json(json!({ "messages": items })))
}

pub async fn release(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let message = visible(&state, &p, &id).await?;
    let n = state
        .store
        .release_quarantined(&message.id, mailroom_model::now_millis())
        .await?;
    state.delivery_wake.notify_one();
    tracing::info!(message_id = %message.id, recipients = n, "released from quarantine");
    Ok(Json(json!({ "id": message.id, "released": n })))
}
