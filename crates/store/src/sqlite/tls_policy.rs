//! The transport-security role on SQLite: the MTA-STS policy cache and the TLS-RPT
//! day counters (same SQL as PostgreSQL).

use super::{SqliteStore, db};
use crate::{StoreError, StsPolicyRecord, TlsPolicyStore, TlsResult, TlsResultCount};
use sqlx::Row;

tls_policy_impl!(SqliteStore);
