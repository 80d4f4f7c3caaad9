//! Durable storage behind one trait: messages with their recipients and events,
//! tenants, credentials, allowlists and domains. The SQLite backend (the embedded
//! default) lives in `sqlite`; a PostgreSQL backend implements the same trait.
//!
//! This crate knows nothing of SMTP, HTTP or retry policy: it stores and loads, and
//! promises that `enqueue` returns only once the message is committed and fsynced.

mod error;
pub mod sqlite;
mod types;

pub use error::StoreError;
pub use types::*;

use mailroom_model::{CredentialId, MessageId, TenantId};

pub type DynStore = std::sync::Arc<dyn Store>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes the message, its recipients (state `queued`) and one `accepted` event
    /// per recipient in one transaction. Returns after the commit is durable.
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError>;

    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, StoreError>;
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;

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

    /// Everything the policy layer caches in memory, read in one go.
    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError>;

    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError>;

    /// Recipient counts by state, for status and metrics.
    async fn count_recipients_by_state(&self) -> Result<Vec<(String, i64)>, StoreError>;
}
