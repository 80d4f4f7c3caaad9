//! Signature choices on both backends: set, replace, clear, per tenant and per
//! domain, listing for one tenant or all, and that every change moves the directory
//! version (other nodes' signers reload on it).

#[macro_use]
mod common;

use common::tenant;
use mailroom_model::Signatures;

conformance!(signing_choices, |store: DynStore| async move {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    assert!(store.list_signing_choices(None).await.unwrap().is_empty());

    let v0 = store.directory_version().await.unwrap();
    store
        .set_signing_choice(&a, None, Some(Signatures::Rsa))
        .await
        .unwrap();
    let v1 = store.directory_version().await.unwrap();
    assert!(v1 > v0, "setting a choice moves the directory version");
    store
        .set_signing_choice(&a, Some("mail.example"), Some(Signatures::None))
        .await
        .unwrap();
    store
        .set_signing_choice(&b, Some("b.example"), Some(Signatures::Ed25519))
        .await
        .unwrap();
    // Replacing keeps one row.
    store
        .set_signing_choice(&a, None, Some(Signatures::Ed25519))
        .await
        .unwrap();
    let v2 = store.directory_version().await.unwrap();
    assert!(v2 > v1);

    let of_a = store.list_signing_choices(Some(&a)).await.unwrap();
    let got: Vec<(Option<&str>, Signatures)> = of_a
        .iter()
        .map(|c| (c.domain.as_deref(), c.signatures))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, Signatures::Ed25519),
            (Some("mail.example"), Signatures::None)
        ]
    );
    assert!(of_a.iter().all(|c| c.tenant_id == a && c.updated_at > 0));
    assert_eq!(store.list_signing_choices(None).await.unwrap().len(), 3);

    // Clearing removes the row (back to the default); clearing twice is harmless.
    store.set_signing_choice(&a, None, None).await.unwrap();
    store.set_signing_choice(&a, None, None).await.unwrap();
    assert!(store.directory_version().await.unwrap() > v2);
    let of_a = store.list_signing_choices(Some(&a)).await.unwrap();
    assert_eq!(of_a.len(), 1);
    assert_eq!(of_a[0].domain.as_deref(), Some("mail.example"));
    let of_b = store.list_signing_choices(Some(&b)).await.unwrap();
    assert_eq!(
        (of_b[0].domain.as_deref(), of_b[0].signatures),
        (Some("b.example"), Signatures::Ed25519)
    );
});
