//! Actions on a message (retry now, cancel) and the queue summaries (by state, by
//! destination). A tenant acts only on its own messages; another tenant's id answers
//! 404, like a missing one. The message page itself is `message_page`.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use mailroom_model::MessageId;
use serde_json::json;

/// The message, if the caller may see it (a foreign message looks missing).
pub(crate) async fn visible(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<mailroom_store::MessageView, ApiError> {
    let id = MessageId::parse(id).ok_or_else(|| ApiError::not_found("message"))?;
    let message = state
        .store
        .get_message(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    match p {
        Principal::Operator => Ok(message),
        Principal::Tenant(t) if t.tenant_id == message.tenant_id => Ok(message),
        Principal::Tenant(_) => Err(ApiError::not_found("message")),
    }
}

/// Makes every undelivered recipient due now.
pub async fn retry(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let message = visible(&state, &p, &id).await?;
    let n = state
        .store
        .retry_now(&message.id, mailroom_model::now_millis())
        .await?;
    state.delivery_wake.notify_one();
    tracing::info!(message_id = %message.id, recipients = n, "retry requested");
    Ok(Json(json!({ "id": message.id, "retried": n })))
}

/// Cancels every undelivered recipient (event `cancelled`).
pub async fn cancel(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let message = visible(&state, &p, &id).await?;
    let n = state
        .store
        .cancel(&message.id, mailroom_model::now_millis())
        .await?;
    tracing::info!(message_id = %message.id, recipients = n, "cancelled");
    Ok(Json(json!({ "id": message.id, "cancelled": n })))
}

/// Recipient counts by state and the busiest destinations.
pub async fn queue(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let q = state.store.queue_summary().await?;
    let by_state: serde_json::Map<String, serde_json::Value> =
        q.by_state.into_iter().map(|(s, n)| (s, json!(n))).collect();
    let by_domain: Vec<serde_json::Value> = q
        .by_domain
        .into_iter()
        .map(|(d, n)| json!({ "domain": d, "pending": n }))
        .collect();
    Ok(Json(
        json!({ "by_state": by_state, "by_domain": by_domain }),
    ))
}

pub async fn summary(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let counts = state.store.count_recipients_by_state().await?;
    let by_state: serde_json::Map<String, serde_json::Value> =
        counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    // The console's queue page: the busiest destinations with their oldest waiting
    // recipient and latest reply.
    let destinations: Vec<serde_json::Value> = state
        .store
        .queue_destinations(100)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "domain": d.domain,
                "count": d.count,
                "oldest_at": crate::stats::rfc3339(d.oldest_at),
                "last_error": d.last_error,
            })
        })
        .collect();
    Ok(Json(
        json!({ "recipients_by_state": by_state, "destinations": destinations }),
    ))
}
