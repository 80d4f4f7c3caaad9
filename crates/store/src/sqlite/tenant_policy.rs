//! The suppression list, sandbox recipients, idempotency keys and the per-tenant
//! message counts behind daily quotas. Administrative writes go through the pool
//! (they are rare); the hot-path read is `suppressed_among`, one indexed query per
//! message. Also the backend's `SendPolicyStore` implementation.

use super::{SqliteStore, db};
use crate::{IdempotencyRecord, SendPolicyStore, StoreError, Suppression, SuppressionHint};
use mailroom_model::{MessageId, TenantId, now_millis};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::HashMap;

fn suppression_from_row(r: &sqlx::sqlite::SqliteRow) -> Suppression {
    let detail: String = r.get("detail");
    Suppression {
        tenant_id: TenantId::from_stored(r.get("tenant_id")),
        address: r.get("address"),
        reason: r.get("reason"),
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        message_id: r
            .get::<Option<String>, _>("message_id")
            .map(MessageId::from_stored),
        created_at: r.get("created_at"),
    }
}

pub(super) async fn suppressed_among(
    pool: &SqlitePool,
    tenant: &TenantId,
    addresses: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    let mut found = HashMap::new();
    for chunk in addresses.chunks(500) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT address, reason FROM suppressions WHERE tenant_id = ");
        qb.push_bind(tenant.as_str());
        qb.push(" AND address IN (");
        let mut sep = qb.separated(", ");
        for a in chunk {
            sep.push_bind(a.to_lowercase());
        }
        qb.push(")");
        let rows = qb
            .build()
            .fetch_all(pool)
            .await
            .map_err(db("suppression"))?;
        for r in rows {
            found.insert(r.get("address"), r.get("reason"));
        }
    }
    Ok(found)
}

pub(super) async fn add_suppression(
    pool: &SqlitePool,
    hint: &SuppressionHint,
    s: Suppression,
) -> Result<(Suppression, bool), StoreError> {
    let address = s.address.to_lowercase();
    // The check and the upsert in one write transaction: two concurrent adds of the same
    // address cannot both report it as new.
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db("suppression"))?;
    let existed = sqlx::query("SELECT 1 FROM suppressions WHERE tenant_id = $1 AND address = $2")
        .bind(s.tenant_id.as_str())
        .bind(&address)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("suppression"))?
        .is_some();
    hint.note(s.tenant_id.as_str());
    sqlx::query(
        "INSERT INTO suppressions (tenant_id, address, reason, detail, message_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, address) DO UPDATE SET reason = excluded.reason, \
         detail = excluded.detail, message_id = excluded.message_id, created_at = excluded.created_at",
    )
    .bind(s.tenant_id.as_str())
    .bind(&address)
    .bind(&s.reason)
    .bind(s.detail.to_string())
    .bind(s.message_id.as_ref().map(|m| m.as_str()))
    .bind(s.created_at)
    .execute(&mut *tx)
    .await
    .map_err(db("suppression"))?;
    tx.commit().await.map_err(db("suppression"))?;
    Ok((Suppression { address, ..s }, !existed))
}

pub(super) async fn get_suppression(
    pool: &SqlitePool,
    tenant: &TenantId,
    address: &str,
) -> Result<Option<Suppression>, StoreError> {
    let row = sqlx::query("SELECT * FROM suppressions WHERE tenant_id = $1 AND address = $2")
        .bind(tenant.as_str())
        .bind(address.to_lowercase())
        .fetch_optional(pool)
        .await
        .map_err(db("suppression"))?;
    Ok(row.as_ref().map(suppression_from_row))
}

pub(super) async fn list_suppressions(
    pool: &SqlitePool,
    tenant: &TenantId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Suppression>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM suppressions WHERE tenant_id = $1 AND address > $2 \
         ORDER BY address LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(after.unwrap_or("").to_lowercase())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db("suppression"))?;
    Ok(rows.iter().map(suppression_from_row).collect())
}

pub(super) async fn remove_suppression(
    pool: &SqlitePool,
    tenant: &TenantId,
    address: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2")
        .bind(tenant.as_str())
        .bind(address.to_lowercase())
        .execute(pool)
        .await
        .map_err(db("suppression"))?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn set_sandbox_recipients(
    pool: &SqlitePool,
    tenant: &TenantId,
    addresses: &[String],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db("sandbox recipient"))?;
    sqlx::query("DELETE FROM sandbox_recipients WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("sandbox recipient"))?;
    let now = now_millis();
    for a in addresses {
        sqlx::query(
            "INSERT OR IGNORE INTO sandbox_recipients (tenant_id, address, created_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(tenant.as_str())
        .bind(a.to_lowercase())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("sandbox recipient"))?;
    }
    tx.commit().await.map_err(db("sandbox recipient"))
}

pub(super) async fn sandbox_recipients(
    conn: &mut sqlx::SqliteConnection,
) -> Result<Vec<(TenantId, String)>, StoreError> {
    let rows = sqlx::query("SELECT tenant_id, address FROM sandbox_recipients")
        .fetch_all(conn)
        .await
        .map_err(db("sandbox recipient"))?;
    Ok(rows
        .iter()
        .map(|r| (TenantId::from_stored(r.get("tenant_id")), r.get("address")))
        .collect())
}

pub(super) async fn get_idempotency(
    pool: &SqlitePool,
    tenant: &TenantId,
    key: &str,
    since: i64,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at >= $3",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(since)
    .fetch_optional(pool)
    .await
    .map_err(db("idempotency key"))?;
    Ok(row.map(|r| {
        let response: String = r.get("response");
        IdempotencyRecord {
            key: r.get("key"),
            request_hash: r.get("request_hash"),
            response: serde_json::from_str(&response).unwrap_or(serde_json::Value::Null),
            created_at: r.get("created_at"),
        }
    }))
}

pub(super) async fn prune_idempotency(pool: &SqlitePool, before: i64) -> Result<u64, StoreError> {
    let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(before)
        .execute(pool)
        .await
        .map_err(db("idempotency key"))?;
    Ok(r.rows_affected())
}

pub(super) async fn message_counts_since(
    pool: &SqlitePool,
    since: i64,
) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT tenant_id, received_at / 3600000 AS hour, COUNT(*) AS n FROM messages \
         WHERE received_at >= $1 GROUP BY tenant_id, hour",
    )
    .bind(since)
    .fetch_all(pool)
    .await
    .map_err(db("message"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                TenantId::from_stored(r.get("tenant_id")),
                r.get("hour"),
                r.get("n"),
            )
        })
        .collect())
}

#[async_trait::async_trait]
impl SendPolicyStore for SqliteStore {
    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        suppressed_among(&self.pool, tenant, addresses).await
    }

    fn suppression_noted(&self, tenant: &TenantId) -> bool {
        self.hint.noted(tenant)
    }

    async fn add_suppression(&self, s: Suppression) -> Result<(Suppression, bool), StoreError> {
        add_suppression(&self.pool, &self.hint, s).await
    }

    async fn get_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        get_suppression(&self.pool, tenant, address).await
    }

    async fn list_suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Suppression>, StoreError> {
        list_suppressions(&self.pool, tenant, after, limit).await
    }

    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<bool, StoreError> {
        remove_suppression(&self.pool, tenant, address).await
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        get_idempotency(&self.pool, tenant, key, since).await
    }

    async fn prune_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        prune_idempotency(&self.pool, before).await
    }

    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
        message_counts_since(&self.pool, since).await
    }
}
