//! Deletions on SQLite (`DeletionStore`): the rows and their event are written by the
//! writer task in one transaction (`tracking::ContentOp::DeleteDomain`, `Op::Deletion`),
//! like every other event, so the event stream's order stays commit order. Tenant
//! deletion and erasure share their SQL with PostgreSQL (`deletion_sql.rs`).

use super::tracking::ContentOp;
use super::{SqliteStore, db};
use crate::{
    DeletionStore, DomainDeletion, Erasure, ErasureCounts, StoreError, TenantDeletion,
    TenantRemoved,
};
use mailroom_model::{Event, EventId, EventType, MessageId, TenantId, now_millis};
use sqlx::{Row, SqliteConnection, SqlitePool};

deletion_sql!(SqliteConnection);

/// A tenant deletion or an erasure, run by the writer task.
pub(crate) enum DeletionOp {
    Tenant {
        tenant: TenantId,
        purge: bool,
        now: i64,
    },
    Erase {
        address: String,
        tenant: Option<TenantId>,
        now: i64,
    },
}

pub(crate) enum DeletionDone {
    Tenant(Option<TenantDeletion>),
    Erased(Erasure),
}

/// Runs `op` inside the writer's transaction.
pub(crate) async fn execute(
    conn: &mut SqliteConnection,
    op: &DeletionOp,
) -> Result<DeletionDone, StoreError> {
    match op {
        DeletionOp::Tenant { tenant, purge, now } => {
            let Some((name, removed, mut events)) = tenant_rows(conn, tenant, *purge, *now).await?
            else {
                return Ok(DeletionDone::Tenant(None));
            };
            let event = tenant_deleted_event(tenant, &name, *purge, &removed, *now);
            events.push(event.clone());
            insert_events(conn, &events).await?;
            Ok(DeletionDone::Tenant(Some(TenantDeletion {
                tenant_id: tenant.clone(),
                name,
                purged: *purge,
                removed,
                event,
            })))
        }
        DeletionOp::Erase {
            address,
            tenant,
            now,
        } => {
            // Freed cells and pages are zeroed, so the old text does not linger in the
            // file's free space (the WAL is truncated after the commit).
            set_secure_delete(conn, true).await?;
            let result = erase_in(conn, address, tenant.as_ref(), *now).await;
            set_secure_delete(conn, false).await?;
            result.map(DeletionDone::Erased)
        }
    }
}

async fn set_secure_delete(conn: &mut SqliteConnection, on: bool) -> Result<(), StoreError> {
    sqlx::query(if on {
        "PRAGMA secure_delete = ON"
    } else {
        "PRAGMA secure_delete = OFF"
    })
    .execute(&mut *conn)
    .await
    .map_err(db("erasure"))?;
    Ok(())
}

async fn erase_in(
    conn: &mut SqliteConnection,
    address: &str,
    tenant: Option<&TenantId>,
    now: i64,
) -> Result<Erasure, StoreError> {
    let (counts, mut events): (ErasureCounts, Vec<Event>) =
        erase_rows(conn, address, tenant, now).await?;
    let event = erased_event(address, tenant, &counts, now);
    events.push(event.clone());
    insert_events(conn, &events).await?;
    Ok(Erasure {
        address_sha256: crate::address_sha256(address),
        redacted: crate::redacted_address(address),
        tenant_id: tenant.cloned(),
        counts,
        event,
    })
}

impl SqliteStore {
    async fn deletion_op(&self, op: DeletionOp) -> Result<DeletionDone, StoreError> {
        self.op(|done| super::ops::Op::Deletion { op, done }).await
    }

    /// Copies the WAL into the database and truncates it (after an erasure: older
    /// frames still hold the erased text). Readers holding an old snapshot can keep
    /// it from completing: retried a few times, then left to the next checkpoint.
    async fn truncate_wal(&self) -> Result<(), StoreError> {
        for _ in 0..20 {
            let busy: i64 = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(self.pool())
                .await
                .map_err(db("checkpoint"))?
                .get(0);
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!("WAL checkpoint after an erasure stayed busy; the next one truncates it");
        Ok(())
    }
}

/// Recipients of `tenant`'s messages sent from `@domain` still waiting for delivery.
pub(super) const QUEUED_FROM_DOMAIN: &str = "SELECT COUNT(*) FROM recipients r \
     JOIN messages m ON m.id = r.message_id \
     WHERE m.tenant_id = $1 AND r.state IN ('queued', 'deferred') \
     AND lower(substr(m.mail_from, length(m.mail_from) - length($2) + 1)) = $2";

async fn counts(pool: &SqlitePool, tenant: &str, name: &str) -> Result<(i64, i64), StoreError> {
    let on = super::db("domain");
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dkim_keys WHERE domain = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(&on)?;
    let queued: i64 = sqlx::query_scalar(QUEUED_FROM_DOMAIN)
        .bind(tenant)
        .bind(format!("@{name}"))
        .fetch_one(pool)
        .await
        .map_err(&on)?;
    Ok((keys, queued))
}

#[async_trait::async_trait]
impl DeletionStore for SqliteStore {
    async fn delete_domain(&self, name: &str) -> Result<Option<DomainDeletion>, StoreError> {
        let name = name.to_ascii_lowercase();
        let Some(domain) = super::domains::get_domain(self.pool(), &name).await? else {
            return Ok(None);
        };
        // One writer: nothing adds a key between this count and the deletion but an
        // administrative call racing it, and the event then says one key less.
        let (keys, queued) = counts(self.pool(), domain.tenant_id.as_str(), &name).await?;
        let event = Event {
            id: EventId::generate(),
            kind: EventType::DomainDeleted,
            at: now_millis(),
            message_id: None,
            tenant_id: Some(domain.tenant_id.clone()),
            recipient: None,
            detail: mailroom_model::EventDetail::from(mailroom_model::DomainDeletedDetail {
                dkim_keys: keys,
                domain: name.clone(),
                queued_recipients: queued,
            })
            .to_value(),
        };
        let deleted = self
            .content_op(ContentOp::DeleteDomain {
                name: name.clone(),
                event: event.clone(),
            })
            .await?;
        Ok((deleted > 0).then(|| DomainDeletion {
            name,
            tenant_id: domain.tenant_id,
            dkim_keys: keys.max(0) as u64,
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
        let op = DeletionOp::Tenant {
            tenant: tenant.clone(),
            purge,
            now,
        };
        match self.deletion_op(op).await? {
            DeletionDone::Tenant(t) => Ok(t),
            DeletionDone::Erased(_) => Err(StoreError::Database("tenant deletion erased".into())),
        }
    }

    async fn erase_address(
        &self,
        address: &str,
        tenant: Option<&TenantId>,
        now: i64,
    ) -> Result<Erasure, StoreError> {
        let op = DeletionOp::Erase {
            address: address.trim().to_lowercase(),
            tenant: tenant.cloned(),
            now,
        };
        let erased = match self.deletion_op(op).await? {
            DeletionDone::Erased(e) => e,
            DeletionDone::Tenant(_) => {
                return Err(StoreError::Database("erasure deleted a tenant".into()));
            }
        };
        // Pages freed earlier (before `secure_delete` zeroed them) may still hold the
        // text: give every free page back, then drop the WAL's old frames.
        super::space::reclaim(self.pool(), 1).await?;
        self.truncate_wal().await?;
        Ok(erased)
    }
}
