//! `DirectoryStore` on SQLite: tenants and their settings, SMTP credentials, IP
//! allowlists, sandbox recipients, named API keys and the operator token, and the
//! snapshot the policy layer caches (`load_directory`).

use super::*;

#[async_trait::async_trait]
impl DirectoryStore for SqliteStore {
    async fn create_tenant(&self, t: NewTenant) -> Result<TenantRecord, StoreError> {
        let now = now_millis();
        let mut tx = self.pool.begin().await.map_err(db("tenant"))?;
        sqlx::query(
            "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(&t.api_key_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("tenant"))?;
        // The key issued at creation is the tenant's first named key, "default", full.
        let first = NewApiKey {
            id: mailroom_model::ApiKeyId::generate(),
            tenant_id: t.id.clone(),
            name: "default".into(),
            scope: mailroom_model::KeyScope::Full,
            secret_hash: t.api_key_hash.clone(),
        };
        keys::insert(&mut tx, &first, now).await?;
        tx.commit().await.map_err(db("tenant"))?;
        Ok(TenantRecord {
            id: t.id,
            name: t.name,
            api_key_hash: t.api_key_hash,
            created_at: now,
            bounce_reports: true,
            status: TenantStatus::Active,
            sandbox: false,
            reject_suppressed: false,
            limits: TenantLimits::default(),
            arc_sealing: true,
            track_opens: false,
            track_clicks: false,
            list_unsubscribe: false,
            content_score_threshold: None,
            has_suppressions: false,
        })
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("tenant"))?;
        Ok(rows.iter().map(tenant_from_row).collect())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("tenant"))?;
        Ok(row.as_ref().map(tenant_from_row))
    }

    async fn update_tenant(
        &self,
        id: &TenantId,
        settings: TenantSettings,
    ) -> Result<Option<TenantRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("tenant"))?;
        // One statement per setting given, all in one transaction; the column names
        // are constants, only values are bound.
        enum Val {
            Flag(bool),
            Text(&'static str),
            Real(Option<f64>),
            Int(Option<i64>),
        }
        let s = &settings;
        let flag = |v: Option<bool>| v.map(Val::Flag);
        let int = |v: Option<Option<i64>>| v.map(Val::Int);
        let changes: [(&'static str, Option<Val>); 13] = [
            (
                "UPDATE tenants SET arc_sealing = $1 WHERE id = $2",
                flag(s.arc_sealing),
            ),
            (
                "UPDATE tenants SET bounce_reports = $1 WHERE id = $2",
                flag(s.bounce_reports),
            ),
            (
                "UPDATE tenants SET sandbox = $1 WHERE id = $2",
                flag(s.sandbox),
            ),
            (
                "UPDATE tenants SET reject_suppressed = $1 WHERE id = $2",
                flag(s.reject_suppressed),
            ),
            (
                "UPDATE tenants SET track_opens = $1 WHERE id = $2",
                flag(s.track_opens),
            ),
            (
                "UPDATE tenants SET track_clicks = $1 WHERE id = $2",
                flag(s.track_clicks),
            ),
            (
                "UPDATE tenants SET list_unsubscribe = $1 WHERE id = $2",
                flag(s.list_unsubscribe),
            ),
            (
                "UPDATE tenants SET status = $1 WHERE id = $2",
                s.status.map(|v| Val::Text(v.as_str())),
            ),
            (
                "UPDATE tenants SET messages_per_second = $1 WHERE id = $2",
                s.messages_per_second.map(Val::Real),
            ),
            (
                "UPDATE tenants SET messages_per_day = $1 WHERE id = $2",
                int(s.messages_per_day),
            ),
            (
                "UPDATE tenants SET max_recipients = $1 WHERE id = $2",
                int(s.max_recipients),
            ),
            (
                "UPDATE tenants SET max_message_size = $1 WHERE id = $2",
                int(s.max_message_size),
            ),
            (
                "UPDATE tenants SET content_score_threshold = $1 WHERE id = $2",
                int(s.content_score_threshold),
            ),
        ];
        for (sql, value) in changes {
            let q = sqlx::query(sql);
            let q = match value {
                None => continue,
                Some(Val::Flag(v)) => q.bind(v),
                Some(Val::Text(v)) => q.bind(v),
                Some(Val::Real(v)) => q.bind(v),
                Some(Val::Int(v)) => q.bind(v),
            };
            q.bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("tenant"))?;
        }
        tx.commit().await.map_err(db("tenant"))?;
        self.get_tenant(id).await
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
        .execute(&self.pool)
        .await
        .map_err(db("credential"))?;
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
            .fetch_all(&self.pool)
            .await
            .map_err(db("credential"))?;
        Ok(rows.iter().map(credential_from_row).collect())
    }

    async fn revoke_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM smtp_credentials WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db("credential"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_allowed_ips(
        &self,
        tenant: &TenantId,
        entries: &[AllowedIp],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("allowed ip"))?;
        sqlx::query("DELETE FROM allowed_ips WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("allowed ip"))?;
        for e in entries {
            sqlx::query(
                "INSERT INTO allowed_ips (tenant_id, cidr, require_tls) VALUES ($1, $2, $3)",
            )
            .bind(tenant.as_str())
            .bind(&e.cidr)
            .bind(e.require_tls)
            .execute(&mut *tx)
            .await
            .map_err(db("allowed ip"))?;
        }
        tx.commit().await.map_err(db("allowed ip"))
    }

    async fn list_allowed_ips(&self, tenant: &TenantId) -> Result<Vec<AllowedIp>, StoreError> {
        let rows = sqlx::query("SELECT * FROM allowed_ips WHERE tenant_id = $1 ORDER BY cidr")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db("allowed ip"))?;
        Ok(rows.iter().map(allowed_from_row).collect())
    }

    async fn set_sandbox_recipients(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<(), StoreError> {
        tenant_policy::set_sandbox_recipients(&self.pool, tenant, addresses).await
    }

    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("directory"))?;
        let tenants = sqlx::query("SELECT * FROM tenants")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("tenant"))?;
        let credentials = sqlx::query("SELECT * FROM smtp_credentials")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("credential"))?;
        let allowed = sqlx::query("SELECT * FROM allowed_ips")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("allowed ip"))?;
        let domains = sqlx::query("SELECT * FROM domains")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("domain"))?;
        let sandbox_recipients = tenant_policy::sandbox_recipients(&mut tx).await?;
        let (api_keys, api_key_secrets) = keys::live_secrets(&mut tx).await?;
        tx.commit().await.map_err(db("directory"))?;
        Ok(DirectorySnapshot {
            tenants: tenants.iter().map(tenant_from_row).collect(),
            credentials: credentials.iter().map(credential_from_row).collect(),
            allowed_ips: allowed.iter().map(allowed_from_row).collect(),
            domains: domains.iter().map(domain_from_row).collect(),
            sandbox_recipients,
            api_keys,
            api_key_secrets,
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        keys::create(&self.pool, key).await
    }

    async fn list_api_keys(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        keys::list(&self.pool, tenant).await
    }

    async fn get_api_key(
        &self,
        id: &mailroom_model::ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::get(&self.pool, id).await
    }

    async fn revoke_api_key(&self, id: &mailroom_model::ApiKeyId) -> Result<bool, StoreError> {
        keys::revoke(&self.pool, id).await
    }

    async fn rotate_api_key(
        &self,
        id: &mailroom_model::ApiKeyId,
        secret_hash: &str,
        old_expires_at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::rotate(&self.pool, id, secret_hash, old_expires_at).await
    }

    async fn record_api_key_use(
        &self,
        uses: Vec<(mailroom_model::ApiKeyId, i64)>,
    ) -> Result<(), StoreError> {
        self.op(|done| ops::Op::KeyUse { uses, done }).await
    }

    async fn operator_token_hash(&self) -> Result<Option<String>, StoreError> {
        keys::operator_token_hash(&self.pool).await
    }

    async fn set_operator_token_hash(&self, hash: &str) -> Result<(), StoreError> {
        keys::set_operator_token_hash(&self.pool, hash).await
    }
}
