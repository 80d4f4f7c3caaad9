//! PostgreSQL-only behaviour, with several `PgStore`s on one database standing in for
//! several nodes: migrations racing at start, connection errors, claims that never
//! overlap, fencing after a lease runs out, the event cursor while several nodes
//! commit, NOTIFY per batch, singleton roles and the directory version.

use mailroom_model::{EventType, MessageId, RecipientState, TenantId, now_millis};
use mailroom_store::postgres::{PgSettings, PgStore};
use mailroom_store::{
    DynStore, EventQuery, Lease, NewEvent, NewMessage, NodeInfo, Outcome, StoreError,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::PgTestDb;

fn message(tenant: &TenantId, recipients: usize) -> NewMessage {
    common::new_message(tenant, "s@acme.test", common::recipients(recipients))
}

fn delivered(r: &mailroom_store::DueRecipient) -> Outcome {
    Outcome {
        message_id: r.message_id.clone(),
        idx: r.idx,
        recipient: r.address.clone(),
        tenant_id: r.tenant_id.clone(),
        state: RecipientState::Delivered,
        attempted: true,
        next_attempt_at: None,
        last_reply: Some("250 ok".into()),
        last_mx: None,
        event: EventType::Delivered,
        detail: Default::default(),
        at: now_millis(),
        suppress: false,
        lease_token: r.lease_token,
    }
}

async fn events_of(store: &DynStore, id: &MessageId) -> Vec<EventType> {
    store
        .list_events(&EventQuery {
            message_id: Some(id.clone()),
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.event.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_migrate_a_fresh_database_at_once() {
    let db = PgTestDb::create_empty().await;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let settings = db.settings();
        tasks.push(tokio::spawn(async move {
            let store = PgStore::connect(&settings).await?;
            store.migrate().await?;
            Ok::<_, StoreError>(store)
        }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().expect("every node migrates"));
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(applied, files, "each migration applied once");
    // Every connection runs with synchronous commit and the statement timeout.
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(stores[1].pool())
        .await
        .unwrap();
    assert_eq!(sync, "on");
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(stores[2].pool())
        .await
        .unwrap();
    assert_eq!(timeout, "30s");
    let idle: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(stores[2].pool())
        .await
        .unwrap();
    assert_eq!(idle, "30s");
}

#[tokio::test]
async fn bad_url_and_unreachable_server_are_clear_errors() {
    let bad = PgStore::connect(&PgSettings::new("postgres://[nope")).await;
    let text = bad.err().expect("bad URL fails").to_string();
    assert!(text.contains("bad PostgreSQL URL"), "{text}");

    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = PgSettings::new(format!("postgres://postgres@127.0.0.1:{port}/x"));
    settings.pool_size = 1;
    let started = std::time::Instant::now();
    let down = PgStore::connect(&settings).await;
    let text = down.err().expect("unreachable fails").to_string();
    assert!(
        text.contains("cannot connect to PostgreSQL") && text.contains(&port.to_string()),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_the_same_recipient() {
    let db = PgTestDb::create().await;
    let a: DynStore = Arc::new(db.connect().await);
    let b: DynStore = Arc::new(db.connect().await);
    let tenant = TenantId::generate();
    let mut want = HashSet::new();
    for _ in 0..100 {
        let m = message(&tenant, 3);
        for i in 0..3 {
            want.insert((m.id.clone(), i as i64));
        }
        a.enqueue(m).await.unwrap();
    }
    let claimer = |store: DynStore, node: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let lease = Lease::new(node, now_millis() + 60_000);
                let batch = store.claim_due(&lease, now_millis(), 7).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                got.extend(batch.into_iter().map(|r| (r.message_id, r.idx)));
            }
            got
        })
    };
    let (ga, gb) = tokio::join!(claimer(a.clone(), "node-a"), claimer(b.clone(), "node-b"));
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    let mut all: Vec<_> = ga.iter().chain(&gb).cloned().collect();
    let n = all.len();
    all.sort_by(|x, y| (x.0.as_str(), x.1).cmp(&(y.0.as_str(), y.1)));
    all.dedup();
    assert_eq!(all.len(), n, "a recipient was claimed twice");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), want);
    assert!(!ga.is_empty() && !gb.is_empty(), "both nodes got work");
    let nodes = a.list_nodes(now_millis()).await.unwrap();
    assert!(nodes.is_empty(), "no heartbeat yet");
    for (id, store) in [("node-a", &a), ("node-b", &b)] {
        store
            .heartbeat(&NodeInfo {
                id: id.into(),
                started_at: 1,
                last_seen: now_millis(),
                version: "test".into(),
                detail: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
    let nodes = b.list_nodes(now_millis()).await.unwrap();
    let leased: Vec<(String, i64)> = nodes
        .iter()
        .map(|n| (n.id.clone(), n.leased_recipients))
        .collect();
    assert_eq!(
        leased,
        [
            ("node-a".to_string(), ga.len() as i64),
            ("node-b".to_string(), gb.len() as i64)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_records_nothing() {
    let db = PgTestDb::create().await;
    let a: DynStore = Arc::new(db.connect().await);
    let b: DynStore = Arc::new(db.connect().await);
    let tenant = TenantId::generate();
    let m = message(&tenant, 1);
    a.enqueue(m.clone()).await.unwrap();
    let now = now_millis();
    // Node A claims with a lease that runs out at once (A is stuck, or dead).
    let short = Lease::new("node-a", now + 1);
    let mine = a.claim_due(&short, now, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        b.claim_due(&Lease::new("node-b", now + 60_000), now, 10)
            .await
            .unwrap()
            .len(),
        0,
        "a live lease is not taken over"
    );
    assert_eq!(
        a.renew_leases("node-b", &[short.token], now + 2)
            .await
            .unwrap(),
        0
    );
    // After it ran out, node B takes it over.
    let later = now + 5;
    let theirs = b
        .claim_due(&Lease::new("node-b", later + 60_000), later, 10)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs[0].lease_token, mine[0].lease_token);
    // A's late outcome is lost: nothing changes and no event is written.
    let lost = a.record_outcomes(vec![delivered(&mine[0])]).await.unwrap();
    assert_eq!(lost, vec![(m.id.clone(), 0)]);
    assert_eq!(events_of(&a, &m.id).await, [EventType::Accepted]);
    assert_eq!(
        a.renew_leases("node-a", &[mine[0].lease_token], later + 1)
            .await
            .unwrap(),
        0
    );
    a.release("node-a", vec![(m.id.clone(), 0)]).await.unwrap();
    assert_eq!(
        a.release_node("node-a").await.unwrap(),
        0,
        "B's lease stays"
    );
    // B's outcome is recorded, once.
    let lost = b
        .record_outcomes(vec![delivered(&theirs[0])])
        .await
        .unwrap();
    assert!(lost.is_empty());
    assert_eq!(
        events_of(&b, &m.id).await,
        [EventType::Accepted, EventType::Delivered]
    );
    // Replaying it changes nothing; the lease is gone (no token), so it reads as lost.
    let again = b
        .record_outcomes(vec![delivered(&theirs[0])])
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(events_of(&b, &m.id).await.len(), 2);
    let view = a.get_message(&m.id).await.unwrap().unwrap();
    assert_eq!(view.recipients[0].state, RecipientState::Delivered);
    assert_eq!(view.recipients[0].attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_cursor_follows_commit_order_across_nodes() {
    let db = PgTestDb::create().await;
    let mut nodes: Vec<DynStore> = Vec::new();
    for _ in 0..4 {
        nodes.push(Arc::new(db.connect().await));
    }
    let tenant = TenantId::generate();
    const ROUNDS: usize = 40;
    let mut writers = Vec::new();
    for (n, store) in nodes.iter().enumerate() {
        let store = store.clone();
        let tenant = tenant.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..ROUNDS {
                let m = message(&tenant, 1 + i % 3);
                let id = m.id.clone();
                store.enqueue(m).await.unwrap();
                // Other kinds of event-writing transactions, interleaved.
                match (n + i) % 3 {
                    0 => {
                        store.cancel(&id, now_millis()).await.unwrap();
                    }
                    1 => store
                        .record_event(NewEvent {
                            kind: EventType::Opened,
                            at: now_millis(),
                            message_id: id,
                            tenant_id: tenant.clone(),
                            recipient: Some("r0@example.net".into()),
                            detail: mailroom_model::TrackingDetail::default().into(),
                        })
                        .await
                        .unwrap(),
                    _ => {
                        let lease = Lease::new("w", now_millis() + 60_000);
                        let due = store.claim_due(&lease, now_millis(), 5).await.unwrap();
                        let outcomes = due.iter().map(delivered).collect();
                        store.record_outcomes(outcomes).await.unwrap();
                    }
                }
            }
        }));
    }
    let reader = nodes[0].clone();
    let pull = |cursor: i64| {
        let store = reader.clone();
        async move {
            store
                .list_events(&EventQuery {
                    after: cursor,
                    limit: 5,
                    ..EventQuery::default()
                })
                .await
                .unwrap()
        }
    };
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut pulls_during_writes = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let page = pull(cursor).await;
        seen.extend(page.events.iter().map(|e| (e.seq, e.event.id.clone())));
        cursor = page.next_cursor;
        pulls_during_writes += 1;
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
    let all = reader
        .list_events(&EventQuery {
            limit: 100_000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let want: Vec<_> = all
        .events
        .iter()
        .map(|e| (e.seq, e.event.id.clone()))
        .collect();
    let accepted = all
        .events
        .iter()
        .filter(|e| e.event.kind == EventType::Accepted)
        .count();
    assert_eq!(accepted, 4 * (14 + 13 * 2 + 13 * 3));
    assert!(pulls_during_writes > 5, "the reader ran while nodes wrote");
    assert_eq!(seen.len(), want.len(), "no event skipped or repeated");
    assert_eq!(seen, want, "the paged stream is the whole stream, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notify_per_batch_of_due_work() {
    let db = PgTestDb::create().await;
    let pg = db.connect().await;
    let mut listener = pg.queue_listener().await.unwrap();
    let store: DynStore = Arc::new(pg);
    let tenant = TenantId::generate();
    // A handed-off message (leased to this node) wakes nobody.
    let mut handed = message(&tenant, 1);
    handed.lease = Some(Lease::new("n", now_millis() + 60_000));
    store.enqueue(handed).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(quiet.is_err(), "no NOTIFY for leased work: {quiet:?}");
    // 50 concurrent messages: at most one NOTIFY per committed batch.
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let m = message(&tenant, 1);
            tokio::spawn(async move { store.enqueue(m).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let mut notes = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {
        notes += 1;
    }
    assert!((1..=50).contains(&notes), "{notes} notifications");
    eprintln!("50 concurrent enqueues: {notes} NOTIFYs");
    // The operator's retry wakes the nodes too.
    let m = message(&tenant, 1);
    store.enqueue(m.clone()).await.unwrap();
    let lease = Lease::new("n", now_millis() + 60_000);
    assert!(
        !store
            .claim_due(&lease, now_millis(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {}
    store.release_node("n").await.unwrap();
    assert_eq!(store.retry_now(&m.id, now_millis()).await.unwrap(), 1);
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert_eq!(
        note.unwrap().unwrap().channel(),
        mailroom_store::postgres::QUEUE_CHANNEL
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_roles_and_directory_version() {
    let db = PgTestDb::create().await;
    let a: DynStore = Arc::new(db.connect().await);
    let b: DynStore = Arc::new(db.connect().await);
    let now = 1_000;
    assert!(a.try_singleton("prune", "a", now, now + 100).await.unwrap());
    assert!(
        !b.try_singleton("prune", "b", now + 50, now + 150)
            .await
            .unwrap()
    );
    assert!(
        a.try_singleton("prune", "a", now + 60, now + 160)
            .await
            .unwrap(),
        "renewed"
    );
    assert!(
        !b.try_singleton("prune", "b", now + 150, now + 250)
            .await
            .unwrap()
    );
    assert!(
        b.try_singleton("prune", "b", now + 161, now + 261)
            .await
            .unwrap(),
        "expired"
    );
    assert!(
        !a.try_singleton("prune", "a", now + 170, now + 270)
            .await
            .unwrap()
    );
    // Racing for a free role: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                s.try_singleton("health", &format!("n{i}"), now, now + 100)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);

    // The directory version moves with changes to cached tables made on any node,
    // and not with changes to others.
    let v0 = a.directory_version().await.unwrap();
    let pg_b = PgStore::connect(&db.settings()).await.unwrap();
    sqlx::query(
        "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ('t1', 'n', 'h', 1)",
    )
    .execute(pg_b.pool())
    .await
    .unwrap();
    let v1 = a.directory_version().await.unwrap();
    assert!(v1 > v0, "{v0} -> {v1}");
    sqlx::query("UPDATE domains SET last_check = 'x'")
        .execute(pg_b.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO nodes (id, started_at, last_seen, version, detail) VALUES ('x', 1, 1, 'v', '{}')")
        .execute(pg_b.pool())
        .await
        .unwrap();
    assert_eq!(a.directory_version().await.unwrap(), v1);
    a.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_through_two_nodes_accepts_one_message() {
    let db = PgTestDb::create().await;
    let a: DynStore = Arc::new(db.connect().await);
    let b: DynStore = Arc::new(db.connect().await);
    let tenant = TenantId::generate();
    let keyed = |key: &str, at: i64| {
        let mut m = message(&tenant, 1);
        m.idempotency = Some(mailroom_store::IdempotencyRecord {
            key: key.into(),
            request_hash: "h".into(),
            response: serde_json::json!({ "id": m.id.as_str() }),
            created_at: at,
        });
        m
    };
    for round in 0..10 {
        let key = format!("k{round}");
        let (ma, mb) = (keyed(&key, now_millis()), keyed(&key, now_millis()));
        let (ra, rb) = tokio::join!(a.enqueue(ma.clone()), b.enqueue(mb.clone()));
        let ok: Vec<_> = [(&ra, &ma), (&rb, &mb)]
            .into_iter()
            .filter(|(r, _)| r.is_ok())
            .collect();
        assert_eq!(ok.len(), 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.is_ok() { (&rb, &mb) } else { (&ra, &ma) };
        assert!(
            matches!(loser.0, Err(StoreError::Conflict(_))),
            "{:?}",
            loser.0
        );
        assert!(a.get_message(&loser.1.id).await.unwrap().is_none());
    }
    // A key older than the window is replaced.
    let old = keyed("old", 1_000);
    a.enqueue(old).await.unwrap();
    b.enqueue(keyed("old", now_millis())).await.unwrap();
}

/// A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones
/// refused) and restored on the same port.
struct Proxy {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(port: u16, upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                let upstream = upstream.clone();
                conns.spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Proxy {
            port,
            task: Some(task),
        }
    }

    /// Drops the listener and every proxied connection (the JoinSet aborts them).
    async fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_and_recovers_by_itself() {
    let db = PgTestDb::create().await;
    let opts: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let upstream = format!("{}:{}", opts.get_host(), opts.get_port());
    let mut proxy = Proxy::start(0, upstream.clone()).await;
    let url = common::with_host_port(&db.url, &format!("127.0.0.1:{}", proxy.port));
    let mut settings = PgSettings::new(url);
    settings.pool_size = 2;
    let store: DynStore = Arc::new(PgStore::connect(&settings).await.unwrap());
    let tenant = TenantId::generate();
    store.enqueue(message(&tenant, 1)).await.unwrap();

    proxy.cut().await;
    let started = std::time::Instant::now();
    let during: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let m = message(&tenant, 1);
            tokio::spawn(async move { (m.id.clone(), store.enqueue(m).await) })
        })
        .collect();
    let mut refused = Vec::new();
    for h in during {
        let (id, r) = h.await.unwrap();
        assert!(r.is_err(), "accepted while the database was cut");
        refused.push(id);
    }
    let waited = started.elapsed();
    // Those that queued behind the first failed batch fail with it (acquire timeout 5 s).
    assert!(waited < Duration::from_secs(12), "{waited:?}");
    assert!(store.ping().await.is_err());
    eprintln!("20 submissions during the outage failed after {waited:?}");

    let _proxy = Proxy::start(proxy.port, upstream).await;
    let mut recovered = None;
    for _ in 0..50 {
        if store.enqueue(message(&tenant, 1)).await.is_ok() {
            recovered = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered.is_some(), "no recovery without restart");
    // Nothing refused was stored; what was accepted is there.
    let direct: DynStore = Arc::new(db.connect().await);
    for id in refused {
        assert!(direct.get_message(&id).await.unwrap().is_none());
    }
    let counts = direct.count_recipients_by_state().await.unwrap();
    assert_eq!(counts, [("queued".to_string(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_fanned_out_and_claimed_by_two_nodes_once() {
    use mailroom_store::{DeliveryState, DeliveryUpdate, NewWebhook};
    let db = PgTestDb::create().await;
    let a: DynStore = Arc::new(db.connect().await);
    let b: DynStore = Arc::new(db.connect().await);
    let tenant = common::tenant(&a, "acme").await;
    let hook = a
        .create_webhook(NewWebhook {
            id: mailroom_model::WebhookId::generate(),
            tenant_id: tenant.clone(),
            url: "http://127.0.0.1:9/".into(),
            event_types: None,
            secret: mailroom_secrets::Sealed::from_stored("whsec".into()),
        })
        .await
        .unwrap()
        .id;
    // 60 one-recipient messages: 60 `accepted` events, each the first of its
    // recipient, so every delivery is claimable at once.
    for _ in 0..60 {
        a.enqueue(message(&tenant, 1)).await.unwrap();
    }
    // Both nodes fan out at once, in small steps: every event gets one delivery row.
    let fan = |s: DynStore| {
        tokio::spawn(async move {
            let mut made = 0;
            loop {
                let f = s.fan_out_events(7, now_millis()).await.unwrap();
                made += f.deliveries;
                if f.events == 0 {
                    return made;
                }
            }
        })
    };
    let (fa, fb) = tokio::join!(fan(a.clone()), fan(b.clone()));
    assert_eq!(fa.unwrap() + fb.unwrap(), 60, "one delivery row per event");
    // Both nodes claim at once: no delivery is claimed twice.
    let claim = |s: DynStore, hook: mailroom_model::WebhookId| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let now = now_millis();
                let batch = s
                    .claim_deliveries(&hook, now, now + 60_000, 4)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|d| d.seq));
            }
        })
    };
    let (ca, cb) = tokio::join!(
        claim(a.clone(), hook.clone()),
        claim(b.clone(), hook.clone())
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let mut all: Vec<i64> = ca.iter().chain(&cb).copied().collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a delivery was claimed twice");
    assert_eq!(n, 60);
    for seq in &ca {
        a.record_delivery(DeliveryUpdate {
            webhook_id: hook.clone(),
            seq: *seq,
            state: DeliveryState::Delivered,
            attempts: 1,
            next_attempt_at: None,
            last_status: Some(200),
            last_error: None,
            at: now_millis(),
        })
        .await
        .unwrap();
    }
    let pending = b
        .list_deliveries(&hook, Some(DeliveryState::Pending), 100)
        .await
        .unwrap();
    assert_eq!(pending.len(), cb.len());
    assert_eq!(
        b.webhook_delivery_counts().await.unwrap(),
        [("pending".to_string(), cb.len() as i64)]
    );
}

#[tokio::test]
async fn migrations_are_not_cut_by_the_statement_timeout() {
    let db = PgTestDb::create_empty().await;
    let mut settings = db.settings();
    settings.statement_timeout = Duration::from_millis(1);
    let store = PgStore::connect(&settings).await.unwrap();
    store
        .migrate()
        .await
        .expect("migrates despite a 1 ms statement timeout");
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "1ms", "the pool keeps the configured timeout");
    let slow = sqlx::query("SELECT pg_sleep(0.05)")
        .execute(store.pool())
        .await;
    assert!(slow.is_err(), "a statement over the timeout is cancelled");
}
