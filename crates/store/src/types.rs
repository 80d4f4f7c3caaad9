//! Rows going into and coming out of the store.

use mailroom_model::{CredentialId, Event, MessageId, RecipientState, TenantId};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    /// Envelope sender; empty for the null sender.
    pub mail_from: String,
    /// The `Message-ID:` header value, if known.
    pub rfc_message_id: Option<String>,
    pub received_at: i64,
    /// "smtp" or "api".
    pub source: &'static str,
    pub client_ip: Option<String>,
    pub dsn_ret: Option<String>,
    pub dsn_envid: Option<String>,
    pub smtputf8: bool,
    /// The complete message as it will be delivered (trace headers included).
    pub body: Vec<u8>,
    pub recipients: Vec<NewRecipient>,
    /// Detail recorded on each `accepted` event.
    pub accepted_detail: serde_json::Value,
    /// When set, the recipients are stored already claimed until this time, because
    /// they are handed straight to delivery (see `Handoff`) instead of being claimed.
    pub leased_until: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct NewRecipient {
    pub address: String,
    pub domain: String,
    pub dsn_notify: Option<String>,
    pub dsn_orcpt: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub api_key_hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    #[serde(skip)]
    pub api_key_hash: String,
    pub created_at: i64,
    /// Send RFC 3464 bounce reports to this tenant's envelope senders.
    pub bounce_reports: bool,
}

/// Changes to a tenant's settings; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct TenantSettings {
    pub bounce_reports: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct NewCredential {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub username: String,
    pub password_hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CredentialRecord {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowedIp {
    pub tenant_id: TenantId,
    /// Network in CIDR notation, validated before it gets here.
    pub cidr: String,
    pub require_tls: bool,
}

#[derive(Clone, Debug)]
pub struct NewDomain {
    pub tenant_id: TenantId,
    pub name: String,
    pub verified: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct DomainRecord {
    pub name: String,
    pub tenant_id: TenantId,
    pub verified: bool,
    pub created_at: i64,
}

/// What the policy layer keeps in memory.
#[derive(Clone, Debug, Default)]
pub struct DirectorySnapshot {
    pub tenants: Vec<TenantRecord>,
    pub credentials: Vec<CredentialRecord>,
    pub allowed_ips: Vec<AllowedIp>,
    pub domains: Vec<DomainRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MessageView {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub mail_from: String,
    pub rfc_message_id: Option<String>,
    pub size: i64,
    pub received_at: i64,
    pub source: String,
    pub client_ip: Option<String>,
    pub dsn_ret: Option<String>,
    pub dsn_envid: Option<String>,
    pub recipients: Vec<RecipientView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecipientView {
    pub address: String,
    pub state: RecipientState,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_reply: Option<String>,
    pub dsn_notify: Option<String>,
    pub dsn_orcpt: Option<String>,
    pub updated_at: i64,
    pub events: Vec<Event>,
}

/// A recipient handed to the delivery side by `claim_due`, with what it needs from
/// its message (the body is loaded separately, once per message).
#[derive(Clone, Debug)]
pub struct DueRecipient {
    pub message_id: MessageId,
    pub idx: i64,
    pub address: String,
    pub domain: String,
    pub attempts: i64,
    pub dsn_notify: Option<String>,
    pub dsn_orcpt: Option<String>,
    pub tenant_id: TenantId,
    pub mail_from: String,
    pub received_at: i64,
    pub dsn_ret: Option<String>,
    pub dsn_envid: Option<String>,
    pub smtputf8: bool,
}

/// The result of one delivery attempt for one recipient, recorded with its event.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub message_id: MessageId,
    pub idx: i64,
    pub recipient: String,
    pub tenant_id: TenantId,
    pub state: RecipientState,
    /// Whether this was an attempt (counts toward `attempts`).
    pub attempted: bool,
    /// Next attempt for `deferred`.
    pub next_attempt_at: Option<i64>,
    pub last_reply: Option<String>,
    pub last_mx: Option<String>,
    pub event: mailroom_model::EventType,
    pub detail: serde_json::Value,
    pub at: i64,
}

/// Queue counts for `GET /v1/queue`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueSummary {
    pub by_state: Vec<(String, i64)>,
    /// (domain, recipients not final)
    pub by_domain: Vec<(String, i64)>,
}

/// Takes freshly stored messages straight into delivery, so new mail does not wait
/// for (or cost) a scheduler round. Implemented by the delivery engine; ingest calls it
/// right after the durable enqueue of a message stored with `leased_until`.
pub trait Handoff: Send + Sync {
    /// Offers the message's recipients and body. Returns the keys it could not take
    /// (queues full, shutting down); the caller gives those back to the store.
    fn offer(
        &self,
        recipients: Vec<DueRecipient>,
        body: std::sync::Arc<Vec<u8>>,
    ) -> Vec<(MessageId, i64)>;
    /// How long a handed-off recipient stays claimed.
    fn lease(&self) -> std::time::Duration;
}
