//! The transport-security role on PostgreSQL: the MTA-STS policy cache and the TLS-RPT
//! day counters (same SQL as SQLite).

use super::{PgStore, db};
use crate::{StoreError, StsPolicyRecord, TlsPolicyStore, TlsResult, TlsResultCount};
use sqlx::Row;

tls_policy_impl!(PgStore);
