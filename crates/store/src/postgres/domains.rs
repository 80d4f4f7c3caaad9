//! Sending domains (token, verification status, last DNS check, allowed local parts),
//! their DKIM keys and tenant-level events, on PostgreSQL. Sealed secrets are in
//! `secrets.rs`. A DNS check moves the directory version only when the domain's
//! status changes (its time and result alone are not cached by anyone).

use super::PgStore;
use super::rows::{Decoded, all, json_param};
use crate::{
    DkimKeyRecord, DomainCheck, DomainRecord, DomainStatus, DomainStore, KeyState, NewDkimKey,
    NewDomain, SecretUpdate, StoreError, StoredSecret,
};
use mailroom_model::{Event, EventId, EventType, TenantId, now_millis};
use mailroom_secrets::Sealed;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

pub(super) fn domain_from_row(r: &PgRow) -> Decoded<DomainRecord> {
    let status =
        DomainStatus::parse(r.try_get::<&str, _>("status")?).unwrap_or(DomainStatus::Pending);
    let parts: String = r.try_get("allowed_local_parts")?;
    Ok(DomainRecord {
        name: r.try_get("name")?,
        tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
        verified: r.try_get("verified")?,
        created_at: r.try_get("created_at")?,
        status,
        verification_token: r.try_get("verification_token")?,
        last_checked_at: r.try_get("last_checked_at")?,
        last_check: r
            .try_get::<Option<String>, _>("last_check")?
            .and_then(|j| serde_json::from_str(&j).ok()),
        allowed_local_parts: serde_json::from_str(&parts).unwrap_or_default(),
    })
}

fn key_from_row(r: &PgRow) -> Decoded<DkimKeyRecord> {
    Ok(DkimKeyRecord {
        domain: r.try_get("domain")?,
        selector: r.try_get("selector")?,
        algorithm: r.try_get("algorithm")?,
        private_key: Sealed::from_stored(r.try_get("private_key_pem")?),
        state: KeyState::parse(r.try_get::<&str, _>("state")?).unwrap_or(KeyState::Retired),
        created_at: r.try_get("created_at")?,
        activated_at: r.try_get("activated_at")?,
        retire_after: r.try_get("retire_after")?,
    })
}

async fn insert_key(conn: &mut PgConnection, k: &NewDkimKey, now: i64) -> Result<(), StoreError> {
    let activated = k.state.signs().then_some(now);
    sqlx::query(
        "INSERT INTO dkim_keys (domain, selector, algorithm, private_key_pem, state, created_at, \
         activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.domain)
    .bind(&k.selector)
    .bind(&k.algorithm)
    .bind(k.private_key.as_str())
    .bind(k.state.as_str())
    .bind(now)
    .bind(activated)
    .execute(conn)
    .await
    .map_err(StoreError::on("dkim key"))?;
    Ok(())
}

/// Stores a check. The time and result are always written; status and `verified`
/// only when they change, in a second statement (the version trigger is per
/// statement and fires even when no row changes, so an unchanged status must not be
/// in any statement's SET list). The first UPDATE locks the row, so a concurrent
/// check through another node waits and then compares with what this one wrote.
async fn record_check(
    pool: &sqlx::PgPool,
    name: &str,
    c: &DomainCheck,
) -> Result<bool, StoreError> {
    let on = StoreError::on("domain");
    let mut tx = pool.begin().await.map_err(&on)?;
    let row = sqlx::query(
        "UPDATE domains SET last_checked_at = $1, last_check = $2 WHERE name = $3 \
         RETURNING status, verified",
    )
    .bind(c.checked_at)
    .bind(json_param(&c.result))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(&on)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let status: String = row.try_get("status").map_err(&on)?;
    let verified: bool = row.try_get("verified").map_err(&on)?;
    if status != c.status.as_str() || verified != c.status.may_send() {
        sqlx::query("UPDATE domains SET status = $1, verified = $2 WHERE name = $3")
            .bind(c.status.as_str())
            .bind(c.status.may_send())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(&on)?;
    }
    tx.commit().await.map_err(&on)?;
    Ok(true)
}

#[async_trait::async_trait]
impl DomainStore for PgStore {
    async fn add_domain(&self, d: NewDomain) -> Result<DomainRecord, StoreError> {
        let on = StoreError::on("domain");
        let now = now_millis();
        let status = if d.verified {
            DomainStatus::Verified
        } else {
            DomainStatus::Pending
        };
        let mut tx = self.pool().begin().await.map_err(&on)?;
        sqlx::query(
            "INSERT INTO domains (name, tenant_id, verified, created_at, verification_token, \
             status) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.name)
        .bind(d.tenant_id.as_str())
        .bind(d.verified)
        .bind(now)
        .bind(&d.verification_token)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
        for k in &d.dkim_keys {
            insert_key(&mut tx, k, now).await?;
        }
        tx.commit().await.map_err(&on)?;
        Ok(DomainRecord {
            name: d.name,
            tenant_id: d.tenant_id,
            verified: d.verified,
            created_at: now,
            status,
            verification_token: d.verification_token,
            last_checked_at: None,
            last_check: None,
            allowed_local_parts: Vec::new(),
        })
    }

    async fn list_domains(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query("SELECT * FROM domains WHERE tenant_id = $1 ORDER BY name")
                    .bind(t.as_str())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM domains ORDER BY name")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::on("domain"))?;
        all(&rows, domain_from_row, "domain")
    }

    async fn get_domain(&self, name: &str) -> Result<Option<DomainRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM domains WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::on("domain"))?;
        row.as_ref()
            .map(domain_from_row)
            .transpose()
            .map_err(StoreError::on("domain"))
    }

    async fn record_domain_check(&self, name: &str, c: DomainCheck) -> Result<bool, StoreError> {
        record_check(self.pool(), name, &c).await
    }

    async fn set_allowed_local_parts(
        &self,
        name: &str,
        local_parts: &[String],
    ) -> Result<bool, StoreError> {
        let parts: Vec<String> = local_parts.iter().map(|p| p.to_lowercase()).collect();
        let json = serde_json::to_string(&parts).unwrap_or_else(|_| "[]".into());
        let done = sqlx::query("UPDATE domains SET allowed_local_parts = $1 WHERE name = $2")
            .bind(json)
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(StoreError::on("domain"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError> {
        let rows = match domain {
            Some(d) => {
                sqlx::query(
                    "SELECT * FROM dkim_keys WHERE domain = $1 ORDER BY created_at, selector",
                )
                .bind(d)
                .fetch_all(self.pool())
                .await
            }
            None => {
                sqlx::query("SELECT * FROM dkim_keys ORDER BY domain, created_at, selector")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::on("dkim key"))?;
        all(&rows, key_from_row, "dkim key")
    }

    async fn add_dkim_key(&self, k: NewDkimKey) -> Result<DkimKeyRecord, StoreError> {
        let now = now_millis();
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(StoreError::on("dkim key"))?;
        insert_key(&mut conn, &k, now).await?;
        Ok(DkimKeyRecord {
            domain: k.domain,
            selector: k.selector,
            algorithm: k.algorithm,
            private_key: k.private_key,
            state: k.state,
            created_at: now,
            activated_at: k.state.signs().then_some(now),
            retire_after: None,
        })
    }

    async fn set_dkim_key_state(
        &self,
        domain: &str,
        selector: &str,
        state: KeyState,
        at: i64,
        retire_after: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE dkim_keys SET state = $1, \
             activated_at = CASE WHEN $1 = 'active' AND activated_at IS NULL THEN $2 \
             ELSE activated_at END, \
             retire_after = $3 WHERE domain = $4 AND selector = $5",
        )
        .bind(state.as_str())
        .bind(at)
        .bind(retire_after)
        .bind(domain)
        .bind(selector)
        .execute(self.pool())
        .await
        .map_err(StoreError::on("dkim key"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        super::secrets::list(self.pool()).await
    }

    async fn replace_secrets(&self, updates: Vec<SecretUpdate>) -> Result<u64, StoreError> {
        super::secrets::replace(self.pool(), updates).await
    }

    async fn insert_tenant_event(
        &self,
        tenant: &TenantId,
        kind: EventType,
        detail: mailroom_model::EventDetail,
    ) -> Result<Event, StoreError> {
        let on = StoreError::on("event");
        let event = Event {
            id: EventId::generate(),
            kind,
            at: now_millis(),
            message_id: None,
            tenant_id: Some(tenant.clone()),
            recipient: None,
            detail: detail.to_value(),
        };
        let mut tx = self.pool().begin().await.map_err(&on)?;
        insert_tenant_event(&mut tx, &event).await?;
        tx.commit().await.map_err(&on)?;
        Ok(event)
    }

    async fn list_tenant_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE tenant_id = $1 AND message_id IS NULL \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(tenant.as_str())
        .bind(super::rows::sql_limit(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::on("event"))?;
        Ok(rows.iter().filter_map(super::event_from_row).collect())
    }
}

/// Inserts a tenant-level event (no message, no recipient) on an open transaction,
/// taking the event-order lock first (see `events.rs`): call it as the transaction's
/// last write, right before COMMIT.
pub(super) async fn insert_tenant_event(
    conn: &mut PgConnection,
    e: &Event,
) -> Result<(), StoreError> {
    super::events::lock_event_order(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
         VALUES ($1, $2, $3, NULL, $4, NULL, $5)",
    )
    .bind(e.id.as_str())
    .bind(e.kind.as_str())
    .bind(e.at)
    .bind(e.tenant_id.as_ref().map(|t| t.as_str()))
    .bind(json_param(&e.detail))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::on("event"))?;
    Ok(())
}
