//! What a front door hands to ingest and what it gets back: the [`Submission`] (its
//! [`Origin`] and [`Recipient`]s), the [`Accepted`] answer (and its JSON, which the
//! HTTP API replays for an idempotency key), and the [`IngestError`]s front-ends map
//! to their own replies, each with a bounded metric label. Types only: the pipeline
//! that turns one into the other is `lib.rs`.

use mailroom_model::{Address, Domain, MessageId};
use mailroom_policy::{RecipientVerdict, Refusal, TenantContext};
use mailroom_store::StoreError;
use std::net::IpAddr;

/// How the message arrived, for the trace header and the `accepted` event.
#[derive(Clone, Debug)]
pub enum Origin {
    Smtp {
        helo: String,
        client_ip: IpAddr,
        /// Negotiated TLS version, if the session was encrypted.
        tls: Option<String>,
    },
    Api {
        client_ip: Option<IpAddr>,
    },
}

#[derive(Clone, Debug)]
pub struct Recipient {
    pub address: Address,
    /// DSN NOTIFY= (RFC 3461), kept for the delivery side.
    pub notify: Option<String>,
    /// DSN ORCPT=.
    pub orcpt: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Submission {
    pub tenant: TenantContext,
    pub mail_from: Address,
    pub recipients: Vec<Recipient>,
    /// The message as received (CRLF line endings, no dot-stuffing).
    pub body: Vec<u8>,
    pub origin: Origin,
    pub dsn_ret: Option<String>,
    pub dsn_envid: Option<String>,
    pub smtputf8: bool,
    /// REQUIRETLS (RFC 8689; SMTP `MAIL FROM … REQUIRETLS`, HTTP `"require_tls"`).
    pub require_tls: bool,
    /// HTTP `Idempotency-Key` and the SHA-256 of the request: the response is stored
    /// with the message, in the same transaction.
    pub idempotency: Option<(String, String)>,
    /// Tags and metadata (HTTP), stored with the message and echoed on its events.
    pub meta: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("message has no From header")]
    MissingFrom,
    #[error("message has more than one From header")]
    MultipleFrom,
    #[error("From header domain {0} is not authorized")]
    FromNotAuthorized(Domain),
    /// The domain is authorized but allows only some local parts.
    #[error("From address {0} is not an allowed sender of its domain")]
    FromAddressNotAllowed(String),
    #[error("malformed header section: {0}")]
    MalformedHeaders(&'static str),
    /// Suspended, paused or over a quota.
    #[error("submission refused: {0:?}")]
    Refused(Refusal),
    #[error("message exceeds the tenant's size limit of {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} recipients")]
    TooManyRecipients(usize),
    /// Recipient number `.0` (in submission order) may not be sent to.
    #[error("recipient {1} is not allowed: {2:?}")]
    RecipientRefused(usize, String, RecipientVerdict),
    /// A content rule whose action is reject fired (`rule`: its name).
    #[error("message refused by content rule {rule}: {detail}")]
    ContentRejected { rule: &'static str, detail: String },
    /// The malware scanner could not be reached and scanning fails closed.
    #[error("malware scanner unavailable")]
    ScanUnavailable,
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl IngestError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::MissingFrom | IngestError::MultipleFrom => "from_header",
            IngestError::FromNotAuthorized(_) => "sender_not_authorized",
            IngestError::FromAddressNotAllowed(_) => "sender_address_not_allowed",
            IngestError::MalformedHeaders(_) => "malformed_headers",
            IngestError::Refused(Refusal::Inactive(_)) => "account_inactive",
            IngestError::Refused(Refusal::RateLimited(_)) => "rate_limited",
            IngestError::TooLarge(_) => "too_large",
            IngestError::TooManyRecipients(_) => "too_many_recipients",
            IngestError::RecipientRefused(..) => "recipient_refused",
            IngestError::ContentRejected { .. } => "content_rejected",
            IngestError::ScanUnavailable => "scan_unavailable",
            IngestError::Storage(StoreError::Full) => "storage_full",
            IngestError::Storage(StoreError::Unavailable(_)) => "storage_unavailable",
            IngestError::Storage(_) => "storage_error",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Accepted {
    pub id: MessageId,
    pub rfc_message_id: Option<String>,
    /// Each recipient and whether it was suppressed (accepted, never delivered).
    pub recipients: Vec<(String, bool)>,
    /// Held by content protection until released.
    pub quarantined: bool,
}

impl Accepted {
    /// The answer the HTTP API gives (and replays for an idempotency key).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id.as_str(),
            "rfc_message_id": self.rfc_message_id,
            "recipients": self.recipients.iter().map(|(address, suppressed)| serde_json::json!({
                "address": address,
                "status": if *suppressed { "suppressed" } else if self.quarantined { "quarantined" } else { "queued" },
            })).collect::<Vec<_>>(),
        })
    }
}
