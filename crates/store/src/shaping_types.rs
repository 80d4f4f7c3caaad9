//! What the shaping role stores: throttles and suspensions (from response rules or
//! set by hand) with their cause and expiry, per-day egress counts per source
//! address and provider (warm-up), each address's warm-up start, and which egress
//! pool a tenant sends through.

use serde::Serialize;

/// A throttle or suspension in force at a site (all tenants, or one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThrottleRecord {
    /// Assigned by the store (0 when adding).
    pub id: i64,
    /// The site key (`provider:google`, `mx:a.example,b.example`).
    pub site: String,
    pub provider: Option<String>,
    /// Set when only this tenant is slowed at the site.
    pub tenant: Option<String>,
    /// `throttle`, `cap_connections`, `suspend` (bounces leave no throttle).
    pub action: String,
    /// Messages per minute (throttle) or connections (cap).
    pub value: Option<i64>,
    /// The rule that fired (`manual` for an operator's).
    pub rule: String,
    /// The remote reply that matched.
    pub cause: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Messages sent on one UTC day from one source address to one provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EgressCount {
    /// Day number (UTC days since the epoch).
    pub day: i64,
    pub address: String,
    /// Provider name, or the site key for an unrecognised site.
    pub provider: String,
    pub sent: i64,
}
