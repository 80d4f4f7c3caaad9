//! `SigningStore` on PostgreSQL: the signature choices of tenants and their domains,
//! one row each (`domain = ''`: tenant-wide). A statement-level trigger moves the
//! directory version, so every node's signer reloads.

use super::PgStore;
use super::rows::{Decoded, all};
use crate::{SigningChoiceRecord, SigningStore, StoreError};
use mailroom_model::{Signatures, TenantId, now_millis};
use sqlx::Row;
use sqlx::postgres::PgRow;

fn choice_from_row(r: &PgRow) -> Decoded<SigningChoiceRecord> {
    let domain: String = r.try_get("domain")?;
    let text: String = r.try_get("signatures")?;
    Ok(SigningChoiceRecord {
        tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
        domain: (!domain.is_empty()).then_some(domain),
        // The CHECK constraint admits only known values; anything else reads as the default.
        signatures: Signatures::parse(&text).unwrap_or_default(),
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl SigningStore for PgStore {
    async fn set_signing_choice(
        &self,
        tenant: &TenantId,
        domain: Option<&str>,
        choice: Option<Signatures>,
    ) -> Result<(), StoreError> {
        let on = StoreError::on("signing choice");
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
            .execute(self.pool())
            .await
            .map_err(on)?,
            None => sqlx::query("DELETE FROM signing_choices WHERE tenant_id = $1 AND domain = $2")
                .bind(tenant.as_str())
                .bind(domain)
                .execute(self.pool())
                .await
                .map_err(on)?,
        };
        Ok(())
    }

    async fn list_signing_choices(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SigningChoiceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, domain, signatures, updated_at FROM signing_choices \
             WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, domain",
        )
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::on("signing choice"))?;
        all(&rows, choice_from_row, "signing choice")
    }
}
