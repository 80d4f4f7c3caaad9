//! Stores to test against: a fresh SQLite file in a temporary directory, and tenants
//! in any store. (The store crate's own conformance harness, which runs one test on
//! both backends, stays in `crates/store/tests/common`: only its tests use it.)

use mailroom_model::TenantId;
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{DynStore, NewDomain, NewTenant};
use std::sync::Arc;

/// A migrated SQLite store in a fresh temporary directory (removed when the returned
/// guard is dropped: keep it alive as long as the store).
pub async fn sqlite() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("mailroom.db"))
        .await
        .expect("open store");
    (Arc::new(store), dir)
}

/// [`sqlite`] with one tenant, `acme`: what most pipeline tests start from.
pub async fn sqlite_with_tenant() -> (DynStore, TenantId, tempfile::TempDir) {
    let (store, dir) = sqlite().await;
    let store: DynStore = store;
    let tenant = tenant(&store, "acme").await;
    (store, tenant, dir)
}

/// Creates tenant `name` (API key hash `hash-of-<name>`) and returns its id.
pub async fn tenant(store: &DynStore, name: &str) -> TenantId {
    store
        .create_tenant(NewTenant {
            id: TenantId::generate(),
            name: name.into(),
            api_key_hash: format!("hash-of-{name}"),
        })
        .await
        .expect("create tenant")
        .id
}

/// Adds sending domain `name` to `tenant`, already verified, with no DKIM keys.
pub async fn verified_domain(store: &DynStore, tenant: &TenantId, name: &str) {
    store
        .add_domain(NewDomain {
            tenant_id: tenant.clone(),
            name: name.into(),
            verified: true,
            verification_token: "tok".into(),
            dkim_keys: vec![],
        })
        .await
        .expect("add domain");
}
