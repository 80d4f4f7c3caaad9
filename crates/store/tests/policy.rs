//! Per-send lookups on both backends: idempotency keys (written with their message,
//! read back within a window, pruned), the per-tenant hourly message counts behind
//! daily quotas, and an `Idempotency-Key` submitted through two nodes at once.

#[macro_use]
mod common;

use common::tenant;
use mailroom_model::TenantId;
use mailroom_store::{IdempotencyRecord, NewMessage, StoreError};
use serde_json::json;

fn message(tenant: &TenantId, received_at: i64, key: Option<(&str, i64)>) -> NewMessage {
    let m = common::new_message(
        tenant,
        "app@acme.test",
        vec![common::recipient("a@example.net")],
    );
    NewMessage {
        idempotency: key.map(|(k, created_at)| IdempotencyRecord {
            key: k.into(),
            request_hash: format!("hash-{k}"),
            response: json!({ "id": m.id.as_str() }),
            created_at,
        }),
        received_at,
        source: "api",
        ..m
    }
}

const HOUR: i64 = 3_600_000;

conformance!(
    idempotency_keys_replay_within_their_window_and_are_pruned,
    |store: DynStore| async move {
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let first = message(&t, 10 * HOUR, Some(("k1", 10 * HOUR)));
        store.enqueue(first.clone()).await.unwrap();
        store
            .enqueue(message(&t, 12 * HOUR, Some(("k2", 12 * HOUR))))
            .await
            .unwrap();

        let got = store
            .get_idempotency(&t, "k1", 10 * HOUR)
            .await
            .unwrap()
            .expect("within the window");
        assert_eq!(got, first.idempotency.clone().unwrap());
        assert_eq!(got.response, json!({ "id": first.id.as_str() }));
        // Older than the window, another tenant's, another key: nothing.
        assert!(
            store
                .get_idempotency(&t, "k1", 10 * HOUR + 1)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get_idempotency(&other, "k1", 0)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store.get_idempotency(&t, "K1", 0).await.unwrap().is_none(),
            "keys are exact"
        );

        assert_eq!(store.prune_idempotency(11 * HOUR).await.unwrap(), 1);
        assert!(store.get_idempotency(&t, "k1", 0).await.unwrap().is_none());
        assert!(store.get_idempotency(&t, "k2", 0).await.unwrap().is_some());
        assert_eq!(store.prune_idempotency(11 * HOUR).await.unwrap(), 0);
    }
);

conformance!(
    message_counts_by_tenant_and_hour,
    |store: DynStore| async move {
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        for at in [5 * HOUR, 5 * HOUR + 1, 6 * HOUR - 1, 6 * HOUR, 9 * HOUR + 7] {
            store.enqueue(message(&t, at, None)).await.unwrap();
        }
        store
            .enqueue(message(&other, 6 * HOUR + 5, None))
            .await
            .unwrap();
        store
            .enqueue(message(&other, 4 * HOUR, None))
            .await
            .unwrap();

        let mut counts = store.message_counts_since(5 * HOUR).await.unwrap();
        counts.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        let mut expected = vec![
            (t.clone(), 5, 3),
            (t.clone(), 6, 1),
            (t.clone(), 9, 1),
            (other.clone(), 6, 1),
        ];
        expected.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        assert_eq!(counts, expected);
        assert!(
            store
                .message_counts_since(10 * HOUR)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

/// The same `Idempotency-Key` submitted through two nodes at once (each node's API
/// serialises a key only among its own requests): exactly one message may be
/// accepted, and the stored response must be that message's. The loser must fail
/// (a `Conflict` the API can answer by replaying the stored response), not be
/// accepted silently as a second message.
///
/// It failed (both messages accepted) while the writer wrote the key with
/// `ON CONFLICT ... DO UPDATE`; the writer now replaces only a key past its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_through_two_nodes_creates_one_message() {
    let db = common::TestDb::postgres().await;
    let a = db.open().await;
    let b = db.open().await;
    let t = tenant(&a, "acme").await;
    for round in 0..20 {
        let key = format!("key-{round}");
        let now = mailroom_model::now_millis();
        let ma = message(&t, now, Some((&key, now)));
        let mb = message(&t, now, Some((&key, now)));
        let (ra, rb) = tokio::join!(a.enqueue(ma.clone()), b.enqueue(mb.clone()));
        let accepted: Vec<&NewMessage> = [(&ra, &ma), (&rb, &mb)]
            .into_iter()
            .filter(|(r, _)| r.is_ok())
            .map(|(_, m)| m)
            .collect();
        for r in [&ra, &rb] {
            assert!(
                matches!(r, Ok(()) | Err(StoreError::Conflict(_))),
                "round {round}: {r:?}"
            );
        }
        assert_eq!(accepted.len(), 1, "round {round}: {ra:?} {rb:?}");
        let stored = a.get_idempotency(&t, &key, 0).await.unwrap().unwrap();
        assert_eq!(stored.response, json!({ "id": accepted[0].id.as_str() }));
        let loser = if ra.is_ok() { &mb } else { &ma };
        assert!(a.get_message(&loser.id).await.unwrap().is_none());
    }
}
