//! Rows of the event stream and of webhooks: the pull query and its page, webhook
//! endpoints, and the durable per-(webhook, event) delivery records the dispatcher
//! works from. Pure data; the SQL is in `sqlite/events.rs`.

use mailroom_model::{Event, EventType, MessageId, TenantId, WebhookId};
use mailroom_secrets::Sealed;
use serde::Serialize;
use std::fmt;

/// An event with its position in the stream and what the API shows beside it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamEvent {
    /// Position in the events table; the cursor of the pull API is its decimal form.
    /// Shown on every event (pull API and webhook payloads) so a receiver can order
    /// them and spot a gap.
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
    /// The message's `Message-ID:` header, joined from its message.
    pub rfc_message_id: Option<String>,
    /// Tags and metadata given when the message was sent over HTTP, echoed on every
    /// event of the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `GET /v1/events`: events after a cursor, optionally filtered.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only events with a greater seq (0: from the beginning).
    pub after: i64,
    /// Only this tenant's events (`None`: every tenant; operator only).
    pub tenant: Option<TenantId>,
    /// Only these types (empty: every type).
    pub kinds: Vec<EventType>,
    pub recipient: Option<String>,
    pub message_id: Option<MessageId>,
    /// At most this many events (the caller bounds it).
    pub limit: usize,
}

/// One page of the stream. `next_cursor` is where the next call continues: the seq of
/// the last event returned, or — when fewer than `limit` matched — the highest seq
/// that was visible when the query started, so filtered pulls do not rescan rows.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    pub events: Vec<StreamEvent>,
    pub next_cursor: i64,
}

#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub tenant_id: TenantId,
    /// Validated (scheme, host) before it gets here.
    pub url: String,
    /// `None`: every event type.
    pub event_types: Option<Vec<EventType>>,
    /// The HMAC key (`whsec_…`), sealed by the caller under the KEK.
    pub secret: Sealed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub tenant_id: TenantId,
    pub url: String,
    pub event_types: Option<Vec<EventType>>,
    /// Shown only when the webhook is created. Sealed; open with the keyring and
    /// [`mailroom_secrets::webhook_context`].
    #[serde(skip)]
    pub secret: Sealed,
    pub enabled: bool,
    pub created_at: i64,
}

impl WebhookRecord {
    pub fn wants(&self, kind: EventType) -> bool {
        self.event_types.as_ref().is_none_or(|t| t.contains(&kind))
    }
}

/// Changes to a webhook; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    /// `Some(None)`: every event type again.
    pub event_types: Option<Option<Vec<EventType>>>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; `next_attempt_at` says when it is tried (again).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Retries were exhausted.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event's delivery to one webhook, as the deliveries API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookDelivery {
    pub webhook_id: WebhookId,
    pub event_id: mailroom_model::EventId,
    pub event_type: EventType,
    pub state: DeliveryState,
    pub attempts: i64,
    /// For pending deliveries.
    pub next_attempt_at: Option<i64>,
    /// HTTP status of the last answer, if there was one.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip)]
    pub seq: i64,
}

/// A pending delivery claimed by a webhook worker, with the event to send.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub webhook_id: WebhookId,
    pub seq: i64,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: i64,
    pub event: StreamEvent,
}

/// The result of one attempt, recorded by `record_delivery`.
#[derive(Clone, Debug)]
pub struct DeliveryUpdate {
    pub webhook_id: WebhookId,
    pub seq: i64,
    pub state: DeliveryState,
    /// Attempts made, this one included.
    pub attempts: i64,
    /// For `Pending`: when to try again.
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub at: i64,
}

/// What one fan-out step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    /// The cursor after the step.
    pub cursor: i64,
    /// Events the cursor moved past.
    pub events: u64,
    /// Delivery rows created.
    pub deliveries: u64,
}
