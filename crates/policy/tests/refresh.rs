//! Two `Policy` instances on one SQLite database are two nodes: a change written
//! through one (and reloaded there) reaches the other through its refresher within
//! 2 s (measured). While the other's database connection is cut its polls fail, it
//! keeps answering from its cache, and it catches up by itself once the connection is
//! back.

#[path = "../../api/tests/support/flaky_store.rs"]
mod flaky_store;

use flaky_store::FlakyStore;
use mailroom_model::{CredentialId, TenantId, TenantStatus};
use mailroom_policy::{AuthVerdict, Policy, PolicyConfig, Refresher, Refusal, secrets};
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{DynStore, NewCredential, NewTenant, TenantSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

async fn within_2s(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: never");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    println!("{what}: {} ms", took.as_millis());
    assert!(took < Duration::from_secs(2), "{what}: {took:?}");
}

#[tokio::test]
async fn the_other_node_follows_within_two_seconds_and_rides_out_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let a_store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b_flaky = FlakyStore::new(Arc::new(SqliteStore::open(&path).await.unwrap()));
    let a: DynStore = a_store.clone();
    let b_store: DynStore = b_flaky.clone();
    let node_a = Policy::load(a.clone(), PolicyConfig::default())
        .await
        .unwrap();
    let node_b = Policy::load(b_store.clone(), PolicyConfig::default())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    Refresher::new(b_store.clone(), vec![node_b.clone()])
        .spawn(Duration::from_millis(500), shutdown.clone());

    let tenant = TenantId::generate();
    a.create_tenant(NewTenant {
        id: tenant.clone(),
        name: "acme".into(),
        api_key_hash: secrets::hash_api_key("mrk_acme"),
    })
    .await
    .unwrap();
    let cred = CredentialId::generate();
    a.create_credential(NewCredential {
        id: cred.clone(),
        tenant_id: tenant.clone(),
        username: "mrs_acme".into(),
        password_hash: secrets::hash_password("pw-acme-1234"),
    })
    .await
    .unwrap();
    node_a.reload().await.unwrap();
    let ip = "192.0.2.1".parse().unwrap();
    // Polled on the directory: failed AUTH attempts would lock the address out.
    within_2s("new credential", async || {
        node_b.directory().credential("mrs_acme").is_some()
    })
    .await;
    assert!(matches!(
        node_b.authenticate(ip, "mrs_acme", "pw-acme-1234").await,
        AuthVerdict::Accepted(_)
    ));

    a.update_tenant(
        &tenant,
        TenantSettings {
            status: Some(TenantStatus::Paused),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    within_2s("paused tenant", async || {
        node_b.may_submit(&tenant) == Err(Refusal::Inactive(TenantStatus::Paused))
    })
    .await;

    // B's database connection is cut: its polls fail, its cache stays.
    b_flaky.set_down(true);
    assert!(a.revoke_credential(&tenant, &cred).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(b_flaky.refused() >= 2, "B kept polling");
    assert!(matches!(
        node_b.authenticate(ip, "mrs_acme", "pw-acme-1234").await,
        AuthVerdict::Accepted(_)
    ));
    assert!(node_b.directory().tenant(&tenant).is_some());
    // Back: B catches up by itself.
    b_flaky.set_down(false);
    within_2s("revocation made during B's outage", async || {
        node_b.authenticate(ip, "mrs_acme", "pw-acme-1234").await == AuthVerdict::Rejected
    })
    .await;
    shutdown.cancel();
}
