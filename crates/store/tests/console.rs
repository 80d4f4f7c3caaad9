//! The console role on both backends (conformance): the event counters equal a recount
//! from the events after a run with deliveries, deferrals, hard and soft bounces,
//! opens and a restart in the middle; message search by each filter with cursor
//! paging; sessions with expiry, and their end when the key is revoked or the operator
//! token rotated.

#[macro_use]
mod common;

use common::tenant;
use mailroom_model::{
    ApiKeyId, AttemptDetail, EventType, KeyScope, MessageId, RecipientState, TenantId,
};
use mailroom_store::{
    DynStore, EventQuery, Granularity, Lease, MessageSearch, NewApiKey, NewEvent, NewMessage,
    Outcome, SessionRecord, StatsQuery, StatsSplit,
};
use serde_json::json;
use std::collections::BTreeMap;

const TOKEN: i64 = 7;

/// Message `n` of `tenant` at `at`: two recipients (a.test, B.test), tagged, with a subject.
fn message(tenant: &TenantId, n: usize, at: i64) -> NewMessage {
    let recipients = ["a.test", "B.test"]
        .iter()
        .map(|d| common::recipient(&format!("user{n}@{d}")))
        .collect();
    NewMessage {
        rfc_message_id: Some(format!("<m{n}@acme.test>")),
        received_at: at,
        source: "api",
        body: format!("From: app@acme.test\r\nSubject: Invoice {n}\r\n\r\nhi\r\n").into_bytes(),
        accepted_detail: mailroom_model::AcceptedDetail {
            source: "api".into(),
            subject: Some(format!("Invoice {n} 100%_off")),
            ..Default::default()
        }
        .into(),
        lease: Some(Lease {
            owner: "test".into(),
            token: TOKEN,
            until: at + 600_000,
        }),
        meta: Some(
            json!({ "tags": [if n.is_multiple_of(3) { "welcome" } else { "receipt" }, "all"] }),
        ),
        ..common::new_message(tenant, &format!("app{}@acme.test", n % 2), recipients)
    }
}

/// Delivers, defers or bounces each recipient of `m` by `n`.
async fn outcomes(store: &DynStore, m: &NewMessage, n: usize, at: i64) {
    let outs = m
        .recipients
        .iter()
        .enumerate()
        .map(|(idx, r)| {
            let (state, event, detail) = match (idx, n % 4) {
                (0, 0 | 1) => (
                    RecipientState::Delivered,
                    EventType::Delivered,
                    AttemptDetail::default(),
                ),
                (0, _) => (
                    RecipientState::Deferred,
                    EventType::Deferred,
                    AttemptDetail::default(),
                ),
                (_, 0) => (
                    RecipientState::Bounced,
                    EventType::Bounced,
                    AttemptDetail {
                        bounce_class: Some(mailroom_model::BounceClass::Hard),
                        ..Default::default()
                    },
                ),
                (_, 1) => (
                    RecipientState::Bounced,
                    EventType::Bounced,
                    AttemptDetail {
                        bounce_class: Some(mailroom_model::BounceClass::Soft),
                        ..Default::default()
                    },
                ),
                _ => (
                    RecipientState::Delivered,
                    EventType::Delivered,
                    AttemptDetail::default(),
                ),
            };
            Outcome {
                message_id: m.id.clone(),
                idx: idx as i64,
                recipient: r.address.clone(),
                tenant_id: m.tenant_id.clone(),
                state,
                attempted: true,
                next_attempt_at: (state == RecipientState::Deferred).then_some(at + 3_600_000),
                last_reply: Some("451 4.3.0 try later".into()),
                last_mx: None,
                event,
                detail,
                at,
                suppress: false,
                lease_token: TOKEN,
            }
        })
        .collect();
    store.record_outcomes(outs).await.expect("outcomes");
    if n.is_multiple_of(2) {
        store
            .record_event(NewEvent {
                kind: EventType::Opened,
                at,
                message_id: m.id.clone(),
                tenant_id: m.tenant_id.clone(),
                recipient: Some(m.recipients[0].address.clone()),
                detail: mailroom_model::TrackingDetail::default().into(),
            })
            .await
            .expect("open");
    }
}

/// A run of `count` messages starting at `start`, one a minute and a half apart.
async fn run(
    store: &DynStore,
    tenant: &TenantId,
    from_n: usize,
    count: usize,
    start: i64,
) -> Vec<NewMessage> {
    let mut out = Vec::new();
    for n in from_n..from_n + count {
        // Distinct id milliseconds, for the time-range filter.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let at = start + n as i64 * 90_000;
        let m = message(tenant, n, at);
        store.enqueue(m.clone()).await.expect("enqueue");
        outcomes(store, &m, n, at + 30_000).await;
        out.push(m);
    }
    out
}

fn kind_of(e: &mailroom_model::Event) -> String {
    match e.kind {
        EventType::Bounced if e.detail["bounce_class"] == "soft" => "bounced_soft".into(),
        EventType::Bounced => "bounced_hard".into(),
        k => k.as_str().into(),
    }
}

/// The counters recomputed from the event stream: (bucket, domain, kind) → n.
async fn recount(store: &DynStore, g: Granularity) -> BTreeMap<(i64, String, String), i64> {
    let mut out = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store
            .list_events(&EventQuery {
                after,
                tenant: None,
                kinds: vec![],
                recipient: None,
                message_id: None,
                limit: 500,
            })
            .await
            .expect("events");
        for e in &page.events {
            let e = &e.event;
            if e.message_id.is_none() || e.tenant_id.is_none() {
                continue;
            }
            let domain = e
                .recipient
                .as_deref()
                .and_then(|r| r.rsplit_once('@'))
                .map(|(_, d)| d.to_lowercase())
                .unwrap_or_default();
            let bucket = e.at - e.at.rem_euclid(g.millis());
            *out.entry((bucket, domain, kind_of(e))).or_insert(0) += 1;
        }
        if page.events.is_empty() {
            break;
        }
        after = page.next_cursor;
    }
    out
}

async fn counters(store: &DynStore, g: Granularity) -> BTreeMap<(i64, String, String), i64> {
    store
        .stats(&StatsQuery {
            granularity: g,
            from: 0,
            to: i64::MAX / 2,
            tenant: None,
            split: StatsSplit::Domain,
        })
        .await
        .expect("stats")
        .into_iter()
        .map(|r| ((r.bucket, r.group.unwrap_or_default(), r.kind), r.n))
        .collect()
}

conformance_db!(
    counters_equal_a_recount_across_a_restart,
    |db: TestDb| async move {
        let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let store = db.open().await;
        let t = tenant(&store, "acme").await;
        run(&store, &t, 0, 30, start).await;
        drop(store);
        // A new process on the same database.
        let store = db.open().await;
        run(&store, &t, 30, 30, start).await;
        for g in [Granularity::Minute, Granularity::Hour, Granularity::Day] {
            let want = recount(&store, g).await;
            assert!(want.len() >= 8, "{want:?}");
            assert_eq!(counters(&store, g).await, want, "{g:?}");
        }
        // Every kind of the run was counted: 60 messages x 2 recipients accepted.
        let day = counters(&store, Granularity::Day).await;
        let total = |kind: &str| -> i64 {
            day.iter()
                .filter(|(k, _)| k.2 == kind)
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(total("accepted"), 120);
        assert_eq!(total("bounced_hard") + total("bounced_soft"), 30);
        assert_eq!(total("bounced_hard"), 15);
        assert_eq!(total("deferred"), 30);
        assert_eq!(total("opened"), 30);
        // The domain is lowercased; the tenant filter and the tenant split agree.
        assert!(day.keys().any(|k| k.1 == "b.test"));
        let other = tenant(&store, "other").await;
        let q = |tenant: Option<TenantId>, split| StatsQuery {
            granularity: Granularity::Hour,
            from: start,
            to: start + 10 * 3_600_000,
            tenant,
            split,
        };
        assert!(
            store
                .stats(&q(Some(other), StatsSplit::None))
                .await
                .unwrap()
                .is_empty()
        );
        let by_tenant = store.stats(&q(None, StatsSplit::Tenant)).await.unwrap();
        assert!(
            by_tenant
                .iter()
                .all(|r| r.group.as_deref() == Some(t.as_str()))
        );
        let accepted: i64 = by_tenant
            .iter()
            .filter(|r| r.kind == "accepted")
            .map(|r| r.n)
            .sum();
        assert_eq!(accepted, 120);
    }
);

conformance!(
    counters_are_pruned_by_granularity,
    |store: DynStore| async move {
        let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let t = tenant(&store, "acme").await;
        run(&store, &t, 0, 12, start).await;
        let last = start + 12 * 90_000 + 30_000;
        // Within what is kept: nothing goes.
        assert_eq!(store.prune_counters(last + 3_600_000).await.unwrap(), 0);
        for g in [Granularity::Minute, Granularity::Hour, Granularity::Day] {
            assert_eq!(counters(&store, g).await, recount(&store, g).await, "{g:?}");
        }
        // Five hours on: the minute rows go, the hour and day rows stay.
        let n = store.prune_counters(last + 5 * 3_600_000).await.unwrap();
        assert!(n > 0);
        assert!(counters(&store, Granularity::Minute).await.is_empty());
        for g in [Granularity::Hour, Granularity::Day] {
            assert_eq!(counters(&store, g).await, recount(&store, g).await, "{g:?}");
        }
        // Three days on: the hour rows go too; the day rows still equal a recount.
        assert!(store.prune_counters(last + 3 * 86_400_000).await.unwrap() > 0);
        assert!(counters(&store, Granularity::Hour).await.is_empty());
        let day = counters(&store, Granularity::Day).await;
        assert!(!day.is_empty());
        assert_eq!(day, recount(&store, Granularity::Day).await);
    }
);

conformance!(
    message_search_filters_and_pages,
    |store: DynStore| async move {
        let start = mailroom_model::now_millis() - 3_600_000;
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let mine = run(&store, &t, 0, 12, start).await;
        run(&store, &other, 100, 3, start).await;
        let search = |f: &dyn Fn(&mut MessageSearch)| {
            let mut s = MessageSearch {
                tenant: Some(t.clone()),
                limit: 100,
                ..Default::default()
            };
            f(&mut s);
            s
        };
        let ids = |v: Vec<mailroom_store::MessageSummary>| -> Vec<MessageId> {
            v.into_iter().map(|m| m.id).collect()
        };
        // Newest first, only the tenant's own.
        let all = store.search_messages(&search(&|_| {})).await.unwrap();
        assert_eq!(all.len(), 12);
        assert_eq!(all[0].id, mine[11].id);
        assert_eq!(all[0].subject.as_deref(), Some("Invoice 11 100%_off"));
        assert_eq!(all[0].tags, vec!["receipt".to_string(), "all".to_string()]);
        assert_eq!(all[0].recipients.len(), 2);
        assert_eq!(all[0].recipients[0].0, "user11@a.test");
        // Each filter.
        macro_rules! by {
            ($f:expr) => {
                store.search_messages(&search(&$f)).await.unwrap()
            };
        }
        assert_eq!(
            ids(by!(
                |s: &mut MessageSearch| s.recipient = Some("USER5@a.test".into())
            )),
            vec![mine[5].id.clone()]
        );
        assert_eq!(
            by!(|s: &mut MessageSearch| s.sender = Some("app1@acme.test".into())).len(),
            6
        );
        assert_eq!(
            ids(by!(
                |s: &mut MessageSearch| s.rfc_message_id = Some("m7@acme.test".into())
            )),
            vec![mine[7].id.clone()]
        );
        assert_eq!(
            by!(|s: &mut MessageSearch| s.tag = Some("welcome".into())).len(),
            4
        );
        assert_eq!(
            ids(by!(
                |s: &mut MessageSearch| s.subject = Some("invoice 10".into())
            )),
            vec![mine[10].id.clone()]
        );
        // LIKE wildcards in the input are literal.
        assert_eq!(
            by!(|s: &mut MessageSearch| s.subject = Some("100%_off".into())).len(),
            12
        );
        assert_eq!(
            by!(|s: &mut MessageSearch| s.subject = Some("1_0".into())).len(),
            0
        );
        // n % 4 in {2, 3}: the first recipient deferred.
        assert_eq!(
            by!(|s: &mut MessageSearch| s.state = Some("deferred".into())).len(),
            6
        );
        assert_eq!(
            by!(|s: &mut MessageSearch| s.state = Some("queued".into())).len(),
            0
        );
        // The time range is over the time-ordered ids (the id's time is the receiving time).
        let id_ms = |m: &NewMessage| {
            ulid::Ulid::from_string(m.id.as_str())
                .unwrap()
                .timestamp_ms() as i64
        };
        let from = id_ms(&mine[4]);
        let to = id_ms(&mine[8]);
        assert_eq!(
            ids(by!(|s: &mut MessageSearch| {
                s.from = Some(from);
                s.to = Some(to);
            })),
            (4..8).rev().map(|i| mine[i].id.clone()).collect::<Vec<_>>()
        );
        // Cursor paging visits every message once.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = by!(|s: &mut MessageSearch| {
                s.limit = 5;
                s.before = before.clone();
            });
            if page.is_empty() {
                break;
            }
            before = page.last().map(|m| m.id.clone());
            seen.extend(ids(page));
        }
        assert_eq!(seen, all.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
        // The operator (no tenant) sees both tenants.
        let every = store
            .search_messages(&MessageSearch {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(every.len(), 15);
        // The queue by destination: the deferred recipients, all on a.test.
        let q = store.queue_destinations(10).await.unwrap();
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!((q[0].domain.as_str(), q[0].count), ("a.test", 7));
        assert_eq!(q[0].last_error.as_deref(), Some("451 4.3.0 try later"));
    }
);

conformance!(
    sessions_expire_and_end_with_their_key,
    |store: DynStore| async move {
        let t = tenant(&store, "acme").await;
        let key = ApiKeyId::generate();
        store
            .create_api_key(NewApiKey {
                id: key.clone(),
                tenant_id: t.clone(),
                name: "console".into(),
                scope: KeyScope::Read,
                secret_hash: "h1".into(),
            })
            .await
            .unwrap();
        let now = mailroom_model::now_millis();
        let session = |hash: &str, tenant: Option<TenantId>, key: Option<ApiKeyId>, expires_at| {
            SessionRecord {
                token_hash: hash.into(),
                tenant_id: tenant,
                api_key_id: key,
                csrf_token: format!("csrf-{hash}"),
                created_at: now,
                expires_at,
                scope: None,
                tenant_name: None,
            }
        };
        store
            .create_session(session(
                "t1",
                Some(t.clone()),
                Some(key.clone()),
                now + 60_000,
            ))
            .await
            .unwrap();
        store
            .create_session(session("op", None, None, now + 60_000))
            .await
            .unwrap();
        store
            .create_session(session("old", None, None, now - 1))
            .await
            .unwrap();
        let s = store
            .get_session("t1", now)
            .await
            .unwrap()
            .expect("tenant session");
        assert_eq!(s.tenant_id.as_ref(), Some(&t));
        assert_eq!(s.scope, Some(KeyScope::Read));
        assert_eq!(s.tenant_name.as_deref(), Some("acme"));
        assert_eq!(s.csrf_token, "csrf-t1");
        assert!(
            store.get_session("old", now).await.unwrap().is_none(),
            "expired"
        );
        assert!(
            store
                .get_session("t1", now + 60_000)
                .await
                .unwrap()
                .is_none(),
            "expired later"
        );
        assert_eq!(store.prune_sessions(now).await.unwrap(), 1);
        // Revoking the key ends its sessions.
        assert!(store.revoke_api_key(&key).await.unwrap());
        assert!(store.get_session("t1", now).await.unwrap().is_none());
        // Rotating the operator token ends operator sessions; writing the same digest does not.
        store.set_operator_token_hash("d1").await.unwrap();
        store
            .create_session(session("op2", None, None, now + 60_000))
            .await
            .unwrap();
        store.set_operator_token_hash("d1").await.unwrap();
        assert!(store.get_session("op2", now).await.unwrap().is_some());
        store.set_operator_token_hash("d2").await.unwrap();
        assert!(store.get_session("op2", now).await.unwrap().is_none());
        assert!(store.get_session("op", now).await.unwrap().is_none());
        assert!(!store.delete_session("op").await.unwrap());
    }
);
