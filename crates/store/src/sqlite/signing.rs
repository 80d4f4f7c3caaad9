//! `SigningStore` on SQLite: the signature choices of tenants and their domains, one
//! row each (`domain = ''`: tenant-wide). Administrative writes through the pool;
//! ingest keeps the choices in memory.

use super::{SqliteStore, db};
use crate::{SigningChoiceRecord, SigningStore, StoreError};
use mailroom_model::{Signatures, TenantId, now_millis};
use sqlx::Row;

#[async_trait::async_trait]
impl SigningStore for SqliteStore {
    async fn set_signing_choice(
        &self,
        tenant: &TenantId,
        domain: Option<&str>,
        choice: Option<Signatures>,
    ) -> Result<(), StoreError> {
        let domain = domain.unwrap_or("");
        match choice {
            Some(c) => sqlx::query(
                "INSERT INTO signing_choices (tenant_id, domain, signatures, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, domain) DO UPDATE SET \
                 signatures = excluded.signatures, updated_at = excluded.updated_at",
            )
            .bind(tenant.as_str())
            .bind(domain)
            .bind(c.as_str())
            .bind(now_millis())
            .execute(&self.pool)
            .await
            .map_err(db("signing choice"))?,
            None => sqlx::query("DELETE FROM signing_choices WHERE tenant_id = $1 AND domain = $2")
                .bind(tenant.as_str())
                .bind(domain)
                .execute(&self.pool)
                .await
                .map_err(db("signing choice"))?,
        };
        Ok(())
    }

    async fn list_signing_choices(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SigningChoiceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, domain, signatures, updated_at FROM signing_choices \
             WHERE $1 IS NULL OR tenant_id = $1 ORDER BY tenant_id, domain",
        )
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(db("signing choice"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let domain: String = r.get("domain");
                Some(SigningChoiceRecord {
                    tenant_id: TenantId::from_stored(r.get("tenant_id")),
                    domain: (!domain.is_empty()).then_some(domain),
                    // The CHECK constraint admits only known values.
                    signatures: Signatures::parse(r.get::<&str, _>("signatures"))?,
                    updated_at: r.get("updated_at"),
                })
            })
            .collect())
    }
}
