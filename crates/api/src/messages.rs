//! Message status: metadata, each recipient's state and its event timeline. A tenant
//! sees only its own messages; another tenant's id answers 404, like a missing one.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use mailroom_model::MessageId;
use serde_json::json;

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("message"))?;
    let message = state
        .store
        .get_message(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    match &p {
        Principal::Operator => {}
        Principal::Tenant(t) if t.tenant_id == message.tenant_id => {}
        Principal::Tenant(_) => return Err(ApiError::not_found("message")),
    }
    Ok(Json(message))
}

pub async fn summary(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let counts = state.store.count_recipients_by_state().await?;
    let by_state: serde_json::Map<String, serde_json::Value> =
        counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(Json(json!({ "recipients_by_state": by_state })))
}
