//! Durable storage behind one trait: messages with their recipients and events,
//! tenants, credentials, allowlists and domains. The SQLite backend (the embedded
//! default) lives in `sqlite`; a PostgreSQL backend implements the same trait.
//!
//! This crate knows nothing of SMTP, HTTP or retry policy: it stores and loads, and
//! promises that `enqueue` returns only once the message is committed and fsynced.

mod error;
mod event_types;
mod intake_types;
mod key_types;
mod secret_types;
pub mod sqlite;
mod types;

pub use error::StoreError;
pub use event_types::*;
pub use intake_types::*;
pub use key_types::*;
pub use secret_types::*;
pub use types::*;

use mailroom_model::{ApiKeyId, CredentialId, MessageId, TenantId, WebhookId};

pub type DynStore = std::sync::Arc<dyn Store>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes the message, its recipients (state `queued`) and one `accepted` event
    /// per recipient in one transaction. Returns after the commit is durable.
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError>;

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

    async fn add_domain(&self, domain: NewDomain) -> Result<DomainRecord, StoreError>;
    async fn list_domains(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError>;

    // --- domains and DKIM keys ---

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
        detail: serde_json::Value,
    ) -> Result<mailroom_model::Event, StoreError>;
    /// The tenant's tenant-level events (those without a message), newest first.
    async fn list_tenant_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<mailroom_model::Event>, StoreError>;

    // --- bounce intake and sender health ---

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

    // --- suppression list, sandbox recipients, idempotency, quotas ---

    /// Which of `addresses` (compared lowercased) are on the tenant's suppression list,
    /// with the reason: lowercased address → reason.
    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError>;
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
    /// Replaces the tenant's sandbox recipient list (lowercased addresses).
    async fn set_sandbox_recipients(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<(), StoreError>;
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

    // --- named API keys and the operator token (sqlite/keys.rs) ---

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

    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError>;

    /// Claims up to `limit` recipients that are due (queued or deferred, next attempt
    /// reached, no live lease) by setting their lease to `lease_until`. A crashed
    /// claimant's lease simply expires and the recipient is claimed again.
    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError>;
    /// Records each outcome (state, attempt count, next attempt, last reply) together
    /// with its event, in one transaction; clears the leases.
    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<(), StoreError>;
    /// Gives claimed recipients back untouched (shutdown, full queues).
    async fn release(&self, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError>;
    /// Clears every lease. Only for a store owned by one process (the embedded SQLite
    /// store): at start, any lease left is a crashed run's and must not delay retries.
    async fn release_all(&self) -> Result<u64, StoreError>;
    /// Makes every undelivered recipient of the message due now; returns how many.
    async fn retry_now(&self, id: &MessageId, now: i64) -> Result<u64, StoreError>;
    /// Cancels every undelivered recipient with a `cancelled` event; returns how many.
    async fn cancel(&self, id: &MessageId, now: i64) -> Result<u64, StoreError>;
    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError>;
    async fn queue_summary(&self) -> Result<QueueSummary, StoreError>;

    /// Webhook deliveries by state (pending, failed), for metrics.
    async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(Vec::new())
    }

    /// A cheap round trip to the database, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Recipient counts by state, for status and metrics.
    async fn count_recipients_by_state(&self) -> Result<Vec<(String, i64)>, StoreError>;

    // --- tracking and quarantine ---

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
    /// Makes the message's quarantined recipients `queued` and due now, each with a
    /// `released` event; returns how many.
    async fn release_quarantined(&self, id: &MessageId, now: i64) -> Result<u64, StoreError>;
    /// Messages with quarantined recipients, oldest first, at most `limit`.
    async fn list_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError>;

    // --- events and webhooks ---

    /// A page of the event stream after `query.after`, in seq order. Only events with a
    /// seq at most the highest one visible when the read started are returned, from one
    /// read snapshot, so a cursor never skips or repeats an event (see
    /// `sqlite/events.rs` for why seq order is commit order).
    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError>;
    /// Deletes up to `limit` events older than `before` (ms) that no webhook still needs
    /// (already fanned out, no pending delivery), with their finished delivery rows.
    /// Returns how many events were deleted.
    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64, StoreError>;

    /// Stores a webhook; it receives events recorded after this call.
    async fn create_webhook(&self, webhook: NewWebhook) -> Result<WebhookRecord, StoreError>;
    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError>;
    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError>;
    /// Returns the webhook as it is after the change, or `None` if it does not exist.
    async fn update_webhook(
        &self,
        id: &WebhookId,
        patch: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError>;
    /// Removes the webhook and its delivery rows; returns whether it existed.
    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError>;

    /// Moves the dispatcher cursor past up to `limit` events, inserting a pending
    /// delivery (due at `now`) for each matching enabled webhook in the same
    /// transaction as the cursor update.
    async fn fan_out_events(&self, limit: usize, now: i64) -> Result<FanOut, StoreError>;
    /// Claims up to `limit` due pending deliveries of one webhook by moving their next
    /// attempt to `lease_until` (a crashed worker's claim simply comes due again).
    /// Per message and recipient, events go out in stream order: a delivery is not
    /// claimed while an earlier event of the same recipient of the same message (or an
    /// earlier message-wide event) is still pending or in flight for this webhook, so a
    /// receiver never sees `delivered` before `accepted`. Recipients of one message
    /// still go out concurrently; deliveries given up on (`failed`) hold nothing back.
    async fn claim_deliveries(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records the result of one attempt.
    async fn record_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// When the webhook's earliest pending delivery is due, if it has one.
    async fn next_delivery_at(&self, webhook: &WebhookId) -> Result<Option<i64>, StoreError>;
}
