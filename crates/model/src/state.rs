//! The life of one recipient. State is per recipient, not per message: one message
//! to five domains has five independent fates.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Stored and waiting for its first (or next) delivery attempt.
    Queued,
    /// A delivery attempt failed temporarily; a next attempt is scheduled.
    Deferred,
    /// The recipient's exchanger accepted it (final).
    Delivered,
    /// The recipient's exchanger refused it permanently (final).
    Bounced,
    /// The queue lifetime ran out before delivery (final).
    Expired,
    /// An operator or tenant cancelled it (final).
    Cancelled,
    /// On the tenant's suppression list: accepted, never delivered (final).
    Suppressed,
    /// Held by content protection: never claimed for delivery until released through
    /// the API (then `queued`) or deleted (then `cancelled`). Not final.
    Quarantined,
}

impl RecipientState {
    pub const ALL: [RecipientState; 8] = [
        Self::Queued,
        Self::Deferred,
        Self::Delivered,
        Self::Bounced,
        Self::Expired,
        Self::Cancelled,
        Self::Suppressed,
        Self::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Suppressed => "suppressed",
            Self::Quarantined => "quarantined",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether no further delivery attempt will be made.
    pub fn is_final(self) -> bool {
        match self {
            Self::Queued | Self::Deferred | Self::Quarantined => false,
            Self::Delivered
            | Self::Bounced
            | Self::Expired
            | Self::Cancelled
            | Self::Suppressed => true,
        }
    }
}

impl fmt::Display for RecipientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in RecipientState::ALL {
            assert_eq!(RecipientState::parse(s.as_str()), Some(s));
        }
        assert!(!RecipientState::Queued.is_final());
        assert!(RecipientState::Delivered.is_final());
    }
}
