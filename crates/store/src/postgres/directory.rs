//! The directory on PostgreSQL: tenants, SMTP credentials, IP allowlists, sandbox
//! recipients and the snapshot the policy layer caches (`load_directory`, read from
//! one snapshot). API keys and the operator token are in `keys.rs`. Every write here
//! moves the directory version (triggers on the tables), so other nodes reload.

use super::PgStore;
use super::keys;
use super::rows::{Decoded, all};
use crate::*;
use mailroom_model::{CredentialId, TenantId, TenantStatus, now_millis};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

pub(super) fn tenant_from_row(r: &PgRow) -> Decoded<TenantRecord> {
    Ok(TenantRecord {
        id: TenantId::from_stored(r.try_get("id")?),
        name: r.try_get("name")?,
        api_key_hash: r.try_get("api_key_hash")?,
        created_at: r.try_get("created_at")?,
        bounce_reports: r.try_get("bounce_reports")?,
        // An unknown status can only come from a hand-edited row: the safe reading.
        status: TenantStatus::parse(r.try_get::<&str, _>("status")?)
            .unwrap_or(TenantStatus::Suspended),
        sandbox: r.try_get("sandbox")?,
        reject_suppressed: r.try_get("reject_suppressed")?,
        limits: TenantLimits {
            messages_per_second: r.try_get("messages_per_second")?,
            messages_per_day: r.try_get("messages_per_day")?,
            max_recipients: r.try_get("max_recipients")?,
            max_message_size: r.try_get("max_message_size")?,
        },
        arc_sealing: r.try_get("arc_sealing")?,
        track_opens: r.try_get("track_opens")?,
        track_clicks: r.try_get("track_clicks")?,
        list_unsubscribe: r.try_get("list_unsubscribe")?,
        content_score_threshold: r.try_get("content_score_threshold")?,
        has_suppressions: r.try_get("has_suppressions")?,
    })
}

fn credential_from_row(r: &PgRow) -> Decoded<CredentialRecord> {
    Ok(CredentialRecord {
        id: CredentialId::from_stored(r.try_get("id")?),
        tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
        username: r.try_get("username")?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
    })
}

fn allowed_from_row(r: &PgRow) -> Decoded<AllowedIp> {
    Ok(AllowedIp {
        tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
        cidr: r.try_get("cidr")?,
        require_tls: r.try_get("require_tls")?,
    })
}

/// Changes only the settings given, in one statement that returns the row after the
/// change. Booleans and the status are `COALESCE`d; a limit has a "given" flag, so
/// `Some(None)` (back to the server default) writes NULL.
const UPDATE_TENANT: &str = "UPDATE tenants SET \
     arc_sealing = COALESCE($2, arc_sealing), \
     bounce_reports = COALESCE($3, bounce_reports), \
     sandbox = COALESCE($4, sandbox), \
     reject_suppressed = COALESCE($5, reject_suppressed), \
     track_opens = COALESCE($6, track_opens), \
     track_clicks = COALESCE($7, track_clicks), \
     list_unsubscribe = COALESCE($8, list_unsubscribe), \
     status = COALESCE($9, status), \
     messages_per_second = CASE WHEN $10 THEN $11 ELSE messages_per_second END, \
     messages_per_day = CASE WHEN $12 THEN $13 ELSE messages_per_day END, \
     max_recipients = CASE WHEN $14 THEN $15 ELSE max_recipients END, \
     max_message_size = CASE WHEN $16 THEN $17 ELSE max_message_size END, \
     content_score_threshold = CASE WHEN $18 THEN $19 ELSE content_score_threshold END \
     WHERE id = $1 RETURNING *";

fn changes_nothing(s: &TenantSettings) -> bool {
    s.arc_sealing.is_none()
        && s.bounce_reports.is_none()
        && s.sandbox.is_none()
        && s.reject_suppressed.is_none()
        && s.track_opens.is_none()
        && s.track_clicks.is_none()
        && s.list_unsubscribe.is_none()
        && s.status.is_none()
        && s.messages_per_second.is_none()
        && s.messages_per_day.is_none()
        && s.max_recipients.is_none()
        && s.max_message_size.is_none()
        && s.content_score_threshold.is_none()
}

pub(super) async fn sandbox_recipients(
    conn: &mut PgConnection,
) -> Result<Vec<(TenantId, String)>, StoreError> {
    let rows = sqlx::query("SELECT tenant_id, address FROM sandbox_recipients")
        .fetch_all(conn)
        .await
        .map_err(StoreError::on("sandbox recipient"))?;
    all(
        &rows,
        |r| {
            Ok((
                TenantId::from_stored(r.try_get("tenant_id")?),
                r.try_get("address")?,
            ))
        },
        "sandbox recipient",
    )
}

/// Serialises whole-list replacements of one tenant (allowlist, sandbox list) across
/// nodes: without it two replacements at once interleave their DELETE and INSERT
/// (READ COMMITTED) and end as a mix of both lists, or a duplicate-key conflict. The
/// tenant row's lock does not block foreign-key checks (`NO KEY`).
async fn lock_tenant(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), StoreError> {
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
        .bind(tenant.as_str())
        .fetch_optional(conn)
        .await
        .map_err(StoreError::on("tenant"))?;
    Ok(())
}

#[async_trait::async_trait]
impl DirectoryStore for PgStore {
    async fn create_tenant(&self, t: NewTenant) -> Result<TenantRecord, StoreError> {
        let now = now_millis();
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::on("tenant"))?;
        let row = sqlx::query(
            "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING *",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(&t.api_key_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::on("tenant"))?;
        // The key issued at creation is the tenant's first named key, "default", full.
        let first = NewApiKey {
            id: mailroom_model::ApiKeyId::generate(),
            tenant_id: t.id.clone(),
            name: "default".into(),
            scope: mailroom_model::KeyScope::Full,
            secret_hash: t.api_key_hash.clone(),
        };
        keys::insert(&mut tx, &first, now).await?;
        tx.commit().await.map_err(StoreError::on("tenant"))?;
        tenant_from_row(&row).map_err(StoreError::on("tenant"))
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::on("tenant"))?;
        all(&rows, tenant_from_row, "tenant")
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::on("tenant"))?;
        row.as_ref()
            .map(tenant_from_row)
            .transpose()
            .map_err(StoreError::on("tenant"))
    }

    async fn update_tenant(
        &self,
        id: &TenantId,
        s: TenantSettings,
    ) -> Result<Option<TenantRecord>, StoreError> {
        if changes_nothing(&s) {
            // No write, so the directory version does not move for nothing.
            return self.get_tenant(id).await;
        }
        let row = sqlx::query(UPDATE_TENANT)
            .bind(id.as_str())
            .bind(s.arc_sealing)
            .bind(s.bounce_reports)
            .bind(s.sandbox)
            .bind(s.reject_suppressed)
            .bind(s.track_opens)
            .bind(s.track_clicks)
            .bind(s.list_unsubscribe)
            .bind(s.status.map(|v| v.as_str()))
            .bind(s.messages_per_second.is_some())
            .bind(s.messages_per_second.flatten())
            .bind(s.messages_per_day.is_some())
            .bind(s.messages_per_day.flatten())
            .bind(s.max_recipients.is_some())
            .bind(s.max_recipients.flatten())
            .bind(s.max_message_size.is_some())
            .bind(s.max_message_size.flatten())
            .bind(s.content_score_threshold.is_some())
            .bind(s.content_score_threshold.flatten())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::on("tenant"))?;
        row.as_ref()
            .map(tenant_from_row)
            .transpose()
            .map_err(StoreError::on("tenant"))
    }

    async fn create_credential(&self, c: NewCredential) -> Result<CredentialRecord, StoreError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO smtp_credentials (id, tenant_id, username, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(&c.username)
        .bind(&c.password_hash)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(StoreError::on("credential"))?;
        Ok(CredentialRecord {
            id: c.id,
            tenant_id: c.tenant_id,
            username: c.username,
            password_hash: c.password_hash,
            created_at: now,
        })
    }

    async fn list_credentials(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM smtp_credentials WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant.as_str())
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::on("credential"))?;
        all(&rows, credential_from_row, "credential")
    }

    async fn revoke_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM smtp_credentials WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(self.pool())
            .await
            .map_err(StoreError::on("credential"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_allowed_ips(
        &self,
        tenant: &TenantId,
        entries: &[AllowedIp],
    ) -> Result<(), StoreError> {
        let on = StoreError::on("allowed ip");
        let mut tx = self.pool().begin().await.map_err(&on)?;
        lock_tenant(&mut tx, tenant).await?;
        sqlx::query("DELETE FROM allowed_ips WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(&on)?;
        let cidrs: Vec<&str> = entries.iter().map(|e| e.cidr.as_str()).collect();
        let tls: Vec<bool> = entries.iter().map(|e| e.require_tls).collect();
        // One statement for the whole list; a CIDR given twice is a conflict, as on
        // SQLite, and nothing changes.
        sqlx::query(
            "INSERT INTO allowed_ips (tenant_id, cidr, require_tls) \
             SELECT $1, c, t FROM UNNEST($2::text[], $3::bool[]) AS u(c, t)",
        )
        .bind(tenant.as_str())
        .bind(&cidrs)
        .bind(&tls)
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
        tx.commit().await.map_err(&on)
    }

    async fn list_allowed_ips(&self, tenant: &TenantId) -> Result<Vec<AllowedIp>, StoreError> {
        let rows = sqlx::query("SELECT * FROM allowed_ips WHERE tenant_id = $1 ORDER BY cidr")
            .bind(tenant.as_str())
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::on("allowed ip"))?;
        all(&rows, allowed_from_row, "allowed ip")
    }

    async fn set_sandbox_recipients(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<(), StoreError> {
        let on = StoreError::on("sandbox recipient");
        let lowered: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
        let mut tx = self.pool().begin().await.map_err(&on)?;
        lock_tenant(&mut tx, tenant).await?;
        sqlx::query("DELETE FROM sandbox_recipients WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(&on)?;
        sqlx::query(
            "INSERT INTO sandbox_recipients (tenant_id, address, created_at) \
             SELECT $1, a, $3 FROM UNNEST($2::text[]) AS u(a) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&lowered)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
        tx.commit().await.map_err(&on)
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        keys::create(self.pool(), key).await
    }

    async fn list_api_keys(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        keys::list(self.pool(), tenant).await
    }

    async fn get_api_key(
        &self,
        id: &mailroom_model::ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::get(self.pool(), id).await
    }

    async fn revoke_api_key(&self, id: &mailroom_model::ApiKeyId) -> Result<bool, StoreError> {
        keys::revoke(self.pool(), id).await
    }

    async fn rotate_api_key(
        &self,
        id: &mailroom_model::ApiKeyId,
        secret_hash: &str,
        old_expires_at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::rotate(self.pool(), id, secret_hash, old_expires_at).await
    }

    async fn record_api_key_use(
        &self,
        uses: Vec<(mailroom_model::ApiKeyId, i64)>,
    ) -> Result<(), StoreError> {
        keys::record_use(self.pool(), &uses).await
    }

    async fn operator_token_hash(&self) -> Result<Option<String>, StoreError> {
        keys::operator_token_hash(self.pool()).await
    }

    async fn set_operator_token_hash(&self, hash: &str) -> Result<(), StoreError> {
        keys::set_operator_token_hash(self.pool(), hash).await
    }

    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        // One snapshot for every table, so a credential never appears without its
        // tenant, nor a secret without its key.
        let on = StoreError::on("directory");
        let mut tx = self
            .pool()
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(&on)?;
        let tenants = sqlx::query("SELECT * FROM tenants")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::on("tenant"))?;
        let credentials = sqlx::query("SELECT * FROM smtp_credentials")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::on("credential"))?;
        let allowed = sqlx::query("SELECT * FROM allowed_ips")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::on("allowed ip"))?;
        let domains = sqlx::query("SELECT * FROM domains")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::on("domain"))?;
        let sandbox_recipients = sandbox_recipients(&mut tx).await?;
        let (api_keys, api_key_secrets) = keys::live_secrets(&mut tx).await?;
        tx.commit().await.map_err(&on)?;
        Ok(DirectorySnapshot {
            tenants: all(&tenants, tenant_from_row, "tenant")?,
            credentials: all(&credentials, credential_from_row, "credential")?,
            allowed_ips: all(&allowed, allowed_from_row, "allowed ip")?,
            domains: all(&domains, super::domains::domain_from_row, "domain")?,
            sandbox_recipients,
            api_keys,
            api_key_secrets,
        })
    }
}
