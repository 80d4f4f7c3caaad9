//! Shaping state on PostgreSQL: throttles, egress counts, warm-up starts, tenant pools
//! (plain rows, shared by every node; counts are added with one upsert per row in one transaction).

use super::{PgStore, db};
use crate::{EgressCount, ShapingStore, StoreError, ThrottleRecord};
use mailroom_model::TenantId;
use sqlx::Row;

shaping_impl!(PgStore, sqlx::postgres::PgRow);

impl PgStore {
    async fn insert_shaping_event(&self, e: mailroom_model::Event) -> Result<(), StoreError> {
        let on = StoreError::on("event");
        let mut tx = self.pool().begin().await.map_err(&on)?;
        super::domains::insert_tenant_event(&mut tx, &e).await?;
        tx.commit().await.map_err(&on)?;
        Ok(())
    }
}
