//! Rows of bounce and complaint intake and of sender health: what a report is matched
//! against, what recording it asks for, the counts behind a tenant's rolling rates and
//! the level last assessed. Pure data; the SQL is in `sqlite/intake.rs`.

use mailroom_model::{EventType, MessageId, RecipientState, TenantId};
use serde::Serialize;

/// A stored message as bounce intake sees it: whose it is, the return-path domain its
/// VERP addresses were made with, and its recipients.
#[derive(Clone, Debug, PartialEq)]
pub struct BounceTarget {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    /// `bounces.<domain>`; `None`: sent without VERP (no bounce address to accept).
    pub return_path: Option<String>,
    pub rfc_message_id: Option<String>,
    pub recipients: Vec<TargetRecipient>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TargetRecipient {
    pub idx: i64,
    pub address: String,
    pub state: RecipientState,
}

/// A bounce that arrived after delivery (or a DSN from a relay further on): the
/// recipient becomes `bounced` with a `bounced` event whose detail has `"async": true`.
#[derive(Clone, Debug)]
pub struct AsyncBounce {
    pub message_id: MessageId,
    pub idx: i64,
    pub at: i64,
    /// The remote diagnostic, kept as the recipient's last reply.
    pub reply: Option<String>,
    /// A hard bounce: the address is suppressed (reason `bounce`) in the same
    /// transaction.
    pub hard: bool,
    pub detail: mailroom_model::AsyncBounceDetail,
}

/// A feedback-loop complaint: a `complained` event and a suppression (reason
/// `complaint`) in one transaction; the recipient's delivery state is unchanged.
#[derive(Clone, Debug)]
pub struct Complaint {
    pub message_id: MessageId,
    pub idx: i64,
    pub at: i64,
    pub detail: mailroom_model::ComplaintDetail,
}

/// What recording a bounce or complaint did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntakeRecorded {
    /// Written; the tenant and recipient it was about.
    Recorded {
        tenant_id: TenantId,
        recipient: String,
    },
    /// The same report was already recorded (bounced already, or complained already).
    Duplicate,
    /// No such message or recipient.
    NotFound,
}

/// A tenant's outcomes in a window, for the rolling rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthCounts {
    /// `delivered` events.
    pub delivered: i64,
    /// `bounced` events recorded at delivery time (each is a recipient that was never
    /// delivered, so it belongs to the denominator).
    pub bounced_at_delivery: i64,
    /// Hard `bounced` events, at delivery time or asynchronous.
    pub hard_bounces: i64,
    /// `complained` events.
    pub complaints: i64,
}

impl HealthCounts {
    /// Recipients with a final delivery outcome: delivered plus bounced at delivery.
    pub fn sent(&self) -> i64 {
        self.delivered + self.bounced_at_delivery
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthLevel {
    #[default]
    Ok,
    Warning,
    Paused,
}

impl HealthLevel {
    pub const ALL: [HealthLevel; 3] = [Self::Ok, Self::Warning, Self::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

/// The level a tenant was last assessed at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SenderHealth {
    pub tenant_id: TenantId,
    pub level: HealthLevel,
    /// Outcomes before this (ms) are not counted.
    pub window_start: i64,
    pub updated_at: i64,
}

/// A change of a tenant's health level, written in one transaction with its event and
/// (for a pause) the tenant's status.
#[derive(Clone, Debug)]
pub struct HealthChange {
    pub tenant_id: TenantId,
    pub level: HealthLevel,
    pub window_start: i64,
    pub at: i64,
    /// Set the tenant's status to `paused`, if it is `active` now.
    pub pause: bool,
    /// A tenant-level event to record with the change.
    pub event: Option<(EventType, mailroom_model::SenderHealthDetail)>,
}
