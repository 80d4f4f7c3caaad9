//! The role traits a message passes through: accepting it (`MessageStore`), the
//! delivery queue with its leases (`QueueStore`), the directory and per-send policy it
//! is checked against (`DirectoryStore`, `SendPolicyStore`), sending domains and their
//! keys (`DomainStore`), bounce/complaint intake (`IntakeStore`) and engagement
//! tracking (`TrackingStore`). Both backends implement each; `Store` (lib.rs) is all
//! the roles together.

use crate::*;
use mailroom_model::{ApiKeyId, CredentialId, MessageId, TenantId};

/// Accepted messages: the durable enqueue and reading a message back.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Writes the message, its recipients (state `queued`) and one `accepted` event
    /// per recipient in one transaction. Returns after the commit is durable.
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError>;

    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError>;

    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The delivery queue: claiming due recipients under owned, fenced leases, recording outcomes, the operator's retry/cancel, quarantine.
#[async_trait::async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Claims up to `limit` recipients that are due (queued or deferred, next attempt
    /// reached, no live lease) for `lease.owner` under `lease.token` until
    /// `lease.until`, in a short transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`; no
    /// row lock outlives the claim). A dead claimant's lease simply runs out and the
    /// recipient is claimed again, by any node.
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError>;

    /// Records each outcome (state, attempt count, next attempt, last reply) together
    /// with its event, in one transaction, and clears its lease — but only where the
    /// recipient still holds the outcome's `lease_token` (fencing): an outcome whose
    /// lease was lost (ran out and was claimed by another node, or released) changes
    /// nothing and records no event. Returns the keys of those lost outcomes.
    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError>;

    /// Extends the leases held under `tokens` by `owner` to `until` (delivery in
    /// progress); returns how many recipients were renewed. A lease already lost is not
    /// taken back.
    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError>;

    /// Gives claimed recipients back, due now (shutdown, full queues) — only those
    /// whose lease `owner` still holds.
    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError>;

    /// Gives back every lease `owner` holds (at start: a previous run of this node
    /// crashed and its leases must not delay retries). Other nodes' leases are left
    /// alone. Returns how many.
    async fn release_node(&self, owner: &str) -> Result<u64, StoreError>;

    /// Makes every undelivered recipient of the message due now; returns how many.
    async fn retry_now(&self, id: &MessageId, now: i64) -> Result<u64, StoreError>;

    /// Cancels every undelivered recipient with a `cancelled` event; returns how many.
    async fn cancel(&self, id: &MessageId, now: i64) -> Result<u64, StoreError>;

    async fn queue_summary(&self) -> Result<QueueSummary, StoreError>;

    /// Recipient counts by state, for status and metrics.
    async fn count_recipients_by_state(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Makes the message's quarantined recipients `queued` and due now, each with a
    /// `released` event; returns how many.
    async fn release_quarantined(&self, id: &MessageId, now: i64) -> Result<u64, StoreError>;

    /// Messages with quarantined recipients, oldest first, at most `limit`.
    async fn list_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError>;
}

/// Tenants and what authenticates them: credentials, allowlists, sandbox recipients, API keys, the operator token; the snapshot the policy layer caches.
#[async_trait::async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, StoreError>;

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// Returns the tenant as it is after the change, or `None` if it does not exist.
    async fn update_tenant(
        &self,
        id: &TenantId,
        settings: TenantSettings,
    ) -> Result<Option<TenantRecord>, StoreError>;

    async fn create_credential(
        &self,
        credential: NewCredential,
    ) -> Result<CredentialRecord, StoreError>;

    async fn list_credentials(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<CredentialRecord>, StoreError>;

    /// Returns whether a credential was removed.
    async fn revoke_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<bool, StoreError>;

    /// Replaces the tenant's whole allowlist.
    async fn set_allowed_ips(
        &self,
        tenant: &TenantId,
        entries: &[AllowedIp],
    ) -> Result<(), StoreError>;

    async fn list_allowed_ips(&self, tenant: &TenantId) -> Result<Vec<AllowedIp>, StoreError>;

    /// Replaces the tenant's sandbox recipient list (lowercased addresses).
    async fn set_sandbox_recipients(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<(), StoreError>;

    /// Stores a key and its first secret.
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, StoreError>;

    /// The tenant's keys (`None`: every tenant's), oldest first.
    async fn list_api_keys(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;

    async fn get_api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Deletes the key and every secret of it; returns whether it existed.
    async fn revoke_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError>;

    /// Adds `secret_hash` as the key's current secret; the secrets it had keep working
    /// until `old_expires_at` (or their own earlier expiry). Returns the key after the
    /// change, or `None` if it does not exist.
    async fn rotate_api_key(
        &self,
        id: &ApiKeyId,
        secret_hash: &str,
        old_expires_at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Records when keys were last used (the later of the stored and given times), in
    /// one write.
    async fn record_api_key_use(&self, uses: Vec<(ApiKeyId, i64)>) -> Result<(), StoreError>;

    /// The operator token's digest, if one was stored.
    async fn operator_token_hash(&self) -> Result<Option<String>, StoreError>;

    /// Replaces the operator token's digest.
    async fn set_operator_token_hash(&self, hash: &str) -> Result<(), StoreError>;

    /// Everything the policy layer caches in memory, read in one go.
    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError>;
}

/// Per-send lookups: the suppression list, idempotency keys, quota counts.
#[async_trait::async_trait]
pub trait SendPolicyStore: Send + Sync + 'static {
    /// Which of `addresses` (compared lowercased) are on the tenant's suppression list,
    /// with the reason: lowercased address → reason.
    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError>;

    /// Whether this store instance has itself written a suppression for `tenant`
    /// (`suppression_hint`): true may only add a `suppressed_among` lookup the
    /// directory's `has_suppressions` flag would skip, never skip one. A wrapper
    /// forwards it to the store it wraps.
    fn suppression_noted(&self, tenant: &TenantId) -> bool;

    /// Adds (or replaces) an entry; returns it and whether it was new.
    async fn add_suppression(&self, s: Suppression) -> Result<(Suppression, bool), StoreError>;

    async fn get_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError>;

    /// Entries in address order after `after` (exclusive), at most `limit`.
    async fn list_suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Suppression>, StoreError>;

    /// Returns whether an entry was removed.
    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<bool, StoreError>;

    /// The stored first response for an idempotency key, if it is newer than `since`.
    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Deletes idempotency keys older than `before`; returns how many.
    async fn prune_idempotency(&self, before: i64) -> Result<u64, StoreError>;

    /// Messages accepted since `since`, per tenant and hour (`received_at / 3_600_000`),
    /// so daily quotas survive a restart.
    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError>;
}

/// Sending domains, their checks and DKIM keys, sealed secrets, tenant-level events.
#[async_trait::async_trait]
pub trait DomainStore: Send + Sync + 'static {
    async fn add_domain(&self, domain: NewDomain) -> Result<DomainRecord, StoreError>;

    async fn list_domains(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError>;

    async fn get_domain(&self, name: &str) -> Result<Option<DomainRecord>, StoreError>;

    /// Stores a check's outcome; `verified` follows `status.may_send()`. Returns
    /// whether the domain exists.
    async fn record_domain_check(&self, name: &str, check: DomainCheck)
    -> Result<bool, StoreError>;

    /// Replaces the allowed local parts (lowercased; empty: any). Returns whether the
    /// domain exists.
    async fn set_allowed_local_parts(
        &self,
        name: &str,
        local_parts: &[String],
    ) -> Result<bool, StoreError>;

    /// Keys of one domain (`Some`) or of every domain (`None`, for the signing cache),
    /// oldest first.
    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError>;

    async fn add_dkim_key(&self, key: NewDkimKey) -> Result<DkimKeyRecord, StoreError>;

    /// Moves a key to `state`, setting `activated_at` (when becoming active) and
    /// `retire_after` as given. Returns whether the key exists.
    async fn set_dkim_key_state(
        &self,
        domain: &str,
        selector: &str,
        state: KeyState,
        at: i64,
        retire_after: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Every sealed secret (DKIM private keys, webhook secrets), for re-sealing.
    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;

    /// Applies the updates in one transaction, each only where the row still holds
    /// its `old` value; returns how many rows changed.
    async fn replace_secrets(&self, updates: Vec<SecretUpdate>) -> Result<u64, StoreError>;

    /// A tenant-level event (no message, no recipient), e.g. `domain.dns_error`.
    async fn insert_tenant_event(
        &self,
        tenant: &TenantId,
        kind: mailroom_model::EventType,
        detail: mailroom_model::EventDetail,
    ) -> Result<mailroom_model::Event, StoreError>;

    /// The tenant's tenant-level events (those without a message), newest first.
    async fn list_tenant_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<mailroom_model::Event>, StoreError>;
}

/// Bounce and complaint intake, sender health.
#[async_trait::async_trait]
pub trait IntakeStore: Send + Sync + 'static {
    /// The message a bounce address or a report names, with its recipients.
    async fn bounce_target(&self, id: &MessageId) -> Result<Option<BounceTarget>, StoreError>;

    /// Records a bounce that arrived after the delivery attempt: the recipient (if
    /// delivered, queued or deferred) becomes `bounced`, with its event and, when hard,
    /// the suppression, in one transaction. A recipient already bounced is a duplicate.
    async fn record_async_bounce(&self, bounce: AsyncBounce) -> Result<IntakeRecorded, StoreError>;

    /// Records a complaint (`complained` event and suppression, reason `complaint`) in
    /// one transaction; a second complaint about the same recipient is a duplicate.
    async fn record_complaint(&self, complaint: Complaint) -> Result<IntakeRecorded, StoreError>;

    /// The tenant's delivered, bounced and complained events since `since` (ms).
    async fn health_counts(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<HealthCounts, StoreError>;

    async fn get_sender_health(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError>;

    /// Stores the tenant's new level (with its event, and the pause) in one
    /// transaction. Returns whether the tenant's status was changed to `paused`.
    async fn set_sender_health(&self, change: HealthChange) -> Result<bool, StoreError>;
}

/// Engagement events and unsubscribes.
#[async_trait::async_trait]
pub trait TrackingStore: Send + Sync + 'static {
    /// Records a message-level event that changes no recipient state (`opened`,
    /// `clicked`).
    async fn record_event(&self, event: NewEvent) -> Result<(), StoreError>;

    /// Adds (or replaces) the suppression and records its `unsubscribed` event, in one
    /// transaction.
    async fn unsubscribe(
        &self,
        suppression: Suppression,
        event: NewEvent,
    ) -> Result<(), StoreError>;
}
