//! The store as the policy layer sees it: the directory snapshot and API-key use
//! (directory role), the suppression check at RCPT and the per-hour message counts
//! for the daily quotas (send-policy role) and the directory version the refresher polls (cluster role) — nothing of
//! the queue, events or domains. Sender health reads its counts through
//! [`crate::health::HealthReader`] (intake role).
//!
//! Any `Arc` of a store with those roles is one (`Arc<dyn Store>`, `Arc<SqliteStore>`,
//! a test wrapper), so callers hand over `store.clone()` unchanged; a test double may
//! instead implement these methods alone.

use mailroom_model::{ApiKeyId, TenantId};
use mailroom_store::{
    ClusterStore, DirectorySnapshot, DirectoryStore, SendPolicyStore, StoreError,
};
use std::collections::HashMap;
use std::sync::Arc;

/// What the refresher needs: the version the cached tables' triggers bump
/// (`ClusterStore::directory_version`).
#[async_trait::async_trait]
pub trait DirectoryVersion: Send + Sync + 'static {
    async fn directory_version(&self) -> Result<i64, StoreError>;
}

#[async_trait::async_trait]
impl<T> DirectoryVersion for Arc<T>
where
    T: ClusterStore + ?Sized,
{
    async fn directory_version(&self) -> Result<i64, StoreError> {
        ClusterStore::directory_version(&**self).await
    }
}

/// What [`crate::Policy`] needs of the store. The methods mean what the role traits'
/// methods of the same name mean (`DirectoryStore`, `SendPolicyStore`, `ClusterStore`).
#[async_trait::async_trait]
pub trait PolicyStore: DirectoryVersion {
    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError>;

    async fn record_api_key_use(&self, uses: Vec<(ApiKeyId, i64)>) -> Result<(), StoreError>;

    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError>;

    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<HashMap<String, String>, StoreError>;
}

#[async_trait::async_trait]
impl<T> PolicyStore for Arc<T>
where
    T: DirectoryStore + SendPolicyStore + ClusterStore + ?Sized,
{
    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        DirectoryStore::load_directory(&**self).await
    }

    async fn record_api_key_use(&self, uses: Vec<(ApiKeyId, i64)>) -> Result<(), StoreError> {
        DirectoryStore::record_api_key_use(&**self, uses).await
    }

    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
        SendPolicyStore::message_counts_since(&**self, since).await
    }

    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        SendPolicyStore::suppressed_among(&**self, tenant, addresses).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, PolicyConfig, Refresher};
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    /// A double with only the policy's methods: no queue, events or domains.
    #[derive(Default)]
    struct Double {
        loads: AtomicUsize,
        version: AtomicI64,
    }

    #[async_trait::async_trait]
    impl DirectoryVersion for Arc<Double> {
        async fn directory_version(&self) -> Result<i64, StoreError> {
            Ok(self.version.load(Ordering::SeqCst))
        }
    }

    #[async_trait::async_trait]
    impl PolicyStore for Arc<Double> {
        async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(DirectorySnapshot::default())
        }

        async fn record_api_key_use(&self, _: Vec<(ApiKeyId, i64)>) -> Result<(), StoreError> {
            Ok(())
        }

        async fn message_counts_since(
            &self,
            _: i64,
        ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
            Ok(Vec::new())
        }

        async fn suppressed_among(
            &self,
            _: &TenantId,
            _: &[String],
        ) -> Result<HashMap<String, String>, StoreError> {
            Ok(HashMap::new())
        }
    }

    #[tokio::test]
    async fn a_double_with_only_the_policy_methods_loads_and_is_refreshed() {
        let double = Arc::new(Double::default());
        let policy = Policy::load(double.clone(), PolicyConfig::default())
            .await
            .unwrap();
        assert_eq!(double.loads.load(Ordering::SeqCst), 1);
        let mut refresher = Refresher::new(double.clone(), vec![policy]);
        assert!(refresher.poll().await.unwrap(), "first poll reloads");
        assert!(!refresher.poll().await.unwrap(), "same version: no reload");
        double.version.store(7, Ordering::SeqCst);
        assert!(refresher.poll().await.unwrap(), "moved version: reload");
        assert_eq!(double.loads.load(Ordering::SeqCst), 3);
    }
}
