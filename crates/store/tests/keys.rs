//! Named API keys: the SQLite migration that turns each tenant's key into a key
//! "default" of scope full, and the key operations' answers on both backends
//! (conflicts, rotation expiry, revocation of every secret, last use never moving
//! backwards, the operator token's digest).

#[macro_use]
mod common;

use mailroom_model::{ApiKeyId, KeyScope, TenantId, now_millis};
use mailroom_store::prelude::*;
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{NewApiKey, NewTenant, StoreError};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::Path;

/// A database as it was before named keys: the migrations up to 0008, one tenant.
async fn old_database(dir: &Path, tenant: &TenantId) -> std::path::PathBuf {
    let old = dir.join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < "0009" {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    let db = dir.join("mailroom.db");
    let mut conn = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.unwrap();
    assert_eq!(migrator.iter().count(), 8);
    migrator.run(&mut conn).await.unwrap();
    sqlx::query("INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, 'old', 'digest-of-old-key', 1000)")
        .bind(tenant.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn existing_tenant_keys_become_default_full_keys() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::generate();
    let db = old_database(dir.path(), &tenant).await;
    let store = SqliteStore::open(&db).await.expect("migrates");
    let keys = store.list_api_keys(Some(&tenant)).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].name, "default");
    assert_eq!(keys[0].scope, KeyScope::Full);
    assert_eq!(keys[0].created_at, 1000);
    let snapshot = store.load_directory().await.unwrap();
    assert_eq!(snapshot.api_key_secrets.len(), 1);
    assert_eq!(snapshot.api_key_secrets[0].hash, "digest-of-old-key");
    assert_eq!(snapshot.api_key_secrets[0].key_id, keys[0].id);
    assert_eq!(snapshot.api_key_secrets[0].expires_at, None);
    assert_eq!(store.operator_token_hash().await.unwrap(), None);
}

conformance!(key_operations, |store: DynStore| async move {
    let tenant = store
        .create_tenant(NewTenant {
            id: TenantId::generate(),
            name: "acme".into(),
            api_key_hash: "first".into(),
        })
        .await
        .unwrap();
    // The tenant's first key comes with it.
    let keys = store.list_api_keys(Some(&tenant.id)).await.unwrap();
    assert_eq!(
        (keys[0].name.as_str(), keys[0].scope),
        ("default", KeyScope::Full)
    );

    let new = |name: &str, hash: &str| NewApiKey {
        id: ApiKeyId::generate(),
        tenant_id: tenant.id.clone(),
        name: name.into(),
        scope: KeyScope::Send,
        secret_hash: hash.into(),
    };
    let ci = store.create_api_key(new("ci", "h1")).await.unwrap();
    assert!(matches!(
        store.create_api_key(new("ci", "h2")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_api_key(new("other", "h1")).await,
        Err(StoreError::Conflict(_))
    ));

    // Rotation: the old secret gets the expiry, a later rotation never extends it.
    let now = now_millis();
    let r = store
        .rotate_api_key(&ci.id, "h2", now + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.previous_secret_expires_at, Some(now + 60_000));
    assert!(r.rotated_at.is_some());
    store
        .rotate_api_key(&ci.id, "h3", now + 3_600_000)
        .await
        .unwrap();
    let secrets = store.load_directory().await.unwrap().api_key_secrets;
    let expiry = |h: &str| secrets.iter().find(|s| s.hash == h).map(|s| s.expires_at);
    assert_eq!(expiry("h1"), Some(Some(now + 60_000)));
    assert_eq!(expiry("h2"), Some(Some(now + 3_600_000)));
    assert_eq!(expiry("h3"), Some(None));
    // An expired secret is not in the directory at all.
    store.rotate_api_key(&ci.id, "h4", now - 1).await.unwrap();
    let secrets = store.load_directory().await.unwrap().api_key_secrets;
    assert!(
        !secrets
            .iter()
            .any(|s| ["h1", "h2", "h3"].contains(&s.hash.as_str()))
    );
    assert!(
        store
            .rotate_api_key(&ApiKeyId::generate(), "h5", now)
            .await
            .unwrap()
            .is_none()
    );

    // Last use only moves forward.
    store
        .record_api_key_use(vec![(ci.id.clone(), 5_000)])
        .await
        .unwrap();
    store
        .record_api_key_use(vec![(ci.id.clone(), 4_000)])
        .await
        .unwrap();
    let got = store.get_api_key(&ci.id).await.unwrap().unwrap();
    assert_eq!(got.last_used_at, Some(5_000));

    // Revocation removes the key and every secret.
    assert!(store.revoke_api_key(&ci.id).await.unwrap());
    assert!(!store.revoke_api_key(&ci.id).await.unwrap());
    assert!(store.get_api_key(&ci.id).await.unwrap().is_none());
    let snapshot = store.load_directory().await.unwrap();
    assert!(!snapshot.api_key_secrets.iter().any(|s| s.key_id == ci.id));
    assert_eq!(snapshot.api_keys.len(), 1);

    // The operator token's digest: one row, replaced.
    store.set_operator_token_hash("a").await.unwrap();
    store.set_operator_token_hash("b").await.unwrap();
    assert_eq!(
        store.operator_token_hash().await.unwrap().as_deref(),
        Some("b")
    );
});
