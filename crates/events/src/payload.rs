//! The JSON a webhook receives: `{"events": [event, …]}`, each event exactly as the
//! pull API (`GET /v1/events`) shows it, plus the synthetic `ping` of the test
//! endpoint (not in the stream: its `seq` is null).

use mailroom_model::{EventId, TenantId, WebhookId, now_millis};
use mailroom_store::StreamEvent;
use serde_json::json;

/// The body for one or more stored events.
pub fn body(events: &[&StreamEvent]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "events": events })).unwrap_or_default()
}

/// A `ping` event for `POST /v1/webhooks/{id}/test`; never stored. Returns the
/// event id and the body.
pub fn ping(webhook: &WebhookId, tenant: &TenantId) -> (EventId, Vec<u8>) {
    let id = EventId::generate();
    let event = json!({
        "id": id,
        "seq": null,
        "type": "ping",
        "at": now_millis(),
        "message_id": null,
        "rfc_message_id": null,
        "tenant_id": tenant,
        "recipient": null,
        "detail": { "webhook_id": webhook },
    });
    let body = serde_json::to_vec(&json!({ "events": [event] })).unwrap_or_default();
    (id, body)
}
