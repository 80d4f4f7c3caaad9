//! Per-send lookups on PostgreSQL: the suppression list (case-insensitive: addresses
//! are stored and looked up lowercased), idempotency keys and the per-tenant message
//! counts behind daily quotas. The idempotency row itself is written by the message
//! writer in the message's transaction (see `NewMessage::idempotency`); here it is only
//! read and pruned.

use super::PgStore;
use super::rows::all;
use crate::{IdempotencyRecord, SendPolicyStore, StoreError, Suppression};
use mailroom_model::{MessageId, TenantId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::collections::HashMap;

pub(super) fn suppression_from_row(r: &PgRow) -> Result<Suppression, sqlx::Error> {
    Ok(Suppression {
        tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
        address: r.try_get("address")?,
        reason: r.try_get("reason")?,
        detail: super::rows::json_column(r, "detail")?,
        message_id: r
            .try_get::<Option<String>, _>("message_id")?
            .map(MessageId::from_stored),
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait::async_trait]
impl SendPolicyStore for PgStore {
    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        if addresses.is_empty() {
            return Ok(HashMap::new());
        }
        let lowered: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
        // One indexed lookup per address, however many: an array, not a statement
        // with a placeholder per address.
        let rows = sqlx::query(
            "SELECT address, reason FROM suppressions \
             WHERE tenant_id = $1 AND address = ANY($2::text[])",
        )
        .bind(tenant.as_str())
        .bind(&lowered)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::on("suppression"))?;
        let pairs = all(
            &rows,
            |r| Ok((r.try_get("address")?, r.try_get("reason")?)),
            "suppression",
        )?;
        Ok(pairs.into_iter().collect())
    }

    fn suppression_noted(&self, tenant: &TenantId) -> bool {
        self.hint.noted(tenant)
    }

    async fn add_suppression(&self, s: Suppression) -> Result<(Suppression, bool), StoreError> {
        let address = s.address.to_lowercase();
        // `xmax = 0` only on a row this statement inserted: whether it was new comes
        // from the same statement, so two nodes adding the same address at once
        // report "new" once.
        self.hint.note(s.tenant_id.as_str());
        let row = sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, detail, message_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, address) DO UPDATE SET reason = excluded.reason, \
             detail = excluded.detail, message_id = excluded.message_id, \
             created_at = excluded.created_at \
             RETURNING (xmax = 0) AS inserted",
        )
        .bind(s.tenant_id.as_str())
        .bind(&address)
        .bind(&s.reason)
        .bind(super::rows::json_param(&s.detail))
        .bind(s.message_id.as_ref().map(|m| m.as_str()))
        .bind(s.created_at)
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::on("suppression"))?;
        let inserted: bool = row
            .try_get("inserted")
            .map_err(StoreError::on("suppression"))?;
        Ok((Suppression { address, ..s }, inserted))
    }

    async fn get_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let row = sqlx::query("SELECT * FROM suppressions WHERE tenant_id = $1 AND address = $2")
            .bind(tenant.as_str())
            .bind(address.to_lowercase())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::on("suppression"))?;
        row.as_ref()
            .map(suppression_from_row)
            .transpose()
            .map_err(StoreError::on("suppression"))
    }

    async fn list_suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Suppression>, StoreError> {
        // Keyset paging in code-point order, as SQLite's BINARY, whatever the
        // database's collation (migration 0002 gives the column "C"), so pages
        // neither overlap nor skip and both backends list in the same order.
        let rows = sqlx::query(
            "SELECT * FROM suppressions WHERE tenant_id = $1 AND address > $2 \
             ORDER BY address LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after.unwrap_or("").to_lowercase())
        .bind(super::rows::sql_limit(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::on("suppression"))?;
        all(&rows, suppression_from_row, "suppression")
    }

    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2")
            .bind(tenant.as_str())
            .bind(address.to_lowercase())
            .execute(self.pool())
            .await
            .map_err(StoreError::on("suppression"))?;
        Ok(r.rows_affected() > 0)
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT key, request_hash, response, created_at FROM idempotency_keys \
             WHERE tenant_id = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(tenant.as_str())
        .bind(key)
        .bind(since)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::on("idempotency key"))?;
        row.map(|r| {
            Ok(IdempotencyRecord {
                key: r.try_get("key")?,
                request_hash: r.try_get("request_hash")?,
                response: super::rows::json_column(&r, "response")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
        .map_err(StoreError::on("idempotency key"))
    }

    async fn prune_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(StoreError::on("idempotency key"))?;
        Ok(r.rows_affected())
    }

    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
        // Integer division, as on SQLite: the hour a message was received in.
        let rows = sqlx::query(
            "SELECT tenant_id, received_at / 3600000 AS hour, COUNT(*) AS n FROM messages \
             WHERE received_at >= $1 GROUP BY tenant_id, hour",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::on("message"))?;
        all(
            &rows,
            |r| {
                Ok((
                    TenantId::from_stored(r.try_get("tenant_id")?),
                    r.try_get("hour")?,
                    r.try_get("n")?,
                ))
            },
            "message",
        )
    }
}
