//! `GET /v1/messages/{id}`: the message page's data. The store's view (envelope, each
//! recipient's state and timeline) plus what the console shows beside it: subject,
//! tags and metadata, the header fields while the body is still stored, the delivery
//! status reports sent about the message and its message-level events (an open or
//! click whose recipient is not known). A tenant sees only its own messages.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// At most this many header fields are returned (a message may carry thousands).
const MAX_HEADERS: usize = 200;
/// A header value longer than this is cut (and says so).
const MAX_VALUE: usize = 4096;

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let message = crate::messages::visible(&state, &p, &id).await?;
    let detail = state
        .store
        .message_detail(&message.id)
        .await?
        .unwrap_or_default();
    // The body is kept while the message is in the queue (and for a while after when a
    // report may still be owed); afterwards only the envelope and the events remain.
    let body = state
        .store
        .load_body(&message.id)
        .await?
        .filter(|b| !b.is_empty());
    let mut out = match json!(message) {
        Value::Object(o) => o,
        _ => serde_json::Map::new(),
    };
    let meta: Value = detail
        .meta
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(Value::Null);
    let tags = meta.get("tags").cloned().unwrap_or_else(|| json!([]));
    let metadata = meta.get("metadata").cloned().unwrap_or(Value::Null);
    let o = &mut out;
    o.insert("subject".into(), json!(detail.subject));
    o.insert("tags".into(), tags);
    o.insert("metadata".into(), metadata);
    o.insert(
        "headers".into(),
        match &body {
            Some(b) => json!(
                header_fields(b)
                    .into_iter()
                    .map(|(name, value)| json!({ "name": name, "value": value }))
                    .collect::<Vec<_>>()
            ),
            None => Value::Null,
        },
    );
    o.insert(
        "reports".into(),
        json!(
            detail
                .reports
                .iter()
                .map(|r| json!({
                    "id": r.id,
                    "received_at": r.received_at,
                    "to": r.to,
                    "state": r.state,
                }))
                .collect::<Vec<_>>()
        ),
    );
    o.insert("events".into(), json!(detail.message_events));
    Ok(Json(Value::Object(out)))
}

/// The header fields of a stored message, unfolded, in order: (name, value). Stops
/// at the blank line; a line that is neither a field nor a continuation is skipped.
pub(crate) fn header_fields(body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for raw in body.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = out.last_mut()
                && v.len() < MAX_VALUE
            {
                v.push(' ');
                v.push_str(text.trim());
            }
            continue;
        }
        if out.len() == MAX_HEADERS {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim_end();
            if !name.is_empty() && !name.contains(' ') {
                out.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    for (_, v) in &mut out {
        if v.len() > MAX_VALUE {
            let mut cut = MAX_VALUE;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
            v.push_str(" [cut]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::header_fields;

    #[test]
    fn fields_are_unfolded_and_stop_at_the_body() {
        let body = b"From: a@x.test\r\nSubject: one\r\n two\r\n\tthree\r\nDKIM-Signature: v=1;\r\n b=abc\r\nbad line\r\n\r\nBody: not a header\r\n";
        let f = header_fields(body);
        assert_eq!(
            f,
            vec![
                ("From".into(), "a@x.test".into()),
                ("Subject".into(), "one two three".into()),
                ("DKIM-Signature".into(), "v=1; b=abc".into()),
            ]
        );
    }

    #[test]
    fn bare_lf_long_values_and_many_fields_are_bounded() {
        let long = "x".repeat(10_000);
        let mut body = format!("X-Long: {long}\nA: 1\n").into_bytes();
        for i in 0..300 {
            body.extend_from_slice(format!("X-{i}: v\n").as_bytes());
        }
        let f = header_fields(&body);
        assert_eq!(f.len(), 200);
        assert!(f[0].1.ends_with(" [cut]") && f[0].1.len() < 4200);
        assert_eq!(f[1], ("A".into(), "1".into()));
        assert!(header_fields(b"").is_empty());
    }
}
