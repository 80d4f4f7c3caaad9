//! Rows going into and coming out of the store.

use mailroom_model::{CredentialId, Event, MessageId, RecipientState, TenantId, TenantStatus};
use mailroom_secrets::Sealed;
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
    /// REQUIRETLS (RFC 8689): only validated TLS to servers that offer REQUIRETLS.
    pub require_tls: bool,
    /// The complete message as it will be delivered (trace headers included).
    pub body: Vec<u8>,
    pub recipients: Vec<NewRecipient>,
    /// Detail recorded on each `accepted` event ([`mailroom_model::AcceptedDetail`],
    /// or [`mailroom_model::ReportAcceptedDetail`] for a report Mailroom sends).
    pub accepted_detail: mailroom_model::EventDetail,
    /// When set, the recipients are stored already claimed under this lease, because
    /// they are handed straight to this node's delivery (see `Handoff`) instead of
    /// being claimed.
    pub lease: Option<crate::Lease>,
    /// An HTTP Idempotency-Key and the response to replay for it, written in the same
    /// transaction as the message, so a retried request can never create a second one.
    pub idempotency: Option<IdempotencyRecord>,
    /// `{"tags": [...], "metadata": {...}}` from an HTTP submission, echoed on events.
    pub meta: Option<serde_json::Value>,
    /// The return-path domain (`bounces.<from-domain>`): delivery rewrites the
    /// envelope sender to a per-recipient VERP address there. `None`: the envelope
    /// sender is used as submitted (DSNs always go to `mail_from`).
    pub return_path: Option<String>,
    /// Held by content protection: recipients that are not suppressed are stored in
    /// state `quarantined` with a `filtered` event carrying this detail, and are never
    /// claimed until released.
    pub quarantine: Option<mailroom_model::FilteredDetail>,
}

/// The first answer to a request carrying an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 (hex) of the request body: the same key with another body is an error.
    pub request_hash: String,
    pub response: serde_json::Value,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct NewRecipient {
    pub address: String,
    pub domain: String,
    pub dsn_notify: Option<String>,
    pub dsn_orcpt: Option<String>,
    /// On the tenant's suppression list (with this reason): stored in state
    /// `suppressed` with a `suppressed` event after `accepted`, and never delivered.
    pub suppressed: Option<String>,
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
    /// Suspended or paused tenants may not submit anything.
    pub status: TenantStatus,
    /// SES-style sandbox: only recipients at the tenant's verified domains or on its
    /// sandbox recipient list.
    pub sandbox: bool,
    /// Refuse suppressed recipients at RCPT (`550 5.1.1`) instead of accepting them
    /// and recording them as `suppressed`.
    pub reject_suppressed: bool,
    pub limits: TenantLimits,
    /// Add an ARC set to submitted mail that already carries authentication
    /// (forwarded mail), when the operator configured a sealing key.
    pub arc_sealing: bool,
    /// Add the open pixel to HTML parts.
    pub track_opens: bool,
    /// Rewrite http(s) links in HTML parts to tracking links.
    pub track_clicks: bool,
    /// Add RFC 8058 one-click `List-Unsubscribe` headers (single-recipient messages).
    pub list_unsubscribe: bool,
    /// Content heuristics score at which the heuristics rule fires; `None`: the
    /// server default.
    pub content_score_threshold: Option<i64>,
    /// The tenant has had at least one suppression (set by the store on the first one,
    /// never cleared): only then does ingest look recipients up in the list.
    #[serde(skip)]
    pub has_suppressions: bool,
}

/// Per-tenant limits; `None` means the server-wide default from the configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TenantLimits {
    pub messages_per_second: Option<f64>,
    pub messages_per_day: Option<i64>,
    pub max_recipients: Option<i64>,
    pub max_message_size: Option<i64>,
}

/// Changes to a tenant's settings; `None` leaves a setting as it is, and for limits
/// `Some(None)` returns to the server default.
#[derive(Clone, Debug, Default)]
pub struct TenantSettings {
    pub bounce_reports: Option<bool>,
    pub status: Option<TenantStatus>,
    pub sandbox: Option<bool>,
    pub reject_suppressed: Option<bool>,
    pub arc_sealing: Option<bool>,
    pub messages_per_second: Option<Option<f64>>,
    pub messages_per_day: Option<Option<i64>>,
    pub max_recipients: Option<Option<i64>>,
    pub max_message_size: Option<Option<i64>>,
    pub track_opens: Option<bool>,
    pub track_clicks: Option<bool>,
    pub list_unsubscribe: Option<bool>,
    pub content_score_threshold: Option<Option<i64>>,
}

/// A message-level event that is not a delivery outcome (opened, clicked, ...).
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: mailroom_model::EventType,
    pub at: i64,
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    /// Set only when it is known (a message with one recipient).
    pub recipient: Option<String>,
    pub detail: mailroom_model::EventDetail,
}

/// A message with recipients held in quarantine, for `GET /v1/quarantine`.
#[derive(Clone, Debug, Serialize)]
pub struct QuarantinedMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub mail_from: String,
    pub rfc_message_id: Option<String>,
    pub received_at: i64,
    pub size: i64,
    pub recipients: Vec<String>,
    /// The `filtered` event's detail: the rules that fired.
    pub filter: serde_json::Value,
}

/// One address on a tenant's suppression list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suppression {
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Lowercased whole address: the list is case-insensitive.
    pub address: String,
    /// `bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    /// What caused it (the bounce's SMTP reply, an operator's note, ...).
    pub detail: serde_json::Value,
    pub message_id: Option<MessageId>,
    pub created_at: i64,
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
    /// Starts as `verified` (operator's word, or a managed domain) instead of `pending`.
    pub verified: bool,
    /// Published by the tenant as `mailroom-verification=<token>`.
    pub verification_token: String,
    /// Written in the same transaction as the domain.
    pub dkim_keys: Vec<NewDkimKey>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DomainRecord {
    pub name: String,
    pub tenant_id: TenantId,
    /// May send: `status` is `verified` or `degraded`.
    pub verified: bool,
    pub created_at: i64,
    pub status: DomainStatus,
    pub verification_token: String,
    pub last_checked_at: Option<i64>,
    /// The last check's outcome (`{"result", "reason", "records": [...]}`).
    pub last_check: Option<serde_json::Value>,
    /// Lowercased local parts the domain may send from; empty: any.
    pub allowed_local_parts: Vec<String>,
}

/// Where a domain stands with DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    Pending,
    Verified,
    Failed,
    /// DNS did not answer; checked again soon.
    TemporaryFailure,
    /// Was verified, but its verification record is gone: still sends, raises
    /// `domain.dns_error`.
    Degraded,
}

impl DomainStatus {
    pub const ALL: [DomainStatus; 5] = [
        Self::Pending,
        Self::Verified,
        Self::Failed,
        Self::TemporaryFailure,
        Self::Degraded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::TemporaryFailure => "temporary_failure",
            Self::Degraded => "degraded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Whether a domain in this state may be used as a sender domain.
    pub fn may_send(self) -> bool {
        matches!(self, Self::Verified | Self::Degraded)
    }
}

/// A DKIM key's place in its rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Created, its DNS record not yet seen: does not sign.
    Pending,
    /// Signs.
    Active,
    /// Replaced by a newer key; still signs until `retire_after`.
    Retiring,
    /// No longer signs.
    Retired,
}

impl KeyState {
    pub const ALL: [KeyState; 4] = [Self::Pending, Self::Active, Self::Retiring, Self::Retired];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    pub fn signs(self) -> bool {
        matches!(self, Self::Active | Self::Retiring)
    }
}

#[derive(Clone, Debug)]
pub struct NewDkimKey {
    pub domain: String,
    pub selector: String,
    /// `ed25519` or `rsa2048`.
    pub algorithm: String,
    /// The PEM private key, sealed under the KEK (`mailroom_secrets`) by the caller:
    /// the store never sees it in clear.
    pub private_key: Sealed,
    pub state: KeyState,
}

#[derive(Clone, Debug, Serialize)]
pub struct DkimKeyRecord {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// Never serialised: private keys do not leave the server through the API. Sealed;
    /// open with the keyring and [`mailroom_secrets::dkim_context`].
    #[serde(skip)]
    pub private_key: Sealed,
    pub state: KeyState,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retire_after: Option<i64>,
}

/// The outcome of a DNS check of a domain, as stored.
#[derive(Clone, Debug)]
pub struct DomainCheck {
    pub status: DomainStatus,
    pub checked_at: i64,
    pub result: serde_json::Value,
}

/// What the policy layer keeps in memory.
#[derive(Clone, Debug, Default)]
pub struct DirectorySnapshot {
    pub tenants: Vec<TenantRecord>,
    pub credentials: Vec<CredentialRecord>,
    pub allowed_ips: Vec<AllowedIp>,
    pub domains: Vec<DomainRecord>,
    /// (tenant, lowercased address) pairs a sandboxed tenant may send to.
    pub sandbox_recipients: Vec<(TenantId, String)>,
    /// Named API keys and their secrets (digests), unexpired ones only.
    pub api_keys: Vec<crate::ApiKeyRecord>,
    pub api_key_secrets: Vec<crate::ApiKeySecret>,
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
    /// See `NewMessage::require_tls`.
    pub require_tls: bool,
    /// See `NewMessage::return_path`.
    pub return_path: Option<String>,
    /// The fencing token of the lease this recipient was claimed under.
    pub lease_token: i64,
    /// When this recipient's previous attempt was recorded (its acceptance time before
    /// the first attempt): with `received_at`, it tells which delay-report threshold the
    /// attempt in hand is the first to pass, so a delay report goes out once per
    /// threshold without a column of its own.
    pub last_attempt_at: i64,
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
    /// The attempt; its bounce class is also written to the event's columns.
    pub detail: mailroom_model::AttemptDetail,
    pub at: i64,
    /// A hard bounce: add the recipient to the tenant's suppression list (reason
    /// `bounce`, with this outcome's detail) in the same transaction.
    pub suppress: bool,
    /// The fencing token of the lease the attempt was made under: the outcome is
    /// recorded only if the recipient still carries it.
    pub lease_token: i64,
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
/// right after the durable enqueue of a message stored with `lease`.
pub trait Handoff: Send + Sync {
    /// Offers the message's recipients and body. Returns the keys it could not take
    /// (queues full, shutting down); the caller gives those back to the store.
    fn offer(
        &self,
        recipients: Vec<DueRecipient>,
        body: std::sync::Arc<Vec<u8>>,
    ) -> Vec<(MessageId, i64)>;
    /// A fresh lease, owned by this node, for recipients about to be handed off.
    fn new_lease(&self) -> crate::Lease;
}

/// How long an `Idempotency-Key` stays live (24 h): within it a second request with the
/// key replays the first response; after it the key may be used again.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3_600_000;
