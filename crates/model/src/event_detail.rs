//! The `detail` of each event type, typed: what writers construct and the store
//! records. Serialized, each is byte for byte the JSON that was written (and that the
//! API, webhooks and OpenAPI show) before these types existed: fields are declared in
//! alphabetical order, because the JSON used to be built as a `serde_json::Value`
//! (whose objects are sorted maps); a field that was written as `null` is an `Option`
//! without `skip_serializing_if`, one that was left out is skipped. The test at the end
//! holds every type to that order.
//!
//! Reading stays untyped on purpose: [`crate::Event::detail`] is the JSON as recorded,
//! which rows written by older versions and erasure (which redacts addresses in the
//! text) can make differ from these types; [`EventDetail::parse`] gives the typed view
//! where a reader wants one. What stays untyped inside a detail, and why, is said on
//! each such field.
//!
//! What the store needs to filter or count on is not read back from this JSON: a
//! bounce's class and whether it arrived asynchronously are written beside the detail
//! as columns ([`EventDetail::bounce_class`], [`EventDetail::is_async_bounce`]).

use crate::{EventType, MessageId, RecipientState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A bounce that is final for the address (`hard`: it is suppressed) or only for this
/// message (`soft`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    Hard,
    Soft,
}

impl BounceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
        }
    }
}

/// Why a recipient bounced, as far as the reply says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceCategory {
    BadMailbox,
    BadDomain,
    MailboxFull,
    MessageTooLarge,
    PolicyBlock,
    Other,
}

/// An SMTP reply as recorded: from the receiving server (attempts) or quoted by a
/// bounce report (where code and enhanced code may be missing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplyDetail {
    pub code: Option<u16>,
    /// `5.1.1`.
    pub enhanced: Option<String>,
    pub text: String,
}

/// The TLS an attempt had and the policy that asked for it (`delivery`'s
/// `TlsDecision`, as recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsDecisionDetail {
    pub certificate_verified: bool,
    pub cipher: Option<String>,
    /// The MTA-STS mode when `policy` is `mta-sts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `mta-sts`, `dane`, `opportunistic` or `route`.
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: Option<String>,
}

/// `accepted` for a submitted message (SMTP or HTTP): one per recipient, the same
/// detail on each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct AcceptedDetail {
    pub arc_sealed: bool,
    /// `smtp-auth:<user>`, `allowed-ip` or `api-key`.
    pub auth: String,
    pub client_ip: Option<String>,
    /// The content pipeline's report (tracking rewrite, rules that fired, score,
    /// malware scan), `null` when there is nothing to say. Untyped here: its findings
    /// are the `content` crate's, which `model` sits below. Absent reads as `null`
    /// (the store records details without their `null` fields).
    #[serde(default)]
    pub content: serde_json::Value,
    pub dkim_selectors: Vec<String>,
    pub helo: Option<String>,
    /// The sender's own `metadata` (HTTP): any JSON, echoed as given.
    pub metadata: Option<serde_json::Value>,
    pub rfc_message_id: Option<String>,
    pub size: u64,
    /// `smtp` or `api`.
    pub source: String,
    /// Also what message search indexes (a trigger copies it, see the store's
    /// `message_subjects`).
    pub subject: Option<String>,
    /// The sender's own `tags` (HTTP), echoed as given.
    pub tags: Option<serde_json::Value>,
    /// Negotiated TLS version of the SMTP session.
    pub tls: Option<String>,
}

/// `accepted` for a delivery status report Mailroom itself enqueued about a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAcceptedDetail {
    /// The message the report is about (the store pairs the two from this field, see
    /// its `message_reports`).
    pub original_message_id: MessageId,
    /// Always `dsn`.
    pub source: String,
}

/// `suppressed` at submission: the recipient is on the tenant's suppression list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressedDetail {
    /// The list entry's reason (`bounce`, `complaint`, `unsubscribe`, `manual`).
    pub reason: String,
    /// Always `listed`.
    pub suppression: String,
}

/// One content rule that fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFinding {
    /// `reject`, `quarantine` or `tag`.
    pub action: String,
    pub findings: Vec<String>,
    pub rule: String,
}

/// `filtered`: content protection held the recipient in quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilteredDetail {
    /// Always `content`.
    pub reason: String,
    pub rules: Vec<RuleFinding>,
}

/// `delivered`, `deferred`, `expired` and `bounced` at delivery time: one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct AttemptDetail {
    /// Attempts made, this one included.
    pub attempt: i64,
    /// Bounces only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_category: Option<BounceCategory>,
    /// Bounces only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_class: Option<BounceClass>,
    /// How long the attempt took; absent when no server was involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Deferrals only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    pub remote_ip: Option<String>,
    pub remote_mx: Option<String>,
    pub reply: ReplyDetail,
    /// Negotiated TLS version.
    pub tls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_decision: Option<TlsDecisionDetail>,
    /// Opportunistic TLS failed (this says why) and the message went in plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fallback: Option<String>,
}

/// `bounced` after delivery: a bounce report (DSN or a classic bounce) came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AsyncBounceDetail {
    /// Always `true`: what tells this detail from an attempt's.
    #[serde(rename = "async")]
    pub is_async: bool,
    pub bounce_category: BounceCategory,
    pub bounce_class: BounceClass,
    /// The report's shape: `dsn`, `qmail`, `exim`, `sendmail`, …
    pub format: String,
    pub remote_mta: Option<String>,
    pub reply: ReplyDetail,
    pub reported_recipient: Option<String>,
    pub reporting_mta: Option<String>,
}

/// `cancelled` and `released`: a recipient's state changed by request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChangeDetail {
    /// `tenant_deleted`, `address_erased`; absent for an API cancel or a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The new state.
    pub state: RecipientState,
}

/// `opened` and `clicked`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingDetail {
    pub ip: Option<String>,
    /// What kind of machine fetched it (`apple-privacy-proxy`, …), if one did.
    pub machine: Option<String>,
    /// `clicked` only: the link followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub user_agent: Option<String>,
}

/// `unsubscribed` (also the suppression entry's detail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeDetail {
    pub ip: Option<String>,
    /// Always `one-click`.
    pub method: String,
    pub user_agent: Option<String>,
}

/// `complained`: a feedback-loop (ARF) report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintDetail {
    pub arrival_date: Option<String>,
    pub feedback_type: String,
    pub reported_recipient: Option<String>,
    pub reporting_mta: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A tenant's outcomes in the rolling window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCountsDetail {
    pub bounced_at_delivery: i64,
    pub complaints: i64,
    pub delivered: i64,
    pub hard_bounces: i64,
}

/// The thresholds in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthThresholdsDetail {
    pub bounce_pause: f64,
    pub bounce_warn: f64,
    pub complaint_pause: f64,
    pub complaint_warn: f64,
    pub min_sample: i64,
    pub window_secs: u64,
}

/// `sender_health.warning` and `sender_health.paused`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SenderHealthDetail {
    pub bounce_rate: f64,
    pub complaint_rate: f64,
    pub counts: HealthCountsDetail,
    /// Recipients with a final delivery outcome in the window.
    pub sent: i64,
    pub thresholds: HealthThresholdsDetail,
}

/// `domain.dns_error`: a verified domain's record is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainDnsErrorDetail {
    /// The check's result, the same value as the domain's `last_check` in the domains
    /// API (whose shape belongs to that API; untyped here). Absent reads as `null`.
    #[serde(default)]
    pub check: serde_json::Value,
    pub domain: String,
}

/// `domain.deleted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainDeletedDetail {
    pub dkim_keys: i64,
    pub domain: String,
    pub queued_recipients: i64,
}

/// Counts per kind of row removed (`api_keys`, `domains`, …), in name order.
pub type RemovedCounts = BTreeMap<String, u64>;

/// `tenant.deleted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeletedDetail {
    pub purged: bool,
    pub removed: RemovedCounts,
    pub tenant_name: String,
}

/// `address.erased`: the address only by its hash and a redacted form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressErasedDetail {
    pub address_sha256: String,
    pub counts: RemovedCounts,
    pub redacted: String,
}

/// `shaping.action`: what the shaper did on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShapingDetail {
    /// A response rule fired (`kind` = `rule`).
    Rule(ShapingRuleDetail),
    /// The concurrency window fell (`kind` = `concurrency_drop`).
    Window(ShapingWindowDetail),
    /// Warm-up overflowed or capped (`kind` = `warmup_overflow` / `warmup_capped`).
    Warmup(ShapingWarmupDetail),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapingRuleDetail {
    /// `throttle`, `suspend`, `bounce`, …
    pub action: String,
    /// The reply line that matched.
    pub cause: String,
    /// `None` for a bounce rule (nothing to expire).
    pub expires_at: Option<i64>,
    pub kind: String,
    pub provider: Option<String>,
    pub rule: String,
    pub site: String,
    /// The tenant when the rule's scope is one tenant.
    pub tenant: Option<String>,
    pub value: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapingWindowDetail {
    pub action: String,
    pub cause: String,
    pub kind: String,
    pub previous: u64,
    pub provider: Option<String>,
    pub site: String,
    /// The window now.
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapingWarmupDetail {
    pub action: String,
    pub address: String,
    pub day: i64,
    pub kind: String,
    pub pool: String,
    pub provider: String,
}

/// Any event's detail. Serialized without a tag (the event's `type` beside it says
/// which); [`EventDetail::parse`] reads one back given that type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventDetail {
    Accepted(Box<AcceptedDetail>),
    ReportAccepted(ReportAcceptedDetail),
    Suppressed(SuppressedDetail),
    Filtered(FilteredDetail),
    Attempt(Box<AttemptDetail>),
    AsyncBounce(AsyncBounceDetail),
    StateChange(StateChangeDetail),
    Tracking(TrackingDetail),
    Unsubscribed(UnsubscribeDetail),
    Complained(ComplaintDetail),
    SenderHealth(SenderHealthDetail),
    DomainDnsError(DomainDnsErrorDetail),
    DomainDeleted(DomainDeletedDetail),
    TenantDeleted(TenantDeletedDetail),
    AddressErased(AddressErasedDetail),
    Shaping(ShapingDetail),
}

impl EventDetail {
    /// The JSON text the store records (and the API shows).
    pub fn to_json(&self) -> String {
        // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "null".into())
    }

    /// What the store records: [`Self::to_json`] without its top-level `null` fields,
    /// which [`Self::with_nulls`] puts back on reading (nested objects keep theirs).
    pub fn to_stored_json(&self) -> String {
        match self.to_value() {
            serde_json::Value::Object(mut fields) => {
                fields.retain(|_, v| !v.is_null());
                serde_json::Value::Object(fields).to_string()
            }
            other => other.to_string(),
        }
    }

    /// A stored detail as [`Self::to_json`] wrote it: `kind`'s top-level `null` fields
    /// are added back; stored fields, and a detail not of `kind`'s shape, stay as stored.
    pub fn with_nulls(kind: EventType, mut stored: serde_json::Value) -> serde_json::Value {
        if let Ok(typed) = Self::parse(kind, &stored)
            && let (serde_json::Value::Object(full), serde_json::Value::Object(have)) =
                (typed.to_value(), &mut stored)
        {
            for (key, value) in full {
                if value.is_null() {
                    have.entry(key).or_insert(value);
                }
            }
        }
        stored
    }

    /// The same as a `serde_json::Value`, for an [`crate::Event`] built in memory.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// A bounce's class, stored beside the detail (the sender-health counts and the
    /// console's counters filter on it).
    pub fn bounce_class(&self) -> Option<BounceClass> {
        match self {
            Self::Attempt(a) => a.bounce_class,
            Self::AsyncBounce(b) => Some(b.bounce_class),
            _ => None,
        }
    }

    /// A bounce that arrived after delivery (stored beside the detail: such a bounce
    /// is not a delivery outcome in the sender-health rates).
    pub fn is_async_bounce(&self) -> bool {
        matches!(self, Self::AsyncBounce(_))
    }

    /// Reads a recorded detail as the type `kind`'s writers produce. An error says the
    /// JSON is not of that shape (an older row, one redacted by erasure, or `rejected`,
    /// which is never recorded).
    pub fn parse(kind: EventType, detail: &serde_json::Value) -> Result<Self, serde_json::Error> {
        use serde_json::from_value as from;
        let v = detail.clone();
        Ok(match kind {
            EventType::Accepted if detail.get("source").and_then(|s| s.as_str()) == Some("dsn") => {
                Self::ReportAccepted(from(v)?)
            }
            EventType::Accepted => Self::Accepted(Box::new(from(v)?)),
            EventType::Suppressed => Self::Suppressed(from(v)?),
            EventType::Filtered => Self::Filtered(from(v)?),
            EventType::Bounced if detail.get("async").is_some() => Self::AsyncBounce(from(v)?),
            EventType::Delivered
            | EventType::Deferred
            | EventType::Bounced
            | EventType::Expired => Self::Attempt(Box::new(from(v)?)),
            EventType::Rejected => {
                return Err(serde::de::Error::custom(
                    "no detail is recorded for rejected",
                ));
            }
            EventType::Cancelled | EventType::Released => Self::StateChange(from(v)?),
            EventType::Opened | EventType::Clicked => Self::Tracking(from(v)?),
            EventType::Unsubscribed => Self::Unsubscribed(from(v)?),
            EventType::Complained => Self::Complained(from(v)?),
            EventType::SenderHealthWarning | EventType::SenderHealthPaused => {
                Self::SenderHealth(from(v)?)
            }
            EventType::DomainDnsError => Self::DomainDnsError(from(v)?),
            EventType::DomainDeleted => Self::DomainDeleted(from(v)?),
            EventType::TenantDeleted => Self::TenantDeleted(from(v)?),
            EventType::AddressErased => Self::AddressErased(from(v)?),
            EventType::ShapingAction => Self::Shaping(from(v)?),
        })
    }
}

macro_rules! from_detail {
    ($($t:ty => $v:ident $(($wrap:path))?),* $(,)?) => {$(
        impl From<$t> for EventDetail {
            fn from(d: $t) -> Self {
                Self::$v($($wrap)?(d))
            }
        }
    )*};
}

from_detail! {
    AcceptedDetail => Accepted(Box::new),
    ReportAcceptedDetail => ReportAccepted,
    SuppressedDetail => Suppressed,
    FilteredDetail => Filtered,
    AttemptDetail => Attempt(Box::new),
    AsyncBounceDetail => AsyncBounce,
    StateChangeDetail => StateChange,
    TrackingDetail => Tracking,
    UnsubscribeDetail => Unsubscribed,
    ComplaintDetail => Complained,
    SenderHealthDetail => SenderHealth,
    DomainDnsErrorDetail => DomainDnsError,
    DomainDeletedDetail => DomainDeleted,
    TenantDeletedDetail => TenantDeleted,
    AddressErasedDetail => AddressErased,
    ShapingDetail => Shaping,
}

#[cfg(test)]
mod tests;
