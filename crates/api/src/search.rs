//! `GET /v1/messages`: message search by recipient, sender, subject, `Message-ID`,
//! tag, recipient state and time range, newest first, cursor-paged. A tenant searches
//! only its own messages; the operator searches all or one tenant's (`tenant=`). Every
//! filter but the subject substring is an indexed lookup (see the store's migration
//! 0016/0005); the time range and the cursor are ranges over the time-ordered ids.

use crate::auth::Principal;
use crate::query::Params;
use crate::stats::{parse_time, rfc3339};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use mailroom_model::{MessageId, RecipientState};
use mailroom_store::{MessageSearch, MessageSummary};
use serde_json::{Value, json};
use std::collections::HashMap;

const KNOWN: &[&str] = &[
    "recipient",
    "sender",
    "subject",
    "message_id",
    "tag",
    "state",
    "from",
    "to",
    "limit",
    "cursor",
    "tenant",
];

/// Longest accepted filter value (addresses, subjects, tags).
const MAX_FILTER: usize = 998;

fn item(m: &MessageSummary) -> Value {
    let first = m.recipients.first().map(|(_, s)| s.as_str());
    let state = match first {
        Some(s) if m.recipients.iter().all(|(_, x)| x == s) => s,
        Some(_) => "mixed",
        None => "none",
    };
    json!({
        "id": m.id,
        "tenant": m.tenant_id,
        "from": m.mail_from,
        "to": m.recipients.iter().map(|(a, _)| a).collect::<Vec<_>>(),
        "recipients": m.recipients.iter()
            .map(|(a, s)| json!({ "address": a, "state": s }))
            .collect::<Vec<_>>(),
        "subject": m.subject,
        "state": state,
        "created_at": rfc3339(m.received_at),
        "size": m.size,
        "tags": m.tags,
    })
}

fn filter(q: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match q.get(name) {
        Some(v) if v.len() > MAX_FILTER => Err(ApiError::invalid(
            name,
            format!("at most {MAX_FILTER} bytes"),
        )),
        v => Ok(v.map(str::to_string)),
    }
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = Params::new(query, KNOWN)?;
    let limit = q.limit(50, 200)?;
    let tenant = match (&p, q.get("tenant")) {
        (Principal::Operator, None) => None,
        (p, named) => Some(p.acting_tenant(&state, named, "tenant").await?),
    };
    let state_filter = match q.raw("state") {
        None => None,
        Some(s) => Some(
            RecipientState::parse(s)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "state",
                        "one of queued, deferred, delivered, bounced, expired, cancelled, suppressed, quarantined",
                    )
                })?
                .as_str()
                .to_string(),
        ),
    };
    let before = match q.get("cursor") {
        None => None,
        Some(c) => Some(
            MessageId::parse(c)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor from next_cursor"))?,
        ),
    };
    let from = q.get("from").map(|v| parse_time("from", v)).transpose()?;
    let to = q.get("to").map(|v| parse_time("to", v)).transpose()?;
    let search = MessageSearch {
        tenant,
        recipient: filter(&q, "recipient")?,
        sender: filter(&q, "sender")?,
        subject: filter(&q, "subject")?,
        rfc_message_id: filter(&q, "message_id")?,
        tag: filter(&q, "tag")?,
        state: state_filter,
        from,
        to,
        before,
        limit: limit as i64 + 1,
    };
    let mut found = state.store.search_messages(&search).await?;
    let more = found.len() > limit;
    found.truncate(limit);
    let next = more.then(|| found.last().map(|m| m.id.clone())).flatten();
    Ok(Json(json!({
        "items": found.iter().map(item).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
