//! A test double of the store: every role trait delegated to a real SQLite store,
//! with a switch that makes every call fail as a cut database connection does
//! (`StoreError::Database`, nothing written) and one that makes every call hang (a
//! connection that neither answers nor fails), so tests can take the database away
//! and give it back while the rest of the stack runs on.
//!
//! `enqueue` also behaves as the shared store promises for idempotency keys (the
//! message and its key in one transaction, a key already stored refused with
//! `StoreError::Conflict("idempotency key")` and the message rolled back), and can
//! hold every enqueue at a barrier so a test can make two nodes race on one key.
//!
//! Shared by the API and SMTP tests (`#[path]` include); generated from the trait
//! declarations in `crates/store/src/lib.rs` (one delegating method per trait method).

#![allow(dead_code)]

use mailroom_model::{ApiKeyId, CredentialId, MessageId, TenantId, WebhookId};
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct FlakyStore {
    pub inner: Arc<SqliteStore>,
    down: AtomicBool,
    hang: AtomicBool,
    /// Calls refused while down.
    refused: AtomicU64,
    /// Serialises the idempotency check-and-write of `enqueue` (the transaction).
    key_lock: tokio::sync::Mutex<()>,
    /// When set, the next enqueues (as many as the barrier's parties) wait here
    /// first, after their callers' look-ups.
    gate: std::sync::Mutex<Option<(Arc<tokio::sync::Barrier>, usize)>>,
}

impl FlakyStore {
    pub fn new(inner: Arc<SqliteStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            key_lock: tokio::sync::Mutex::new(()),
            gate: std::sync::Mutex::new(None),
        })
    }

    /// Cuts (`true`) or restores (`false`) the database.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many calls were refused while the database was cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Makes the next `parties` enqueues wait until all of them are waiting.
    pub fn gate_enqueues(&self, parties: usize) {
        *self.gate.lock().unwrap() = Some((Arc::new(tokio::sync::Barrier::new(parties)), parties));
    }

    /// Makes every call wait (as on a connection that neither answers nor fails)
    /// until `false` is set again.
    pub fn set_hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    async fn check(&self) -> Result<(), StoreError> {
        while self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Database(
                "error communicating with database: Connection refused (os error 111)".into(),
            ));
        }
        Ok(())
    }

    async fn enqueue_guarded(&self, message: NewMessage) -> Result<(), StoreError> {
        let gate = {
            let mut slot = self.gate.lock().unwrap();
            let barrier = slot.as_ref().map(|(b, _)| b.clone());
            if let Some((_, left)) = slot.as_mut() {
                *left -= 1;
                if *left == 0 {
                    *slot = None;
                }
            }
            barrier
        };
        if let Some(gate) = gate {
            gate.wait().await;
        }
        self.check().await?;
        let _tx = self.key_lock.lock().await;
        if let Some(k) = &message.idempotency {
            let window = 24 * 3_600_000;
            let found = <SqliteStore as SendPolicyStore>::get_idempotency(
                &self.inner,
                &message.tenant_id,
                &k.key,
                k.created_at - window,
            )
            .await?;
            if found.is_some() {
                return Err(StoreError::Conflict("idempotency key"));
            }
        }
        <SqliteStore as MessageStore>::enqueue(&self.inner, message).await
    }
}

#[async_trait::async_trait]
impl MessageStore for FlakyStore {
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        self.check().await?;
        self.enqueue_guarded(message).await
    }
    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError> {
        self.check().await?;
        <SqliteStore as MessageStore>::get_message(&self.inner, id).await
    }
    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        self.check().await?;
        <SqliteStore as MessageStore>::load_body(&self.inner, id).await
    }
}

#[async_trait::async_trait]
impl QueueStore for FlakyStore {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::claim_due(&self.inner, lease, now, limit).await
    }
    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::record_outcomes(&self.inner, outcomes).await
    }
    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::renew_leases(&self.inner, owner, tokens, until).await
    }
    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::release(&self.inner, owner, keys).await
    }
    async fn release_node(&self, owner: &str) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::release_node(&self.inner, owner).await
    }
    async fn retry_now(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::retry_now(&self.inner, id, now).await
    }
    async fn cancel(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::cancel(&self.inner, id, now).await
    }
    async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::queue_summary(&self.inner).await
    }
    async fn count_recipients_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::count_recipients_by_state(&self.inner).await
    }
    async fn release_quarantined(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::release_quarantined(&self.inner, id, now).await
    }
    async fn list_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError> {
        self.check().await?;
        <SqliteStore as QueueStore>::list_quarantined(&self.inner, tenant, limit).await
    }
}

#[async_trait::async_trait]
impl DirectoryStore for FlakyStore {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::create_tenant(&self.inner, tenant).await
    }
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::list_tenants(&self.inner).await
    }
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::get_tenant(&self.inner, id).await
    }
    async fn update_tenant(
        &self,
        id: &TenantId,
        settings: TenantSettings,
    ) -> Result<Option<TenantRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::update_tenant(&self.inner, id, settings).await
    }
    async fn create_credential(
        &self,
        credential: NewCredential,
    ) -> Result<CredentialRecord, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::create_credential(&self.inner, credential).await
    }
    async fn list_credentials(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::list_credentials(&self.inner, tenant).await
    }
    async fn revoke_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::revoke_credential(&self.inner, tenant, id).await
    }
    async fn set_allowed_ips(
        &self,
        tenant: &TenantId,
        entries: &[AllowedIp],
    ) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::set_allowed_ips(&self.inner, tenant, entries).await
    }
    async fn list_allowed_ips(&self, tenant: &TenantId) -> Result<Vec<AllowedIp>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::list_allowed_ips(&self.inner, tenant).await
    }
    async fn set_sandbox_recipients(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::set_sandbox_recipients(&self.inner, tenant, addresses)
            .await
    }
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::create_api_key(&self.inner, key).await
    }
    async fn list_api_keys(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::list_api_keys(&self.inner, tenant).await
    }
    async fn get_api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::get_api_key(&self.inner, id).await
    }
    async fn revoke_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::revoke_api_key(&self.inner, id).await
    }
    async fn rotate_api_key(
        &self,
        id: &ApiKeyId,
        secret_hash: &str,
        old_expires_at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::rotate_api_key(
            &self.inner,
            id,
            secret_hash,
            old_expires_at,
        )
        .await
    }
    async fn record_api_key_use(&self, uses: Vec<(ApiKeyId, i64)>) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::record_api_key_use(&self.inner, uses).await
    }
    async fn operator_token_hash(&self) -> Result<Option<String>, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::operator_token_hash(&self.inner).await
    }
    async fn set_operator_token_hash(&self, hash: &str) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::set_operator_token_hash(&self.inner, hash).await
    }
    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        self.check().await?;
        <SqliteStore as DirectoryStore>::load_directory(&self.inner).await
    }
}

#[async_trait::async_trait]
impl SendPolicyStore for FlakyStore {
    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::suppressed_among(&self.inner, tenant, addresses).await
    }
    fn suppression_noted(&self, tenant: &TenantId) -> bool {
        <SqliteStore as SendPolicyStore>::suppression_noted(&self.inner, tenant)
    }
    async fn add_suppression(&self, s: Suppression) -> Result<(Suppression, bool), StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::add_suppression(&self.inner, s).await
    }
    async fn get_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::get_suppression(&self.inner, tenant, address).await
    }
    async fn list_suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Suppression>, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::list_suppressions(&self.inner, tenant, after, limit).await
    }
    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::remove_suppression(&self.inner, tenant, address).await
    }
    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::get_idempotency(&self.inner, tenant, key, since).await
    }
    async fn prune_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::prune_idempotency(&self.inner, before).await
    }
    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
        self.check().await?;
        <SqliteStore as SendPolicyStore>::message_counts_since(&self.inner, since).await
    }
}

#[async_trait::async_trait]
impl DomainStore for FlakyStore {
    async fn add_domain(&self, domain: NewDomain) -> Result<DomainRecord, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::add_domain(&self.inner, domain).await
    }
    async fn list_domains(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::list_domains(&self.inner, tenant).await
    }
    async fn get_domain(&self, name: &str) -> Result<Option<DomainRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::get_domain(&self.inner, name).await
    }
    async fn record_domain_check(
        &self,
        name: &str,
        check: DomainCheck,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::record_domain_check(&self.inner, name, check).await
    }
    async fn set_allowed_local_parts(
        &self,
        name: &str,
        local_parts: &[String],
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::set_allowed_local_parts(&self.inner, name, local_parts).await
    }
    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::list_dkim_keys(&self.inner, domain).await
    }
    async fn add_dkim_key(&self, key: NewDkimKey) -> Result<DkimKeyRecord, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::add_dkim_key(&self.inner, key).await
    }
    async fn set_dkim_key_state(
        &self,
        domain: &str,
        selector: &str,
        state: KeyState,
        at: i64,
        retire_after: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::set_dkim_key_state(
            &self.inner,
            domain,
            selector,
            state,
            at,
            retire_after,
        )
        .await
    }
    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::list_secrets(&self.inner).await
    }
    async fn replace_secrets(&self, updates: Vec<SecretUpdate>) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::replace_secrets(&self.inner, updates).await
    }
    async fn insert_tenant_event(
        &self,
        tenant: &TenantId,
        kind: mailroom_model::EventType,
        detail: mailroom_model::EventDetail,
    ) -> Result<mailroom_model::Event, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::insert_tenant_event(&self.inner, tenant, kind, detail).await
    }
    async fn list_tenant_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<mailroom_model::Event>, StoreError> {
        self.check().await?;
        <SqliteStore as DomainStore>::list_tenant_events(&self.inner, tenant, limit).await
    }
}

#[async_trait::async_trait]
impl IntakeStore for FlakyStore {
    async fn bounce_target(&self, id: &MessageId) -> Result<Option<BounceTarget>, StoreError> {
        self.check().await?;
        <SqliteStore as IntakeStore>::bounce_target(&self.inner, id).await
    }
    async fn record_async_bounce(&self, bounce: AsyncBounce) -> Result<IntakeRecorded, StoreError> {
        self.check().await?;
        <SqliteStore as IntakeStore>::record_async_bounce(&self.inner, bounce).await
    }
    async fn record_complaint(&self, complaint: Complaint) -> Result<IntakeRecorded, StoreError> {
        self.check().await?;
        <SqliteStore as IntakeStore>::record_complaint(&self.inner, complaint).await
    }
    async fn health_counts(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<HealthCounts, StoreError> {
        self.check().await?;
        <SqliteStore as IntakeStore>::health_counts(&self.inner, tenant, since).await
    }
    async fn get_sender_health(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError> {
        self.check().await?;
        <SqliteStore as IntakeStore>::get_sender_health(&self.inner, tenant).await
    }
    async fn set_sender_health(&self, change: HealthChange) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as IntakeStore>::set_sender_health(&self.inner, change).await
    }
}

#[async_trait::async_trait]
impl TrackingStore for FlakyStore {
    async fn record_event(&self, event: NewEvent) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as TrackingStore>::record_event(&self.inner, event).await
    }
    async fn unsubscribe(
        &self,
        suppression: Suppression,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as TrackingStore>::unsubscribe(&self.inner, suppression, event).await
    }
}

#[async_trait::async_trait]
impl EventStore for FlakyStore {
    async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::webhook_delivery_counts(&self.inner).await
    }
    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::list_events(&self.inner, query).await
    }
    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::prune_events(&self.inner, before, limit).await
    }
    async fn create_webhook(&self, webhook: NewWebhook) -> Result<WebhookRecord, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::create_webhook(&self.inner, webhook).await
    }
    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::list_webhooks(&self.inner, tenant).await
    }
    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::get_webhook(&self.inner, id).await
    }
    async fn update_webhook(
        &self,
        id: &WebhookId,
        patch: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::update_webhook(&self.inner, id, patch).await
    }
    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::delete_webhook(&self.inner, id).await
    }
    async fn fan_out_events(&self, limit: usize, now: i64) -> Result<FanOut, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::fan_out_events(&self.inner, limit, now).await
    }
    async fn claim_deliveries(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::claim_deliveries(&self.inner, webhook, now, lease_until, limit)
            .await
    }
    async fn record_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::record_delivery(&self.inner, update).await
    }
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::list_deliveries(&self.inner, webhook, state, limit).await
    }
    async fn next_delivery_at(&self, webhook: &WebhookId) -> Result<Option<i64>, StoreError> {
        self.check().await?;
        <SqliteStore as EventStore>::next_delivery_at(&self.inner, webhook).await
    }
}

#[async_trait::async_trait]
impl ClusterStore for FlakyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as ClusterStore>::ping(&self.inner).await
    }
    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as ClusterStore>::heartbeat(&self.inner, node).await
    }
    async fn list_nodes(&self, now: i64) -> Result<Vec<NodeRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as ClusterStore>::list_nodes(&self.inner, now).await
    }
    async fn try_singleton(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as ClusterStore>::try_singleton(&self.inner, name, owner, now, until).await
    }
    async fn directory_version(&self) -> Result<i64, StoreError> {
        self.check().await?;
        <SqliteStore as ClusterStore>::directory_version(&self.inner).await
    }
}

#[async_trait::async_trait]
impl DeletionStore for FlakyStore {
    async fn delete_domain(&self, name: &str) -> Result<Option<DomainDeletion>, StoreError> {
        self.check().await?;
        <SqliteStore as DeletionStore>::delete_domain(&self.inner, name).await
    }
    async fn delete_tenant(
        &self,
        tenant: &TenantId,
        purge: bool,
        now: i64,
    ) -> Result<Option<TenantDeletion>, StoreError> {
        self.check().await?;
        <SqliteStore as DeletionStore>::delete_tenant(&self.inner, tenant, purge, now).await
    }
    async fn erase_address(
        &self,
        address: &str,
        tenant: Option<&TenantId>,
        now: i64,
    ) -> Result<Erasure, StoreError> {
        self.check().await?;
        <SqliteStore as DeletionStore>::erase_address(&self.inner, address, tenant, now).await
    }
}

#[async_trait::async_trait]
impl ConsoleStore for FlakyStore {
    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::create_session(&self.inner, session).await
    }
    async fn get_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::get_session(&self.inner, token_hash, now).await
    }
    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::delete_session(&self.inner, token_hash).await
    }
    async fn prune_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::prune_sessions(&self.inner, now).await
    }
    async fn prune_counters(&self, now: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::prune_counters(&self.inner, now).await
    }
    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsRow>, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::stats(&self.inner, query).await
    }
    async fn search_messages(
        &self,
        search: &MessageSearch,
    ) -> Result<Vec<MessageSummary>, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::search_messages(&self.inner, search).await
    }
    async fn message_detail(
        &self,
        id: &MessageId,
    ) -> Result<Option<mailroom_store::MessageDetail>, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::message_detail(&self.inner, id).await
    }
    async fn queue_destinations(&self, limit: i64) -> Result<Vec<DestinationQueue>, StoreError> {
        self.check().await?;
        <SqliteStore as ConsoleStore>::queue_destinations(&self.inner, limit).await
    }
}

#[async_trait::async_trait]
impl TlsPolicyStore for FlakyStore {
    async fn get_sts_policy(&self, domain: &str) -> Result<Option<StsPolicyRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as TlsPolicyStore>::get_sts_policy(&self.inner, domain).await
    }
    async fn put_sts_policy(&self, record: &StsPolicyRecord) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as TlsPolicyStore>::put_sts_policy(&self.inner, record).await
    }
    async fn count_tls_result(&self, result: &TlsResult) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as TlsPolicyStore>::count_tls_result(&self.inner, result).await
    }
    async fn tls_results_for_day(&self, day: &str) -> Result<Vec<TlsResultCount>, StoreError> {
        self.check().await?;
        <SqliteStore as TlsPolicyStore>::tls_results_for_day(&self.inner, day).await
    }
}

#[async_trait::async_trait]
impl ShapingStore for FlakyStore {
    async fn add_throttle(&self, t: &ThrottleRecord) -> Result<i64, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::add_throttle(&self.inner, t).await
    }
    async fn active_throttles(&self, now: i64) -> Result<Vec<ThrottleRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::active_throttles(&self.inner, now).await
    }
    async fn clear_throttles(&self, site: Option<&str>, now: i64) -> Result<u64, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::clear_throttles(&self.inner, site, now).await
    }
    async fn add_egress_counts(&self, counts: &[EgressCount]) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::add_egress_counts(&self.inner, counts).await
    }
    async fn egress_counts(&self, day: i64) -> Result<Vec<EgressCount>, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::egress_counts(&self.inner, day).await
    }
    async fn warmup_start(&self, address: &str, day: i64) -> Result<i64, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::warmup_start(&self.inner, address, day).await
    }
    async fn set_tenant_pool(
        &self,
        tenant: &TenantId,
        pool: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::set_tenant_pool(&self.inner, tenant, pool).await
    }
    async fn tenant_pools(&self) -> Result<Vec<(TenantId, String)>, StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::tenant_pools(&self.inner).await
    }

    async fn record_shaping_event(
        &self,
        tenant: Option<&TenantId>,
        detail: mailroom_model::ShapingDetail,
    ) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as ShapingStore>::record_shaping_event(&self.inner, tenant, detail).await
    }
}

#[async_trait::async_trait]
impl SigningStore for FlakyStore {
    async fn set_signing_choice(
        &self,
        tenant: &TenantId,
        domain: Option<&str>,
        choice: Option<mailroom_model::Signatures>,
    ) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as SigningStore>::set_signing_choice(&self.inner, tenant, domain, choice).await
    }
    async fn list_signing_choices(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SigningChoiceRecord>, StoreError> {
        self.check().await?;
        <SqliteStore as SigningStore>::list_signing_choices(&self.inner, tenant).await
    }
}

#[async_trait::async_trait]
impl ReportStore for FlakyStore {
    async fn report_domain(&self, domain: &str) -> Result<Option<TenantId>, StoreError> {
        self.check().await?;
        <SqliteStore as ReportStore>::report_domain(&self.inner, domain).await
    }
    async fn record_report(&self, report: &ReceivedReport) -> Result<ReportRecorded, StoreError> {
        self.check().await?;
        <SqliteStore as ReportStore>::record_report(&self.inner, report).await
    }
    async fn domain_reports(
        &self,
        domain: &str,
        from: &str,
        to: &str,
    ) -> Result<DomainReportRows, StoreError> {
        self.check().await?;
        <SqliteStore as ReportStore>::domain_reports(&self.inner, domain, from, to).await
    }
}

#[async_trait::async_trait]
impl AcmeStore for FlakyStore {
    async fn put_acme_challenge(
        &self,
        token: &str,
        key_authorization: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.check().await?;
        <SqliteStore as AcmeStore>::put_acme_challenge(
            &self.inner,
            token,
            key_authorization,
            expires_at,
        )
        .await
    }
    async fn get_acme_challenge(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.check().await?;
        <SqliteStore as AcmeStore>::get_acme_challenge(&self.inner, token, now).await
    }
    async fn remove_acme_challenge(&self, token: &str, now: i64) -> Result<bool, StoreError> {
        self.check().await?;
        <SqliteStore as AcmeStore>::remove_acme_challenge(&self.inner, token, now).await
    }
}
