//! The store as delivery sees it: exactly the eight calls the engine makes (claim,
//! record, renew, release, release a node's leases, load a body, enqueue a bounce
//! report, read a tenant's settings) — nothing of the directory, webhooks or intake.
//!
//! Any `Arc` of a store that has the queue, message and directory roles is one
//! (`Arc<dyn Store>`, `Arc<SqliteStore>`, a test wrapper), so callers hand over
//! `store.clone()` unchanged; a test double may instead implement these eight
//! methods alone.

use mailroom_model::{MessageId, TenantId};
use mailroom_store::{
    DirectoryStore, DueRecipient, Lease, MessageStore, NewMessage, Outcome, QueueStore, StoreError,
    TenantRecord,
};
use std::sync::Arc;

/// What the delivery engine needs of the store. The methods mean what the role
/// traits' methods of the same name mean (`QueueStore`, `MessageStore`,
/// `DirectoryStore`).
#[async_trait::async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError>;

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError>;

    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError>;

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError>;

    async fn release_node(&self, owner: &str) -> Result<u64, StoreError>;

    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Bounce reports (DSNs) are queued like any message.
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError>;

    /// For the tenant's `bounce_reports` setting.
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;
}

#[async_trait::async_trait]
impl<T> DeliveryStore for Arc<T>
where
    T: QueueStore + MessageStore + DirectoryStore + ?Sized,
{
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError> {
        QueueStore::claim_due(&**self, lease, now, limit).await
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        QueueStore::record_outcomes(&**self, outcomes).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError> {
        QueueStore::renew_leases(&**self, owner, tokens, until).await
    }

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        QueueStore::release(&**self, owner, keys).await
    }

    async fn release_node(&self, owner: &str) -> Result<u64, StoreError> {
        QueueStore::release_node(&**self, owner).await
    }

    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        MessageStore::load_body(&**self, id).await
    }

    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        MessageStore::enqueue(&**self, message).await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        DirectoryStore::get_tenant(&**self, id).await
    }
}
