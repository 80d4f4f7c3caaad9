//! A tenant's standing (whether it may submit at all) and the scopes of its API keys.
//! Suspension is an operator's decision; `Paused` is reserved for automatic
//! sender-health pauses.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Submissions are accepted (subject to limits).
    #[default]
    Active,
    /// Every submission is refused (`550 5.7.1` / HTTP 403) until an operator resumes it.
    Suspended,
    /// Paused automatically (sender health); refused like `Suspended`.
    Paused,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 3] = [Self::Active, Self::Suspended, Self::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether submissions are refused.
    pub fn refuses_mail(self) -> bool {
        match self {
            Self::Active => false,
            Self::Suspended | Self::Paused => true,
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tenant API key may do. The HTTP layer maps a scope to the routes it opens
/// (`send`: submitting mail; `read`: GET requests; `full`: everything a tenant may do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Submit mail (HTTP `POST /v1/messages`, SMTP AUTH) and nothing else.
    Send,
    /// Read-only: every GET a tenant may make, no change of any kind.
    Read,
    /// Everything a tenant key can do, including managing other keys.
    Full,
}

impl KeyScope {
    pub const ALL: [KeyScope; 3] = [Self::Send, Self::Read, Self::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Read => "read",
            Self::Full => "full",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether a key of this scope may submit mail.
    pub fn may_send(self) -> bool {
        match self {
            Self::Send | Self::Full => true,
            Self::Read => false,
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
