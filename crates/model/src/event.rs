//! Events: the one record of everything that happens to a message or recipient. The
//! status API, webhooks, logs and metrics all read these, so they never disagree.

use crate::{EventId, MessageId, TenantId};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Accepted,
    Rejected,
    Suppressed,
    Deferred,
    Delivered,
    Bounced,
    Expired,
    Cancelled,
    /// Tenant-level, without a message: a verified domain's records are no longer
    /// found in DNS (the domain is shown as degraded).
    #[serde(rename = "domain.dns_error")]
    DomainDnsError,
    /// The open pixel was fetched (message-level; the recipient only when the message
    /// had one).
    Opened,
    /// A tracked link was followed.
    Clicked,
    /// The recipient used the one-click unsubscribe link (RFC 8058) and is suppressed.
    Unsubscribed,
    /// Content protection held the recipient in quarantine.
    Filtered,
    /// A quarantined recipient was released for delivery.
    Released,
    /// A feedback-loop (ARF) complaint about a delivered message; the recipient is
    /// suppressed.
    Complained,
    /// Tenant-level: the rolling bounce or complaint rate crossed the warning threshold.
    #[serde(rename = "sender_health.warning")]
    SenderHealthWarning,
    /// Tenant-level: the rolling rate crossed the pause threshold; the tenant is paused
    /// until an operator resumes it.
    #[serde(rename = "sender_health.paused")]
    SenderHealthPaused,
    /// Tenant-level: a sending domain and its DKIM keys were deleted (`DELETE
    /// /v1/domains/{name}`).
    #[serde(rename = "domain.deleted")]
    DomainDeleted,
    /// Traffic shaping acted on its own (a response rule throttled or suspended a
    /// site, the concurrency window fell, warm-up overflowed or capped): tenant-level
    /// when a tenant's traffic was concerned, else operator-only (no tenant).
    #[serde(rename = "shaping.action")]
    ShapingAction,
    /// Tenant-level: a tenant was deleted (`DELETE /v1/tenants/{id}`) with its keys,
    /// credentials, domains, suppressions and webhooks; `detail` has the counts.
    #[serde(rename = "tenant.deleted")]
    TenantDeleted,
    /// An address was erased (`POST /v1/erasure`): `detail` names it only by its
    /// SHA-256 and has the counts per kind.
    #[serde(rename = "address.erased")]
    AddressErased,
}

impl EventType {
    pub const ALL: [EventType; 21] = [
        Self::Accepted,
        Self::Rejected,
        Self::Suppressed,
        Self::Deferred,
        Self::Delivered,
        Self::Bounced,
        Self::Expired,
        Self::Cancelled,
        Self::DomainDnsError,
        Self::Opened,
        Self::Clicked,
        Self::Unsubscribed,
        Self::Filtered,
        Self::Released,
        Self::Complained,
        Self::SenderHealthWarning,
        Self::SenderHealthPaused,
        Self::DomainDeleted,
        Self::ShapingAction,
        Self::TenantDeleted,
        Self::AddressErased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Suppressed => "suppressed",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::DomainDnsError => "domain.dns_error",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
            Self::Unsubscribed => "unsubscribed",
            Self::Filtered => "filtered",
            Self::Released => "released",
            Self::Complained => "complained",
            Self::SenderHealthWarning => "sender_health.warning",
            Self::SenderHealthPaused => "sender_health.paused",
            Self::DomainDeleted => "domain.deleted",
            Self::ShapingAction => "shaping.action",
            Self::TenantDeleted => "tenant.deleted",
            Self::AddressErased => "address.erased",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event as stored and as shown by the API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub message_id: Option<MessageId>,
    pub tenant_id: Option<TenantId>,
    pub recipient: Option<String>,
    /// Type-specific details (SMTP reply, remote host, client address, ...).
    pub detail: serde_json::Value,
}
