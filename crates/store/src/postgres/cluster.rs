//! Node rows (heartbeats, with the leases each holds), singleton roles (a leased row per
//! job: taken when free or expired, kept by its owner) and the directory version that
//! triggers bump in the same transaction as each change to cached tables.

use super::{PgStore, db};
use crate::*;
use sqlx::Row;

#[async_trait::async_trait]
impl ClusterStore for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("database"))?;
        self.health.check()
    }

    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (id, started_at, last_seen, version, detail) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, \
               last_seen = excluded.last_seen, version = excluded.version, \
               detail = excluded.detail",
        )
        .bind(&node.id)
        .bind(node.started_at)
        .bind(node.last_seen)
        .bind(&node.version)
        .bind(node.detail.to_string())
        .execute(&self.pool)
        .await
        .map_err(db("node"))?;
        Ok(())
    }

    async fn list_nodes(&self, now: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.started_at, n.last_seen, n.version, n.detail, \
               (SELECT COUNT(*) FROM recipients r WHERE r.lease_owner = n.id \
                  AND r.lease_until > $1 AND r.state IN ('queued', 'deferred')) AS leased \
             FROM nodes n ORDER BY n.id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db("node"))?;
        Ok(rows
            .iter()
            .map(|r| NodeRecord {
                id: r.get("id"),
                started_at: r.get("started_at"),
                last_seen: r.get("last_seen"),
                version: r.get("version"),
                detail: serde_json::from_str(r.get::<&str, _>("detail"))
                    .unwrap_or(serde_json::Value::Null),
                leased_recipients: r.get("leased"),
            })
            .collect())
    }

    async fn try_singleton(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        // The upsert locks the row: of two nodes racing for a free role, one inserts
        // or updates, the other re-checks the condition against the new row and fails.
        let r = sqlx::query(
            "INSERT INTO singletons (name, owner, until) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE singletons.owner = excluded.owner OR singletons.until < $3",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(db("singleton"))?;
        Ok(r.rows_affected() == 1)
    }

    async fn directory_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT version FROM directory_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("directory"))
    }
}
