//! Shaping state on SQLite: throttles, egress counts, warm-up starts, tenant pools
//! (plain rows outside the event stream, written through the pool).

use super::{SqliteStore, db};
use crate::{EgressCount, ShapingStore, StoreError, ThrottleRecord};
use mailroom_model::TenantId;
use sqlx::Row;

shaping_impl!(SqliteStore, sqlx::sqlite::SqliteRow);

impl SqliteStore {
    /// Through the writer task like every other event (seq order is commit order).
    async fn insert_shaping_event(&self, e: mailroom_model::Event) -> Result<(), StoreError> {
        self.content_op(super::tracking::ContentOp::TenantEvent(e))
            .await
            .map(|_| ())
    }
}
