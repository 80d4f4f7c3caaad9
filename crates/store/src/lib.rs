//! Durable storage behind role traits (one per concern, `Store` = all of them): messages with their recipients and events,
//! tenants, credentials, allowlists and domains. The SQLite backend (the embedded
//! default) lives in `sqlite`, the shared multi-node one in `postgres`; both
//! pass the same conformance suite (`tests/`).
//!
//! This crate knows nothing of SMTP, HTTP or retry policy: it stores and loads, and
//! promises that `enqueue` returns only once the message is committed and fsynced.
//!
//! Which roles each crate sees (a crate-local trait names exactly the methods it
//! calls, implemented for any `Arc` of a store with those roles):
//!
//! | crate | sees the store as | roles |
//! |---|---|---|
//! | delivery | `DeliveryStore` | queue, message, directory (`get_tenant`) |
//! | ingest | `IngestStore`, `KeySource` | message, queue (`release`), send-policy (`suppressed_among`), domain (`list_dkim_keys`) |
//! | policy | `PolicyStore`, `DirectoryVersion`, `health::HealthReader` | directory, send-policy, cluster (`directory_version`), intake (health reads) |
//! | intake | `Arc<dyn IntakeStore>` (pipeline), `HealthStore` (monitor) | intake, directory (`get_tenant`, `list_tenants`) |
//! | events | `Arc<dyn EventStore>` | events |
//! | domains | `Arc<dyn DomainStore>` | domain |
//! | api (console routes) | `DynStore` | console (sessions, counters, search) |
//! | intake (reports), api | `Arc<dyn ReportStore>` | reports (DMARC / TLS-RPT intake) |
//! | delivery (shaping) | `Arc<dyn ShapingStore>` | shaping (throttles, warm-up counts, tenant pools) |
//! | api (ACME challenge route), mailroom (ACME orders) | `DynStore` | acme (HTTP-01 tokens) |
//! | api, mailroom | `DynStore` | all (the API serves every route; the binary wires the rest) |

#[macro_use]
mod acme;
mod body_codec;
mod console;
mod deletion_types;
#[macro_use]
mod deletion_sql;
mod error;
mod event_details;
mod event_types;
mod health;
mod intake_types;
mod key_types;
mod mail_roles;
mod node_types;
mod report_types;
#[macro_use]
mod same_sql;
#[macro_use]
mod same_sql_reports;
#[macro_use]
mod same_sql_console;
pub mod postgres;
mod secret_types;
mod service_roles;
mod shaping_types;
mod signing_types;
pub mod sqlite;
pub mod suppression_hint;
mod tls_types;
mod types;

pub use acme::AcmeStore;
pub use console::*;
pub use deletion_types::{
    DomainDeletion, Erasure, ErasureCounts, TenantDeletion, TenantRemoved, address_sha256,
    redacted_address,
};
pub use error::StoreError;
pub(crate) use event_details::{
    bounce_columns, cancelled_detail, removed_counts, suppressed_detail,
};
pub use event_types::*;
pub use health::REFUSAL_SHOWN_FOR;
pub use intake_types::*;
pub use key_types::*;
pub use mail_roles::*;
pub use node_types::*;
pub use report_types::*;
pub use secret_types::*;
pub use service_roles::*;
pub use shaping_types::*;
pub use signing_types::*;
pub use suppression_hint::SuppressionHint;
pub use tls_types::*;
pub use types::*;

/// Everything a node needs: every role. Crates that need less take the role traits
/// they use (`Arc<dyn QueueStore>`, …); an `Arc<dyn Store>` upcasts to each.
pub trait Store:
    MessageStore
    + QueueStore
    + DirectoryStore
    + SendPolicyStore
    + DomainStore
    + IntakeStore
    + TrackingStore
    + EventStore
    + ClusterStore
    + ConsoleStore
    + DeletionStore
    + SigningStore
    + TlsPolicyStore
    + ShapingStore
    + ReportStore
    + AcmeStore
{
}

impl<T> Store for T where
    T: MessageStore
        + QueueStore
        + DirectoryStore
        + SendPolicyStore
        + DomainStore
        + IntakeStore
        + TrackingStore
        + EventStore
        + ClusterStore
        + ConsoleStore
        + DeletionStore
        + SigningStore
        + TlsPolicyStore
        + ShapingStore
        + ReportStore
        + AcmeStore
{
}

pub type DynStore = std::sync::Arc<dyn Store>;

/// The role traits, for callers that hold a `DynStore` and call its methods.
pub mod prelude {
    pub use crate::{
        AcmeStore as _, ClusterStore as _, ConsoleStore as _, DeletionStore as _,
        DirectoryStore as _, DomainStore as _, EventStore as _, IntakeStore as _,
        MessageStore as _, QueueStore as _, ReportStore as _, SendPolicyStore as _,
        ShapingStore as _, SigningStore as _, TlsPolicyStore as _, TrackingStore as _,
    };
}
