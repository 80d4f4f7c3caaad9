//! TEMPORARY: placeholders for the part-2 role traits (directory, send policy,
//! domains, intake) so that `PgStore` is a `Store` and the conformance harness
//! compiles on branch pg-queue. Branch pg-directory replaces this file with the real
//! impls: when merging pg-queue, DELETE this file and its `mod pending;` line in
//! postgres/mod.rs.

use super::PgStore;
use crate::*;
use mailroom_model::{ApiKeyId, CredentialId, MessageId, TenantId};

fn pending<T>() -> Result<T, StoreError> {
    Err(StoreError::Database(
        "not implemented on PostgreSQL yet (branch pg-directory)".into(),
    ))
}

#[async_trait::async_trait]
impl DirectoryStore for PgStore {
    // Just enough for part 1's tests (tenant rows for webhooks' foreign key).
    async fn create_tenant(&self, t: NewTenant) -> Result<TenantRecord, StoreError> {
        let now = mailroom_model::now_millis();
        let mut tx = self.pool.begin().await.map_err(super::db("tenant"))?;
        sqlx::query(
            "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(&t.api_key_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(super::db("tenant"))?;
        tx.commit().await.map_err(super::db("tenant"))?;
        Ok(TenantRecord {
            id: t.id,
            name: t.name,
            api_key_hash: t.api_key_hash,
            created_at: now,
            bounce_reports: true,
            status: mailroom_model::TenantStatus::Active,
            sandbox: false,
            reject_suppressed: false,
            limits: TenantLimits::default(),
            arc_sealing: true,
            track_opens: false,
            track_clicks: false,
            list_unsubscribe: false,
            content_score_threshold: None,
        })
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        pending()
    }

    async fn get_tenant(&self, _id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        pending()
    }

    async fn update_tenant(
        &self,
        _id: &TenantId,
        _settings: TenantSettings,
    ) -> Result<Option<TenantRecord>, StoreError> {
        pending()
    }

    async fn create_credential(
        &self,
        _credential: NewCredential,
    ) -> Result<CredentialRecord, StoreError> {
        pending()
    }

    async fn list_credentials(
        &self,
        _tenant: &TenantId,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        pending()
    }

    async fn revoke_credential(
        &self,
        _tenant: &TenantId,
        _id: &CredentialId,
    ) -> Result<bool, StoreError> {
        pending()
    }

    async fn set_allowed_ips(
        &self,
        _tenant: &TenantId,
        _entries: &[AllowedIp],
    ) -> Result<(), StoreError> {
        pending()
    }

    async fn list_allowed_ips(&self, _tenant: &TenantId) -> Result<Vec<AllowedIp>, StoreError> {
        pending()
    }

    async fn set_sandbox_recipients(
        &self,
        _tenant: &TenantId,
        _addresses: &[String],
    ) -> Result<(), StoreError> {
        pending()
    }

    async fn create_api_key(&self, _key: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        pending()
    }

    async fn list_api_keys(
        &self,
        _tenant: Option<&TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        pending()
    }

    async fn get_api_key(&self, _id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        pending()
    }

    async fn revoke_api_key(&self, _id: &ApiKeyId) -> Result<bool, StoreError> {
        pending()
    }

    async fn rotate_api_key(
        &self,
        _id: &ApiKeyId,
        _secret_hash: &str,
        _old_expires_at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        pending()
    }

    async fn record_api_key_use(&self, _uses: Vec<(ApiKeyId, i64)>) -> Result<(), StoreError> {
        pending()
    }

    async fn operator_token_hash(&self) -> Result<Option<String>, StoreError> {
        pending()
    }

    async fn set_operator_token_hash(&self, _hash: &str) -> Result<(), StoreError> {
        pending()
    }

    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        pending()
    }
}

#[async_trait::async_trait]
impl SendPolicyStore for PgStore {
    async fn suppressed_among(
        &self,
        _tenant: &TenantId,
        _addresses: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        pending()
    }

    async fn add_suppression(&self, _s: Suppression) -> Result<(Suppression, bool), StoreError> {
        pending()
    }

    async fn get_suppression(
        &self,
        _tenant: &TenantId,
        _address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        pending()
    }

    async fn list_suppressions(
        &self,
        _tenant: &TenantId,
        _after: Option<&str>,
        _limit: i64,
    ) -> Result<Vec<Suppression>, StoreError> {
        pending()
    }

    async fn remove_suppression(
        &self,
        _tenant: &TenantId,
        _address: &str,
    ) -> Result<bool, StoreError> {
        pending()
    }

    async fn get_idempotency(
        &self,
        _tenant: &TenantId,
        _key: &str,
        _since: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        pending()
    }

    async fn prune_idempotency(&self, _before: i64) -> Result<u64, StoreError> {
        pending()
    }

    async fn message_counts_since(
        &self,
        _since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
        pending()
    }
}

#[async_trait::async_trait]
impl DomainStore for PgStore {
    async fn add_domain(&self, _domain: NewDomain) -> Result<DomainRecord, StoreError> {
        pending()
    }

    async fn list_domains(
        &self,
        _tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError> {
        pending()
    }

    async fn get_domain(&self, _name: &str) -> Result<Option<DomainRecord>, StoreError> {
        pending()
    }

    async fn record_domain_check(
        &self,
        _name: &str,
        _check: DomainCheck,
    ) -> Result<bool, StoreError> {
        pending()
    }

    async fn set_allowed_local_parts(
        &self,
        _name: &str,
        _local_parts: &[String],
    ) -> Result<bool, StoreError> {
        pending()
    }

    async fn list_dkim_keys(
        &self,
        _domain: Option<&str>,
    ) -> Result<Vec<DkimKeyRecord>, StoreError> {
        pending()
    }

    async fn add_dkim_key(&self, _key: NewDkimKey) -> Result<DkimKeyRecord, StoreError> {
        pending()
    }

    async fn set_dkim_key_state(
        &self,
        _domain: &str,
        _selector: &str,
        _state: KeyState,
        _at: i64,
        _retire_after: Option<i64>,
    ) -> Result<bool, StoreError> {
        pending()
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        pending()
    }

    async fn replace_secrets(&self, _updates: Vec<SecretUpdate>) -> Result<u64, StoreError> {
        pending()
    }

    async fn insert_tenant_event(
        &self,
        _tenant: &TenantId,
        _kind: mailroom_model::EventType,
        _detail: serde_json::Value,
    ) -> Result<mailroom_model::Event, StoreError> {
        pending()
    }

    async fn list_tenant_events(
        &self,
        _tenant: &TenantId,
        _limit: i64,
    ) -> Result<Vec<mailroom_model::Event>, StoreError> {
        pending()
    }
}

#[async_trait::async_trait]
impl IntakeStore for PgStore {
    async fn bounce_target(&self, _id: &MessageId) -> Result<Option<BounceTarget>, StoreError> {
        pending()
    }

    async fn record_async_bounce(
        &self,
        _bounce: AsyncBounce,
    ) -> Result<IntakeRecorded, StoreError> {
        pending()
    }

    async fn record_complaint(&self, _complaint: Complaint) -> Result<IntakeRecorded, StoreError> {
        pending()
    }

    async fn health_counts(
        &self,
        _tenant: &TenantId,
        _since: i64,
    ) -> Result<HealthCounts, StoreError> {
        pending()
    }

    async fn get_sender_health(
        &self,
        _tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError> {
        pending()
    }

    async fn set_sender_health(&self, _change: HealthChange) -> Result<bool, StoreError> {
        pending()
    }
}
