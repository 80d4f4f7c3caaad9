//! Deletions on PostgreSQL (`DeletionStore`): the rows and their event in one
//! transaction, the event written last under the event-order lock (see `events.rs`).
//! Tenant deletion and erasure share their SQL with SQLite (`deletion_sql.rs`).

use super::{PgStore, db};
use crate::{
    DeletionStore, DomainDeletion, Erasure, ErasureCounts, StoreError, TenantDeletion,
    TenantRemoved,
};
use mailroom_model::{Event, EventId, EventType, MessageId, TenantId, now_millis};
use sqlx::{PgConnection, Row};

deletion_sql!(PgConnection);

#[async_trait::async_trait]
impl DeletionStore for PgStore {
    async fn delete_domain(&self, name: &str) -> Result<Option<DomainDeletion>, StoreError> {
        let on = StoreError::on("domain");
        let name = name.to_ascii_lowercase();
        let mut tx = self.pool().begin().await.map_err(&on)?;
        // The row lock orders this against a concurrent key rotation or deletion.
        let Some(row) = sqlx::query("SELECT tenant_id FROM domains WHERE name = $1 FOR UPDATE")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(&on)?
        else {
            return Ok(None);
        };
        let tenant_id = TenantId::from_stored(row.try_get("tenant_id").map_err(&on)?);
        let keys = sqlx::query("DELETE FROM dkim_keys WHERE domain = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(&on)?
            .rows_affected();
        let queued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recipients r JOIN messages m ON m.id = r.message_id \
             WHERE m.tenant_id = $1 AND r.state IN ('queued', 'deferred') \
             AND lower(substr(m.mail_from, length(m.mail_from) - length($2) + 1)) = $2",
        )
        .bind(tenant_id.as_str())
        .bind(format!("@{name}"))
        .fetch_one(&mut *tx)
        .await
        .map_err(&on)?;
        sqlx::query("DELETE FROM domains WHERE name = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(&on)?;
        // Reports about the domain go with it: whoever adds the name next sees none.
        for sql in [
            "DELETE FROM received_reports WHERE domain = $1",
            "DELETE FROM dmarc_report_rows WHERE domain = $1",
            "DELETE FROM tlsrpt_report_rows WHERE domain = $1",
        ] {
            sqlx::query(sql)
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(&on)?;
        }
        let event = Event {
            id: EventId::generate(),
            kind: EventType::DomainDeleted,
            at: now_millis(),
            message_id: None,
            tenant_id: Some(tenant_id.clone()),
            recipient: None,
            detail: mailroom_model::EventDetail::from(mailroom_model::DomainDeletedDetail {
                dkim_keys: i64::try_from(keys).unwrap_or(i64::MAX),
                domain: name.clone(),
                queued_recipients: queued,
            })
            .to_value(),
        };
        super::domains::insert_tenant_event(&mut tx, &event).await?;
        tx.commit().await.map_err(&on)?;
        Ok(Some(DomainDeletion {
            name,
            tenant_id,
            dkim_keys: keys,
            queued_recipients: queued.max(0) as u64,
            event,
        }))
    }

    async fn delete_tenant(
        &self,
        tenant: &TenantId,
        purge: bool,
        now: i64,
    ) -> Result<Option<TenantDeletion>, StoreError> {
        let on = StoreError::on("tenant");
        let mut tx = self.pool().begin().await.map_err(&on)?;
        // The row lock orders this against a concurrent change of the tenant.
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(&on)?;
        let Some((name, removed, mut events)) = tenant_rows(&mut tx, tenant, purge, now).await?
        else {
            return Ok(None);
        };
        let event = tenant_deleted_event(tenant, &name, purge, &removed, now);
        events.push(event.clone());
        super::events::lock_event_order(&mut tx).await?;
        insert_events(&mut tx, &events).await?;
        tx.commit().await.map_err(&on)?;
        Ok(Some(TenantDeletion {
            tenant_id: tenant.clone(),
            name,
            purged: purge,
            removed,
            event,
        }))
    }

    async fn erase_address(
        &self,
        address: &str,
        tenant: Option<&TenantId>,
        now: i64,
    ) -> Result<Erasure, StoreError> {
        let on = StoreError::on("erasure");
        let address = address.trim().to_lowercase();
        let mut tx = self.pool().begin().await.map_err(&on)?;
        let (counts, mut events): (ErasureCounts, Vec<Event>) =
            erase_rows(&mut tx, &address, tenant, now).await?;
        let event = erased_event(&address, tenant, &counts, now);
        events.push(event.clone());
        super::events::lock_event_order(&mut tx).await?;
        insert_events(&mut tx, &events).await?;
        tx.commit().await.map_err(&on)?;
        Ok(Erasure {
            address_sha256: crate::address_sha256(&address),
            redacted: crate::redacted_address(&address),
            tenant_id: tenant.cloned(),
            counts,
            event,
        })
    }
}
