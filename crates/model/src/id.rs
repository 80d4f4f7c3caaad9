//! Identifiers. Message and event ids are ULIDs: 26 characters, sortable by creation
//! time, safe in SMTP replies, URLs and file names. Tenants and credentials use the
//! same scheme so every id in logs looks alike.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id, ordered after every id made earlier on this host.
            pub fn generate() -> Self {
                Self(ulid::Ulid::new().to_string())
            }
            /// Accepts only a well-formed ULID (26 Crockford base-32 characters).
            pub fn parse(text: &str) -> Option<Self> {
                ulid::Ulid::from_string(text).ok().map(|u| Self(u.to_string()))
            }
            /// Wraps a value read back from storage, where it was validated on the way in.
            pub fn from_stored(text: String) -> Self {
                Self(text)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ulid_id!(
    /// One accepted message (all of its recipients).
    MessageId
);
ulid_id!(
    /// One recorded event.
    EventId
);
ulid_id!(
    /// A tenant: the unit of ownership for credentials, domains and messages.
    TenantId
);
ulid_id!(
    /// One SMTP credential of a tenant.
    CredentialId
);
ulid_id!(
    /// One webhook endpoint registered by a tenant.
    WebhookId
);
ulid_id!(
    /// One named API key of a tenant (its secrets change on rotation, its id does not).
    ApiKeyId
);

/// Milliseconds since the Unix epoch: the one time representation stored everywhere.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_round_trip() {
        let a = MessageId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::generate();
        assert!(a < b);
        assert_eq!(a.as_str().len(), 26);
        assert_eq!(MessageId::parse(a.as_str()), Some(a));
        assert_eq!(MessageId::parse("not-an-id"), None);
        assert_eq!(MessageId::parse("../../etc/passwd"), None);
    }
}
