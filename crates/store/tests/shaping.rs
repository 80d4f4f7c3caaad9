//! The shaping role on both backends: throttles replace rather than duplicate, expire
//! and clear per site; egress counts add up across batches and stores (nodes); the
//! warm-up start is fixed by the first node that asks; tenant pools set and unset.

#[macro_use]
mod common;

use mailroom_model::TenantId;
use mailroom_store::{EgressCount, ThrottleRecord};

fn throttle(site: &str, tenant: Option<&str>, action: &str, expires_at: i64) -> ThrottleRecord {
    ThrottleRecord {
        id: 0,
        site: site.into(),
        provider: Some("google".into()),
        tenant: tenant.map(str::to_string),
        action: action.into(),
        value: (action == "throttle").then_some(60),
        rule: "gmail-rate".into(),
        cause: "421 4.7.28 unusual rate".into(),
        created_at: 1_000,
        expires_at,
    }
}

conformance!(
    throttles_replace_expire_and_clear,
    |store: DynStore| async move {
        let a = store
            .add_throttle(&throttle("provider:google", None, "throttle", 10_000))
            .await
            .unwrap();
        // The same site, tenant scope and action: updated in place.
        let mut again = throttle("provider:google", None, "throttle", 20_000);
        again.value = Some(30);
        let b = store.add_throttle(&again).await.unwrap();
        assert_eq!(a, b);
        store
            .add_throttle(&throttle("provider:google", Some("t1"), "suspend", 15_000))
            .await
            .unwrap();
        store
            .add_throttle(&throttle("provider:yahoo", None, "suspend", 5_000))
            .await
            .unwrap();
        let active = store.active_throttles(6_000).await.unwrap();
        assert_eq!(active.len(), 2, "{active:?}");
        assert_eq!(active[0].value, Some(30));
        assert_eq!(active[0].expires_at, 20_000);
        assert_eq!(active[0].tenant, None);
        assert_eq!(active[1].tenant.as_deref(), Some("t1"));
        assert_eq!(active[1].cause, "421 4.7.28 unusual rate");
        assert_eq!(store.active_throttles(4_000).await.unwrap().len(), 3);
        // Clearing one site removes its active rows (and sweeps expired ones).
        assert_eq!(
            store
                .clear_throttles(Some("provider:google"), 6_000)
                .await
                .unwrap(),
            2
        );
        assert!(store.active_throttles(0).await.unwrap().is_empty());
        store
            .add_throttle(&throttle("provider:apple", None, "cap_connections", 9_000))
            .await
            .unwrap();
        assert_eq!(store.clear_throttles(None, 0).await.unwrap(), 1);
    }
);

conformance_db!(egress_counts_add_up_across_nodes, |db: TestDb| async move {
    let n1 = db.open().await;
    let n2 = db.open().await;
    let c = |day, address: &str, provider: &str, sent| EgressCount {
        day,
        address: address.into(),
        provider: provider.into(),
        sent,
    };
    n1.add_egress_counts(&[
        c(100, "127.0.0.2", "google", 5),
        c(100, "127.0.0.3", "google", 2),
    ])
    .await
    .unwrap();
    n2.add_egress_counts(&[
        c(100, "127.0.0.2", "google", 7),
        c(101, "127.0.0.2", "google", 1),
    ])
    .await
    .unwrap();
    n2.add_egress_counts(&[]).await.unwrap();
    let day = n1.egress_counts(100).await.unwrap();
    assert_eq!(
        day,
        vec![
            c(100, "127.0.0.2", "google", 12),
            c(100, "127.0.0.3", "google", 2)
        ]
    );
    assert_eq!(n2.egress_counts(101).await.unwrap().len(), 1);
    assert!(n2.egress_counts(99).await.unwrap().is_empty());
    // The first node to ask fixes the warm-up start.
    assert_eq!(n1.warmup_start("127.0.0.2", 100).await.unwrap(), 100);
    assert_eq!(n2.warmup_start("127.0.0.2", 105).await.unwrap(), 100);
    assert_eq!(n2.warmup_start("127.0.0.3", 105).await.unwrap(), 105);
});

conformance!(tenant_pools_set_and_unset, |store: DynStore| async move {
    let t = common::tenant(&store, "acme").await;
    assert!(store.set_tenant_pool(&t, Some("warm")).await.unwrap());
    assert!(store.set_tenant_pool(&t, Some("cold")).await.unwrap());
    assert_eq!(
        store.tenant_pools().await.unwrap(),
        vec![(t.clone(), "cold".to_string())]
    );
    assert!(
        !store
            .set_tenant_pool(&TenantId::generate(), Some("warm"))
            .await
            .unwrap()
    );
    assert!(store.set_tenant_pool(&t, None).await.unwrap());
    assert!(store.tenant_pools().await.unwrap().is_empty());
});

conformance!(
    shaping_events_are_tenant_level_or_operator_only,
    |store: DynStore| async move {
        let t = common::tenant(&store, "acme").await;
        store
            .record_shaping_event(None, rule_event("provider:google", "suspend"))
            .await
            .unwrap();
        store
            .record_shaping_event(Some(&t), rule_event("provider:yahoo", "throttle"))
            .await
            .unwrap();
        let q = |tenant: Option<TenantId>| mailroom_store::EventQuery {
            after: 0,
            tenant,
            kinds: vec![mailroom_model::EventType::ShapingAction],
            recipient: None,
            message_id: None,
            limit: 10,
        };
        let all = store.list_events(&q(None)).await.unwrap().events;
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].event.tenant_id, None);
        assert_eq!(all[0].event.detail["action"], "suspend");
        let mine = store.list_events(&q(Some(t.clone()))).await.unwrap().events;
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].event.detail["site"], "provider:yahoo");
        assert_eq!(mine[0].event.kind.as_str(), "shaping.action");
    }
);

/// A response rule's `shaping.action` detail.
fn rule_event(site: &str, action: &str) -> mailroom_model::ShapingDetail {
    mailroom_model::ShapingDetail::Rule(mailroom_model::ShapingRuleDetail {
        action: action.into(),
        cause: "421 try later".into(),
        expires_at: None,
        kind: "rule".into(),
        provider: None,
        rule: "r".into(),
        site: site.into(),
        tenant: None,
        value: None,
    })
}
