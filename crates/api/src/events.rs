//! `GET /v1/events`: the event stream by cursor. A tenant key sees its own tenant's
//! events only; the operator sees all (optionally one tenant's). The cursor is the
//! decimal form of the events table's seq, treated as opaque by clients; the store
//! guarantees a cursor never skips or repeats an event.

use crate::auth::Principal;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use mailroom_model::{EventType, MessageId};
use mailroom_store::EventQuery;
use serde_json::json;
use std::collections::HashMap;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Comma-separated event type names.
pub fn parse_types(text: &str, field: &str) -> Result<Vec<EventType>, ApiError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            EventType::parse(t).ok_or_else(|| {
                ApiError::invalid(
                    field,
                    format!(
                        "unknown event type {t:?}; one of {}",
                        EventType::ALL.map(|k| k.as_str()).join(", ")
                    ),
                )
            })
        })
        .collect()
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = Params::new(
        query,
        &[
            "after",
            "type",
            "recipient",
            "message_id",
            "limit",
            "tenant",
        ],
    )?;
    let after = match q.get("after") {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::invalid("after", "not a cursor returned by this API"))?,
    };
    let kinds = q.get("type").map(|t| parse_types(t, "type")).transpose()?;
    let message_id = q
        .get("message_id")
        .map(|m| {
            MessageId::parse(m).ok_or_else(|| ApiError::invalid("message_id", "not a message id"))
        })
        .transpose()?;
    let tenant = p.listed_tenant(q.get("tenant"))?;
    let page = state
        .store
        .list_events(&EventQuery {
            after,
            tenant,
            kinds: kinds.unwrap_or_default(),
            recipient: q.get("recipient").map(str::to_string),
            message_id,
            limit: q.limit(DEFAULT_LIMIT, MAX_LIMIT)?,
        })
        .await?;
    Ok(Json(json!({
        "events": page.events,
        "next_cursor": page.next_cursor.to_string(),
    })))
}
