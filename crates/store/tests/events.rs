//! The event stream and webhook tables on both backends (conformance): a cursor that never skips or
//! repeats while writers commit, retention that spares what webhooks still owe, and
//! the delivery state machine (claim under a lease, retry, delivered, failed).

use mailroom_model::{EventType, TenantId, WebhookId, now_millis};
use mailroom_store::DynStore;
use mailroom_store::{DeliveryState, DeliveryUpdate, EventQuery, NewMessage, NewWebhook};
use std::collections::HashSet;

#[macro_use]
mod common;

async fn setup(store: DynStore) -> (DynStore, TenantId) {
    let t = common::tenant(&store, "acme").await;
    (store, t)
}

fn message(tenant: &TenantId, recipients: usize, at: i64) -> NewMessage {
    NewMessage {
        rfc_message_id: Some("<x@acme.test>".into()),
        received_at: at,
        ..common::new_message(tenant, "s@acme.test", common::recipients(recipients))
    }
}

async fn webhook(store: &DynStore, tenant: &TenantId, types: Option<Vec<EventType>>) -> WebhookId {
    store
        .create_webhook(NewWebhook {
            id: WebhookId::generate(),
            tenant_id: tenant.clone(),
            url: "http://127.0.0.1:9/".into(),
            event_types: types,
            secret: mailroom_secrets::Sealed::from_stored("whsec_test".into()),
        })
        .await
        .unwrap()
        .id
}

conformance!(
    cursor_never_skips_or_repeats_under_concurrent_writes,
    |store: DynStore| async move {
        let (store, tenant) = setup(store).await;
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let tenant = tenant.clone();
                tokio::spawn(async move {
                    for n in 0..25 {
                        store
                            .enqueue(message(&tenant, 1 + n % 3, now_millis()))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        let mut cursor = 0;
        let pull = |cursor: i64| {
            let store = store.clone();
            async move {
                store
                    .list_events(&EventQuery {
                        after: cursor,
                        limit: 7,
                        ..EventQuery::default()
                    })
                    .await
                    .unwrap()
            }
        };
        while !writers.iter().all(|w| w.is_finished()) {
            let page = pull(cursor).await;
            seen.extend(page.events.iter().map(|e| (e.seq, e.event.id.clone())));
            cursor = page.next_cursor;
            tokio::task::yield_now().await;
        }
        for w in writers {
            w.await.unwrap();
        }
        loop {
            let page = pull(cursor).await;
            if page.events.is_empty() && page.next_cursor == cursor {
                break;
            }
            seen.extend(page.events.iter().map(|e| (e.seq, e.event.id.clone())));
            cursor = page.next_cursor;
        }
        let all = store
            .list_events(&EventQuery {
                limit: 10_000,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        let want: Vec<_> = all
            .events
            .iter()
            .map(|e| (e.seq, e.event.id.clone()))
            .collect();
        // Per writer: 9 messages with 1 recipient, 8 with 2, 8 with 3.
        assert_eq!(
            want.len(),
            8 * (9 + 8 * 2 + 8 * 3),
            "every recipient has an event"
        );
        assert_eq!(
            seen, want,
            "the paged stream is the whole stream, in order, once"
        );
    }
);

conformance!(
    pages_filter_and_skip_non_matching_rows,
    |store: DynStore| async move {
        let (store, tenant) = setup(store).await;
        store
            .enqueue(message(&tenant, 3, now_millis()))
            .await
            .unwrap();
        let page = store
            .list_events(&EventQuery {
                kinds: vec![EventType::Delivered],
                limit: 10,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert!(page.events.is_empty());
        assert!(
            page.next_cursor >= 3,
            "the cursor moves past rows that did not match"
        );
        let page = store
            .list_events(&EventQuery {
                recipient: Some("r1@example.net".into()),
                tenant: Some(tenant.clone()),
                limit: 10,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(
            page.events[0].rfc_message_id.as_deref(),
            Some("<x@acme.test>")
        );
    }
);

conformance!(
    retention_spares_events_webhooks_still_owe,
    |store: DynStore| async move {
        let (store, tenant) = setup(store).await;
        let day = 86_400_000;
        let hook = webhook(&store, &tenant, None).await;
        let old = message(&tenant, 2, now_millis() - 40 * day);
        store.enqueue(old).await.unwrap();
        store
            .enqueue(message(&tenant, 1, now_millis()))
            .await
            .unwrap();
        let before = now_millis() - 30 * day;

        // Not yet fanned out: kept.
        assert_eq!(store.prune_events(before, 100).await.unwrap(), 0);
        let f = store.fan_out_events(100, now_millis()).await.unwrap();
        assert_eq!((f.events, f.deliveries), (3, 3));
        // Pending deliveries: kept.
        assert_eq!(store.prune_events(before, 100).await.unwrap(), 0);

        let now = now_millis();
        let due = store
            .claim_deliveries(&hook, now, now + 60_000, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 3);
        let old_ones: Vec<_> = due.iter().filter(|d| d.event.event.at < before).collect();
        assert_eq!(old_ones.len(), 2);
        for (d, state) in old_ones
            .iter()
            .zip([DeliveryState::Delivered, DeliveryState::Failed])
        {
            store
                .record_delivery(DeliveryUpdate {
                    webhook_id: hook.clone(),
                    seq: d.seq,
                    state,
                    attempts: 1,
                    next_attempt_at: None,
                    last_status: Some(200),
                    last_error: None,
                    at: now,
                })
                .await
                .unwrap();
        }
        assert_eq!(store.prune_events(before, 100).await.unwrap(), 2);
        let left = store
            .list_events(&EventQuery {
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(left.events.len(), 1);
        let rows = store.list_deliveries(&hook, None, 100).await.unwrap();
        assert_eq!(rows.len(), 1, "finished deliveries of pruned events go too");
        assert_eq!(rows[0].state, DeliveryState::Pending);
    }
);

conformance!(delivery_state_machine, |store: DynStore| async move {
    let (store, tenant) = setup(store).await;
    store
        .enqueue(message(&tenant, 1, now_millis()))
        .await
        .unwrap();
    // Created after that event: it is not sent to this webhook.
    let hook = webhook(&store, &tenant, Some(vec![EventType::Accepted])).await;
    let only_delivered = webhook(&store, &tenant, Some(vec![EventType::Delivered])).await;
    let f = store.fan_out_events(100, now_millis()).await.unwrap();
    assert_eq!((f.events, f.deliveries), (1, 0));

    store
        .enqueue(message(&tenant, 1, now_millis()))
        .await
        .unwrap();
    let f = store.fan_out_events(100, now_millis()).await.unwrap();
    assert_eq!(
        (f.events, f.deliveries),
        (1, 1),
        "only the webhook that wants `accepted`"
    );
    assert_eq!(
        store
            .fan_out_events(100, now_millis())
            .await
            .unwrap()
            .events,
        0
    );
    assert!(
        store
            .list_deliveries(&only_delivered, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let now = now_millis();
    let due = store
        .claim_deliveries(&hook, now, now + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 0);
    assert!(
        store
            .claim_deliveries(&hook, now, now + 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed under a lease"
    );
    // Failed attempt, due again at once.
    let update = |state, attempts, next, status| DeliveryUpdate {
        webhook_id: hook.clone(),
        seq: due[0].seq,
        state,
        attempts,
        next_attempt_at: next,
        last_status: status,
        last_error: Some("receiver answered 500".into()),
        at: now,
    };
    store
        .record_delivery(update(DeliveryState::Pending, 1, Some(now), Some(500)))
        .await
        .unwrap();
    assert_eq!(store.next_delivery_at(&hook).await.unwrap(), Some(now));
    let again = store
        .claim_deliveries(&hook, now, now + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    store
        .record_delivery(update(DeliveryState::Delivered, 2, None, Some(204)))
        .await
        .unwrap();
    // A late duplicate answer does not reopen a finished delivery.
    store
        .record_delivery(update(DeliveryState::Failed, 3, None, None))
        .await
        .unwrap();
    let rows = store
        .list_deliveries(&hook, Some(DeliveryState::Delivered), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(rows[0].last_status, Some(204));
    assert_eq!(rows[0].event_type, EventType::Accepted);
    assert_eq!(store.next_delivery_at(&hook).await.unwrap(), None);
    assert!(
        store
            .list_deliveries(&hook, Some(DeliveryState::Failed), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting the webhook removes its deliveries.
    assert!(store.delete_webhook(&hook).await.unwrap());
    assert!(!store.delete_webhook(&hook).await.unwrap());
    assert!(
        store
            .list_deliveries(&hook, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let ids: HashSet<_> = store
        .list_webhooks(Some(&tenant))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, HashSet::from([only_delivered]));
});

conformance!(
    claims_keep_each_recipients_events_in_stream_order,
    |store: DynStore| async move {
        let (store, tenant) = setup(store).await;
        let hook = webhook(&store, &tenant, None).await;
        let msg = message(&tenant, 2, now_millis());
        let id = msg.id.clone();
        store.enqueue(msg).await.unwrap();
        assert_eq!(store.cancel(&id, now_millis()).await.unwrap(), 2);
        let f = store.fan_out_events(100, now_millis()).await.unwrap();
        assert_eq!((f.events, f.deliveries), (4, 4));

        let now = now_millis();
        let kinds = |due: &[mailroom_store::DueDelivery]| {
            due.iter()
                .map(|d| {
                    (
                        d.event.event.kind.as_str().to_string(),
                        d.event.event.recipient.clone().unwrap_or_default(),
                    )
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        // Both recipients' `accepted` go out at once; their `cancelled` wait.
        let first = store.claim_deliveries(&hook, now, now, 10).await.unwrap();
        assert_eq!(
            kinds(&first),
            [
                ("accepted".to_string(), "r0@example.net".to_string()),
                ("accepted".to_string(), "r1@example.net".to_string())
            ]
        );
        // Claimed but unanswered (the lease ran out at `now`): still held back.
        let again = store.claim_deliveries(&hook, now, now, 10).await.unwrap();
        assert_eq!(
            kinds(&again),
            kinds(&first),
            "only the accepted ones come due again"
        );
        let finish = |seq, state| DeliveryUpdate {
            webhook_id: hook.clone(),
            seq,
            state,
            attempts: 1,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            at: now,
        };
        // r0's accepted delivered, r1's given up: each releases its own recipient's next event.
        store
            .record_delivery(finish(first[0].seq, DeliveryState::Delivered))
            .await
            .unwrap();
        let next = store
            .claim_deliveries(&hook, now, now + 60_000, 10)
            .await
            .unwrap();
        assert_eq!(
            kinds(&next),
            [
                ("accepted".to_string(), "r1@example.net".to_string()),
                ("cancelled".to_string(), "r0@example.net".to_string())
            ],
            "each recipient's next event, in any order"
        );
        store
            .record_delivery(finish(first[1].seq, DeliveryState::Failed))
            .await
            .unwrap();
        let last = store
            .claim_deliveries(&hook, now, now + 60_000, 10)
            .await
            .unwrap();
        assert_eq!(
            kinds(&last),
            [("cancelled".to_string(), "r1@example.net".to_string())]
        );
    }
);
