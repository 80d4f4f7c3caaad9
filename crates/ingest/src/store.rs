//! The store as ingest sees it: the durable enqueue (message role), giving back
//! recipients delivery refused at hand-off (queue role), the suppression lookup
//! (send-policy role) and the DKIM keys the signer caches (domain role, through
//! [`KeySource`]) — nothing of the directory, events or intake.
//!
//! Any `Arc` of a store with those roles is one (`Arc<dyn Store>`, `Arc<SqliteStore>`,
//! a test wrapper), so callers hand over `store.clone()` unchanged; a test double may
//! instead implement these methods alone.

use mailroom_model::{MessageId, TenantId};
use mailroom_store::{
    DkimKeyRecord, DomainStore, MessageStore, NewMessage, QueueStore, SendPolicyStore,
    SigningChoiceRecord, SigningStore, StoreError,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Where the signer reads its keys (`DomainStore::list_dkim_keys`) and the signature
/// choices (`SigningStore::list_signing_choices`).
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + 'static {
    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError>;

    async fn list_signing_choices(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SigningChoiceRecord>, StoreError>;
}

#[async_trait::async_trait]
impl<T> KeySource for Arc<T>
where
    T: DomainStore + SigningStore + ?Sized,
{
    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError> {
        DomainStore::list_dkim_keys(&**self, domain).await
    }

    async fn list_signing_choices(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SigningChoiceRecord>, StoreError> {
        SigningStore::list_signing_choices(&**self, tenant).await
    }
}

/// What [`crate::Ingest`] needs of the store. The methods mean what the role traits'
/// methods of the same name mean (`MessageStore`, `QueueStore`, `SendPolicyStore`).
#[async_trait::async_trait]
pub trait IngestStore: KeySource {
    /// Returns once the message is committed (and, on SQLite, fsynced).
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError>;

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError>;

    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<HashMap<String, String>, StoreError>;

    /// Whether this store instance wrote a suppression for `tenant` itself
    /// (`SendPolicyStore::suppression_noted`): may add a lookup, never skip one.
    fn suppression_noted(&self, tenant: &TenantId) -> bool;
}

#[async_trait::async_trait]
impl<T> IngestStore for Arc<T>
where
    T: MessageStore + QueueStore + SendPolicyStore + DomainStore + SigningStore + ?Sized,
{
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        MessageStore::enqueue(&**self, message).await
    }

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        QueueStore::release(&**self, owner, keys).await
    }

    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        SendPolicyStore::suppressed_among(&**self, tenant, addresses).await
    }

    fn suppression_noted(&self, tenant: &TenantId) -> bool {
        SendPolicyStore::suppression_noted(&**self, tenant)
    }
}
