//! Fixtures shared by the delivery integration tests.

pub use mailroom_testkit::smtp_sink as sink;
pub mod spy;

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard)
/// with one tenant, `acme`: what every delivery test starts from.
pub async fn store_with_tenant() -> (
    mailroom_store::DynStore,
    mailroom_model::TenantId,
    tempfile::TempDir,
) {
    use mailroom_store::DirectoryStore as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = mailroom_store::sqlite::SqliteStore::open(&dir.path().join("mailroom.db"))
        .await
        .expect("open store");
    let tenant = store
        .create_tenant(mailroom_store::NewTenant {
            id: mailroom_model::TenantId::generate(),
            name: "acme".into(),
            api_key_hash: "unused".into(),
        })
        .await
        .expect("create tenant");
    (std::sync::Arc::new(store), tenant.id, dir)
}
