//! Webhook endpoints of a tenant: create (the secret is shown once), list, show,
//! change, remove, send a test `ping`, and list deliveries. A tenant key manages its
//! own webhooks (another tenant's id answers 404, like a missing one); the operator
//! manages all and names the tenant when creating. URLs are checked against the SSRF
//! rules (`mailroom_events::ssrf`) when set; the dispatcher checks again at send time.

use crate::auth::Principal;
use crate::error::parse_json;
use crate::events::parse_types;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mailroom_events::{payload, signature, ssrf};
use mailroom_model::{EventType, WebhookId};
use mailroom_secrets::webhook_context;
use mailroom_store::{DeliveryState, NewWebhook, WebhookPatch, WebhookRecord};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use std::collections::HashMap;

const MAX_URL: usize = 2048;

/// The webhook, if the caller may manage it (a foreign one looks missing).
async fn visible(state: &AppState, p: &Principal, id: &str) -> Result<WebhookRecord, ApiError> {
    let id = WebhookId::parse(id).ok_or_else(|| ApiError::not_found("webhook"))?;
    let webhook = state
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    match p {
        Principal::Operator => Ok(webhook),
        Principal::Tenant(t) if t.tenant_id == webhook.tenant_id => Ok(webhook),
        Principal::Tenant(_) => Err(ApiError::not_found("webhook")),
    }
}

/// Form and SSRF checks on a webhook URL; returns it normalised.
async fn checked_url(state: &AppState, text: &str) -> Result<String, ApiError> {
    if text.len() > MAX_URL {
        return Err(ApiError::invalid(
            "url",
            format!("at most {MAX_URL} characters"),
        ));
    }
    let url = ssrf::parse(text).map_err(|e| ApiError::invalid("url", e.to_string()))?;
    state
        .webhooks
        .host_allowed(&url)
        .map_err(|e| ApiError::invalid("url", e.to_string()))?;
    ssrf::check(&url, state.webhooks.allow_private())
        .await
        .map_err(|e| ApiError::invalid("url", e.to_string()))?;
    Ok(url.to_string())
}

fn event_types(list: Option<Vec<String>>) -> Result<Option<Vec<EventType>>, ApiError> {
    let Some(list) = list else { return Ok(None) };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "event_types",
            "list at least one event type, or leave it out for all",
        ));
    }
    let mut kinds = Vec::new();
    for (i, t) in list.iter().enumerate() {
        for k in parse_types(t, &format!("event_types[{i}]"))? {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    Ok(Some(kinds))
}

fn view(w: &WebhookRecord) -> serde_json::Value {
    json!({
        "id": w.id,
        "tenant_id": w.tenant_id,
        "url": w.url,
        "event_types": w.event_types,
        "enabled": w.enabled,
        "created_at": w.created_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    tenant_id: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: CreateWebhook = parse_json(&body)?;
    let tenant = p
        .acting_tenant(&state, req.tenant_id.as_deref(), "tenant_id")
        .await?;
    let url = checked_url(&state, &req.url).await?;
    let kinds = event_types(req.event_types)?;
    let secret = signature::new_secret();
    let id = WebhookId::generate();
    // Stored sealed under the KEK; shown in clear once, in this answer.
    let sealed = state
        .keyring
        .seal_str(&webhook_context(id.as_str()), &secret)
        .map_err(|e| {
            tracing::error!(error = %e, "sealing a webhook secret failed");
            ApiError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "secret sealing failed",
            )
        })?;
    let record = state
        .store
        .create_webhook(NewWebhook {
            id,
            tenant_id: tenant,
            url,
            event_types: kinds,
            secret: sealed,
        })
        .await?;
    tracing::info!(webhook = %record.id, tenant_id = %record.tenant_id, url = %record.url, "webhook created");
    let mut body = view(&record);
    body["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = Params::new(query, &["tenant"])?;
    let tenant = p.listed_tenant(q.get("tenant"))?;
    let all = state.store.list_webhooks(tenant.as_ref()).await?;
    Ok(Json(
        json!({ "webhooks": all.iter().map(view).collect::<Vec<_>>() }),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(view(&visible(&state, &p, &id).await?)))
}

/// `Some(None)` for an explicit `null`, `None` when the field is left out.
fn explicit<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWebhook {
    #[serde(default)]
    url: Option<String>,
    /// `null`: every event type.
    #[serde(default, deserialize_with = "explicit")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default)]
    enabled: Option<bool>,
}

pub async fn update(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let webhook = visible(&state, &p, &id).await?;
    let req: UpdateWebhook = parse_json(&body)?;
    let url = match req.url {
        Some(u) => Some(checked_url(&state, &u).await?),
        None => None,
    };
    let event_types = match req.event_types {
        None => None,
        Some(list) => Some(event_types(list)?),
    };
    let updated = state
        .store
        .update_webhook(
            &webhook.id,
            WebhookPatch {
                url,
                event_types,
                enabled: req.enabled,
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(view(&updated)))
}

pub async fn remove(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let webhook = visible(&state, &p, &id).await?;
    if !state.store.delete_webhook(&webhook.id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    tracing::info!(webhook = %webhook.id, "webhook removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a `ping` event now and reports what the receiver answered.
pub async fn test(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let webhook = visible(&state, &p, &id).await?;
    let (event_id, body) = payload::ping(&webhook.id, &webhook.tenant_id);
    let secret = state
        .keyring
        .open_str(&webhook_context(webhook.id.as_str()), &webhook.secret)
        .map_err(|e| {
            tracing::error!(webhook = %webhook.id, error = %e, "webhook secret does not open with the configured key");
            ApiError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the webhook secret cannot be read",
            )
        })?;
    let result = state
        .webhooks
        .post(&webhook.url, &secret, event_id.as_str(), body)
        .await;
    Ok(Json(json!({
        "event_id": event_id,
        "delivered": result.delivered(),
        "status": result.status,
        "error": result.error,
    })))
}

pub async fn deliveries(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let webhook = visible(&state, &p, &id).await?;
    let q = Params::new(query, &["state", "limit"])?;
    let filter = q
        .raw("state")
        .map(|s| {
            DeliveryState::parse(s)
                .ok_or_else(|| ApiError::invalid("state", "pending, delivered or failed"))
        })
        .transpose()?;
    let limit = q.limit(100, 1000)?;
    let rows = state
        .store
        .list_deliveries(&webhook.id, filter, limit)
        .await?;
    Ok(Json(json!({ "deliveries": rows })))
}
