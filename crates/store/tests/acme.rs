//! The ACME role on both backends (conformance): an HTTP-01 challenge is stored, read
//! back (by a second store on the same database: another node), replaced, hidden once
//! expired, and removed with the expired ones.

#[macro_use]
mod common;

/// The key authorization of the first token (RFC 8555 §8.1: token "." thumbprint).
const TOK1: &str = "tok1.thumbprint";

conformance_db!(acme_challenges_are_shared, |db: TestDb| async move {
    let node_a = db.open().await;
    let node_b = db.open().await;
    assert_eq!(
        node_a.get_acme_challenge("tok1", 1_000).await.unwrap(),
        None
    );
    node_a
        .put_acme_challenge("tok1", TOK1, 10_000)
        .await
        .unwrap();
    node_a
        .put_acme_challenge("tok2", "tok2.thumbprint", 5_000)
        .await
        .unwrap();
    // Another node answers the CA's request with what the ordering node stored.
    assert_eq!(
        node_b.get_acme_challenge("tok1", 1_000).await.unwrap(),
        Some(TOK1.to_string())
    );
    // Replaced, not duplicated.
    node_a
        .put_acme_challenge("tok1", "tok1.other", 20_000)
        .await
        .unwrap();
    assert_eq!(
        node_b.get_acme_challenge("tok1", 15_000).await.unwrap(),
        Some("tok1.other".to_string())
    );
    // Expired: not answered any more.
    assert_eq!(
        node_b.get_acme_challenge("tok2", 5_000).await.unwrap(),
        None
    );
    assert_eq!(
        node_b.get_acme_challenge("tok2", 4_999).await.unwrap(),
        Some("tok2.thumbprint".to_string())
    );
    assert_eq!(node_b.get_acme_challenge("nope", 0).await.unwrap(), None);
    // Removing one token also sweeps the expired ones.
    assert!(node_a.remove_acme_challenge("tok1", 6_000).await.unwrap());
    assert!(!node_a.remove_acme_challenge("tok1", 6_000).await.unwrap());
    assert_eq!(
        node_b.get_acme_challenge("tok1", 1_000).await.unwrap(),
        None
    );
    assert_eq!(
        node_b.get_acme_challenge("tok2", 1_000).await.unwrap(),
        None
    );
});
