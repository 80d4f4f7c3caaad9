//! Mailroom's vocabulary: identifiers, addresses and domains, envelopes, per-recipient
//! states and events. Pure data with validation; no I/O, no SMTP text, no SQL.

pub mod address;
pub mod event;
pub mod event_detail;
pub mod id;
pub mod signatures;
pub mod state;
pub mod tenant;
pub mod verp;

pub use address::{Address, AddressError, Domain, parse_domain};
pub use event::{Event, EventType};
pub use event_detail::{
    AcceptedDetail, AddressErasedDetail, AsyncBounceDetail, AttemptDetail, BounceCategory,
    BounceClass, ComplaintDetail, DomainDeletedDetail, DomainDnsErrorDetail, EventDetail,
    FilteredDetail, HealthCountsDetail, HealthThresholdsDetail, RemovedCounts, ReplyDetail,
    ReportAcceptedDetail, RuleFinding, SenderHealthDetail, ShapingDetail, ShapingRuleDetail,
    ShapingWarmupDetail, ShapingWindowDetail, StateChangeDetail, SuppressedDetail,
    TenantDeletedDetail, TlsDecisionDetail, TrackingDetail, UnsubscribeDetail,
};
pub use id::{ApiKeyId, CredentialId, EventId, MessageId, TenantId, WebhookId, now_millis};
pub use signatures::Signatures;
pub use state::RecipientState;
pub use tenant::{KeyScope, TenantStatus};
