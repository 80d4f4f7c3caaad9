//! The ACME role on SQLite: HTTP-01 challenges in progress (same SQL as the other
//! backend, see `crate::acme`).

use super::{SqliteStore, db};
use crate::{AcmeStore, StoreError};
use sqlx::Row;

acme_impl!(SqliteStore);
