//! The ACME role on PostgreSQL: HTTP-01 challenges in progress (same SQL as the other
//! backend, see `crate::acme`).

use super::{PgStore, db};
use crate::{AcmeStore, StoreError};
use sqlx::Row;

acme_impl!(PgStore);
