//! A tenant's standing: whether it may submit at all. Suspension is an operator's
//! decision; `Paused` is reserved for automatic sender-health pauses.

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
