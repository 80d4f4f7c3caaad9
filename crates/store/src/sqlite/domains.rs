//! Sending domains (token, verification status, last DNS check, allowed local parts),
//! their DKIM keys and tenant-level events, on SQLite. Administrative and background
//! writes through the pool (they are rare); the hot path never reads these: ingest and
//! policy keep them in memory. Also the backend's `DomainStore` implementation.

use super::{SqliteStore, db, event_from_row};
use crate::{
    DkimKeyRecord, DomainCheck, DomainRecord, DomainStatus, DomainStore, KeyState, NewDkimKey,
    NewDomain, SecretUpdate, StoreError, StoredSecret,
};
use mailroom_model::{Event, EventId, EventType, TenantId, now_millis};
use mailroom_secrets::Sealed;
use sqlx::{Row, SqliteConnection, SqlitePool};

pub(super) fn domain_from_row(r: &sqlx::sqlite::SqliteRow) -> DomainRecord {
    let status = DomainStatus::parse(r.get::<&str, _>("status")).unwrap_or(DomainStatus::Pending);
    let parts: String = r.get("allowed_local_parts");
    DomainRecord {
        name: r.get("name"),
        tenant_id: TenantId::from_stored(r.get("tenant_id")),
        verified: r.get("verified"),
        created_at: r.get("created_at"),
        status,
        verification_token: r.get("verification_token"),
        last_checked_at: r.get("last_checked_at"),
        last_check: r
            .get::<Option<String>, _>("last_check")
            .and_then(|j| serde_json::from_str(&j).ok()),
        allowed_local_parts: serde_json::from_str(&parts).unwrap_or_default(),
    }
}

fn key_from_row(r: &sqlx::sqlite::SqliteRow) -> DkimKeyRecord {
    DkimKeyRecord {
        domain: r.get("domain"),
        selector: r.get("selector"),
        algorithm: r.get("algorithm"),
        private_key: Sealed::from_stored(r.get("private_key_pem")),
        state: KeyState::parse(r.get::<&str, _>("state")).unwrap_or(KeyState::Retired),
        created_at: r.get("created_at"),
        activated_at: r.get("activated_at"),
        retire_after: r.get("retire_after"),
    }
}

pub(super) async fn add_domain(
    pool: &SqlitePool,
    d: NewDomain,
) -> Result<DomainRecord, StoreError> {
    let now = now_millis();
    let status = if d.verified {
        DomainStatus::Verified
    } else {
        DomainStatus::Pending
    };
    let mut tx = pool.begin().await.map_err(db("domain"))?;
    sqlx::query(
        "INSERT INTO domains (name, tenant_id, verified, created_at, verification_token, status) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&d.name)
    .bind(d.tenant_id.as_str())
    .bind(d.verified)
    .bind(now)
    .bind(&d.verification_token)
    .bind(status.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db("domain"))?;
    for k in &d.dkim_keys {
        insert_key(&mut tx, k, now).await?;
    }
    tx.commit().await.map_err(db("domain"))?;
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

async fn insert_key(
    conn: &mut SqliteConnection,
    k: &NewDkimKey,
    now: i64,
) -> Result<(), StoreError> {
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
    .map_err(db("dkim key"))?;
    Ok(())
}

pub(super) async fn get_domain(
    pool: &SqlitePool,
    name: &str,
) -> Result<Option<DomainRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM domains WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(db("domain"))?;
    Ok(row.as_ref().map(domain_from_row))
}

pub(super) async fn record_domain_check(
    pool: &SqlitePool,
    name: &str,
    c: DomainCheck,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE domains SET status = $1, verified = $2, last_checked_at = $3, last_check = $4 \
         WHERE name = $5",
    )
    .bind(c.status.as_str())
    .bind(c.status.may_send())
    .bind(c.checked_at)
    .bind(c.result.to_string())
    .bind(name)
    .execute(pool)
    .await
    .map_err(db("domain"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn set_allowed_local_parts(
    pool: &SqlitePool,
    name: &str,
    parts: &[String],
) -> Result<bool, StoreError> {
    let parts: Vec<String> = parts.iter().map(|p| p.to_lowercase()).collect();
    let json = serde_json::to_string(&parts).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query("UPDATE domains SET allowed_local_parts = $1 WHERE name = $2")
        .bind(json)
        .bind(name)
        .execute(pool)
        .await
        .map_err(db("domain"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list_dkim_keys(
    pool: &SqlitePool,
    domain: Option<&str>,
) -> Result<Vec<DkimKeyRecord>, StoreError> {
    let rows = match domain {
        Some(d) => {
            sqlx::query("SELECT * FROM dkim_keys WHERE domain = $1 ORDER BY created_at, selector")
                .bind(d)
                .fetch_all(pool)
                .await
        }
        None => {
            sqlx::query("SELECT * FROM dkim_keys ORDER BY domain, created_at, selector")
                .fetch_all(pool)
                .await
        }
    }
    .map_err(db("dkim key"))?;
    Ok(rows.iter().map(key_from_row).collect())
}

pub(super) async fn add_dkim_key(
    pool: &SqlitePool,
    k: NewDkimKey,
) -> Result<DkimKeyRecord, StoreError> {
    let now = now_millis();
    let mut conn = pool.acquire().await.map_err(db("dkim key"))?;
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

pub(super) async fn set_dkim_key_state(
    pool: &SqlitePool,
    domain: &str,
    selector: &str,
    state: KeyState,
    at: i64,
    retire_after: Option<i64>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE dkim_keys SET state = $1, \
         activated_at = CASE WHEN $1 = 'active' AND activated_at IS NULL THEN $2 ELSE activated_at END, \
         retire_after = $3 WHERE domain = $4 AND selector = $5",
    )
    .bind(state.as_str())
    .bind(at)
    .bind(retire_after)
    .bind(domain)
    .bind(selector)
    .execute(pool)
    .await
    .map_err(db("dkim key"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list_tenant_events(
    pool: &SqlitePool,
    tenant: &TenantId,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM events WHERE tenant_id = $1 AND message_id IS NULL \
         ORDER BY seq DESC LIMIT $2",
    )
    .bind(tenant.as_str())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db("event"))?;
    Ok(rows.iter().filter_map(event_from_row).collect())
}

#[async_trait::async_trait]
impl DomainStore for SqliteStore {
    async fn add_domain(&self, d: NewDomain) -> Result<DomainRecord, StoreError> {
        add_domain(&self.pool, d).await
    }

    async fn list_domains(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query("SELECT * FROM domains WHERE tenant_id = $1 ORDER BY name")
                    .bind(t.as_str())
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM domains ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db("domain"))?;
        Ok(rows.iter().map(domain_from_row).collect())
    }

    async fn get_domain(&self, name: &str) -> Result<Option<DomainRecord>, StoreError> {
        get_domain(&self.pool, name).await
    }

    async fn record_domain_check(
        &self,
        name: &str,
        check: DomainCheck,
    ) -> Result<bool, StoreError> {
        record_domain_check(&self.pool, name, check).await
    }

    async fn set_allowed_local_parts(
        &self,
        name: &str,
        local_parts: &[String],
    ) -> Result<bool, StoreError> {
        set_allowed_local_parts(&self.pool, name, local_parts).await
    }

    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError> {
        list_dkim_keys(&self.pool, domain).await
    }

    async fn add_dkim_key(&self, key: NewDkimKey) -> Result<DkimKeyRecord, StoreError> {
        add_dkim_key(&self.pool, key).await
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        super::secrets::list(&self.pool).await
    }

    async fn replace_secrets(&self, updates: Vec<SecretUpdate>) -> Result<u64, StoreError> {
        super::secrets::replace(&self.pool, updates).await
    }

    async fn set_dkim_key_state(
        &self,
        domain: &str,
        selector: &str,
        state: KeyState,
        at: i64,
        retire_after: Option<i64>,
    ) -> Result<bool, StoreError> {
        set_dkim_key_state(&self.pool, domain, selector, state, at, retire_after).await
    }

    async fn insert_tenant_event(
        &self,
        tenant: &TenantId,
        kind: EventType,
        detail: mailroom_model::EventDetail,
    ) -> Result<Event, StoreError> {
        // Through the writer task like every other event, so the stream's seq order
        // stays commit order (see sqlite/events.rs).
        let event = Event {
            id: EventId::generate(),
            kind,
            at: now_millis(),
            message_id: None,
            tenant_id: Some(tenant.clone()),
            recipient: None,
            detail: detail.to_value(),
        };
        self.content_op(super::tracking::ContentOp::TenantEvent(event.clone()))
            .await?;
        Ok(event)
    }

    async fn list_tenant_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        list_tenant_events(&self.pool, tenant, limit).await
    }
}
