//! Fills a store for the console benchmark (BENCHMARKS.md, "Console API"):
//!
//! ```sh
//! cargo run --release --ignore-rust-version -p mailroom-store --example console_fill -- DIR [N]
//! ```
//!
//! opens (creating) the SQLite store `DIR/mailroom.db` — or, with `PG_URL` set, that
//! PostgreSQL database — creates 20 tenants and enqueues N messages (default
//! 1,000,000; 1 KiB, two recipients over 500 domains, tagged, with a subject) through the
//! real group-commit writer, then records an outcome for each recipient (delivered,
//! deferred, hard or soft bounce) and an open for every fourth message, so the counters
//! the events trigger maintains are realistic. It then times the store calls behind the
//! console routes (search by each filter, stats by period and split, the queue by
//! destination). `DIR 0 PREVIOUS_N` only times them on a store filled before.
//! `mailroom serve` can then be started on DIR to time the HTTP routes.

use mailroom_model::{EventType, RecipientState, TenantId, now_millis};
use mailroom_store::{
    DynStore, Granularity, Lease, MessageSearch, NewEvent, NewMessage, NewTenant, Outcome,
    StatsQuery, StatsSplit,
};
use mailroom_testkit::messages;
use std::sync::Arc;
use std::time::Instant;

const CALLERS: usize = 16;
const BATCH: usize = 50;
const TENANTS: usize = 20;

fn message(tenant: &TenantId, n: usize, at: i64) -> NewMessage {
    let mut body = format!("From: app@t.test\r\nSubject: Order {n}\r\n\r\n").into_bytes();
    body.resize(1024, b'x');
    let recipients = (0..2)
        .map(|i| messages::recipient(&format!("user{n}.{i}@d{}.example", (n * 2 + i) % 500)))
        .collect();
    NewMessage {
        rfc_message_id: Some(format!("<{n}@t.test>")),
        received_at: at,
        source: "api",
        body,
        accepted_detail: mailroom_model::AcceptedDetail {
            source: "api".into(),
            subject: Some(format!("Order {n}")),
            ..Default::default()
        }
        .into(),
        lease: Some(Lease {
            owner: "fill".into(),
            token: 1,
            until: at + 3_600_000,
        }),
        meta: Some(serde_json::json!({ "tags": [format!("campaign{}", n % 100)] })),
        ..messages::new_message(tenant, &format!("app{}@t.test", n % 50), recipients)
    }
}

fn outcome(m: &NewMessage, idx: usize, n: usize, at: i64) -> Outcome {
    let (state, event, detail) = match (n + idx) % 20 {
        0 => (
            RecipientState::Deferred,
            EventType::Deferred,
            mailroom_model::AttemptDetail::default(),
        ),
        1 => (
            RecipientState::Bounced,
            EventType::Bounced,
            mailroom_model::AttemptDetail {
                bounce_class: Some(mailroom_model::BounceClass::Hard),
                ..Default::default()
            },
        ),
        2 => (
            RecipientState::Bounced,
            EventType::Bounced,
            mailroom_model::AttemptDetail {
                bounce_class: Some(mailroom_model::BounceClass::Soft),
                ..Default::default()
            },
        ),
        _ => (
            RecipientState::Delivered,
            EventType::Delivered,
            mailroom_model::AttemptDetail::default(),
        ),
    };
    Outcome {
        message_id: m.id.clone(),
        idx: idx as i64,
        recipient: m.recipients[idx].address.clone(),
        tenant_id: m.tenant_id.clone(),
        state,
        attempted: true,
        next_attempt_at: (state == RecipientState::Deferred).then_some(at + 86_400_000),
        last_reply: Some(
            if state == RecipientState::Deferred {
                "451 4.7.1 greylisted"
            } else {
                "250 ok"
            }
            .into(),
        ),
        last_mx: None,
        event,
        detail,
        at,
        suppress: false,
        lease_token: 1,
    }
}

async fn fill(store: DynStore, tenants: Arc<Vec<TenantId>>, caller: usize, count: usize) {
    let mut n = caller;
    let mut batch = Vec::new();
    while n < count {
        let at = now_millis();
        let m = message(&tenants[n % TENANTS], n, at);
        store.enqueue(m.clone()).await.expect("enqueue");
        batch.push((m, n));
        if batch.len() == BATCH || n + CALLERS >= count {
            let outs = batch
                .iter()
                .flat_map(|(m, n)| (0..2).map(move |i| outcome(m, i, *n, at + 1_000)))
                .collect();
            store.record_outcomes(outs).await.expect("outcomes");
            for (m, n) in batch.drain(..) {
                if n.is_multiple_of(4) {
                    store
                        .record_event(NewEvent {
                            kind: EventType::Opened,
                            at: at + 5_000,
                            message_id: m.id.clone(),
                            tenant_id: m.tenant_id.clone(),
                            recipient: Some(m.recipients[0].address.clone()),
                            detail: mailroom_model::TrackingDetail::default().into(),
                        })
                        .await
                        .expect("open");
                }
            }
        }
        n += CALLERS;
    }
}

async fn time<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let out = f.await;
    println!("{what:<48} {:>8.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: console_fill DIR [N]"));
    let count: usize = args.get(2).map_or(1_000_000, |n| n.parse().expect("N"));
    std::fs::create_dir_all(&dir).expect("dir");
    let store: DynStore = match std::env::var("PG_URL") {
        Ok(url) => {
            let pg = mailroom_store::postgres::PgStore::connect(
                &mailroom_store::postgres::PgSettings::new(url),
            )
            .await
            .expect("connect");
            pg.migrate().await.expect("migrate");
            Arc::new(pg)
        }
        Err(_) => Arc::new(
            mailroom_store::sqlite::SqliteStore::open(&dir.join("mailroom.db"))
                .await
                .expect("open"),
        ),
    };
    let mut tenants = Vec::new();
    for i in 0..TENANTS {
        let t = store
            .create_tenant(NewTenant {
                id: TenantId::generate(),
                name: format!("bench{i}-{}", now_millis()),
                api_key_hash: format!("bench-{i}-{}", now_millis()),
            })
            .await
            .expect("tenant");
        tenants.push(t.id);
    }
    let tenants = Arc::new(tenants);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| tokio::spawn(fill(store.clone(), tenants.clone(), c, count)))
        .collect();
    for t in tasks {
        t.await.expect("filler");
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "filled {count} messages in {secs:.0} s ({:.0}/s)",
        count as f64 / secs
    );

    // N = 0: only time the calls, on a store filled before (`DIR 0 PREVIOUS_N`).
    let previous: usize = args
        .get(3)
        .map_or(count, |n| n.parse().expect("PREVIOUS_N"));
    // The first bench tenant ever created (message n goes to tenant n % TENANTS).
    let t = store
        .list_tenants()
        .await
        .expect("tenants")
        .into_iter()
        .filter(|t| t.name.starts_with("bench0-"))
        .min_by_key(|t| t.created_at)
        .map_or_else(|| tenants[0].clone(), |t| t.id);
    let search = |f: &dyn Fn(&mut MessageSearch)| {
        let mut s = MessageSearch {
            tenant: Some(t.clone()),
            limit: 51,
            ..Default::default()
        };
        f(&mut s);
        s
    };
    let mid = previous / 2 / TENANTS * TENANTS;
    for (what, s) in [
        ("search: newest page (tenant)", search(&|_| {})),
        (
            "search: newest page (operator)",
            MessageSearch {
                limit: 51,
                ..Default::default()
            },
        ),
        (
            "search: recipient",
            search(&|s| s.recipient = Some(format!("user{mid}.0@d{}.example", (mid * 2) % 500))),
        ),
        (
            "search: sender",
            search(&|s| s.sender = Some("app0@t.test".into())),
        ),
        (
            "search: message_id",
            search(&|s| s.rfc_message_id = Some(format!("<{mid}@t.test>"))),
        ),
        (
            "search: tag",
            search(&|s| s.tag = Some("campaign40".into())),
        ),
        (
            "search: state deferred",
            search(&|s| s.state = Some("deferred".into())),
        ),
        (
            "search: subject substring",
            search(&|s| s.subject = Some(format!("Order {mid}"))),
        ),
        (
            "search: last hour",
            search(&|s| s.from = Some(now_millis() - 3_600_000)),
        ),
    ] {
        let found = time(what, store.search_messages(&s)).await.expect("search");
        println!("{:<48} {:>8} found", "", found.len());
    }
    let now = now_millis();
    for (what, g, span, split, tenant) in [
        (
            "stats: minute x 60, all",
            Granularity::Minute,
            3_600_000,
            StatsSplit::None,
            None,
        ),
        (
            "stats: hour x 24, tenant",
            Granularity::Hour,
            86_400_000,
            StatsSplit::None,
            Some(t.clone()),
        ),
        (
            "stats: day x 30, by domain",
            Granularity::Day,
            30 * 86_400_000,
            StatsSplit::Domain,
            None,
        ),
        (
            "stats: hour x 24, by tenant",
            Granularity::Hour,
            86_400_000,
            StatsSplit::Tenant,
            None,
        ),
    ] {
        let q = StatsQuery {
            granularity: g,
            from: now - span,
            to: now + 60_000,
            tenant,
            split,
        };
        let rows = time(what, store.stats(&q)).await.expect("stats");
        println!("{:<48} {:>8} rows", "", rows.len());
    }
    let q = time("queue: destinations", store.queue_destinations(100))
        .await
        .expect("queue");
    println!("{:<48} {:>8} destinations", "", q.len());
    time(
        "queue: recipients by state",
        store.count_recipients_by_state(),
    )
    .await
    .expect("count");
}
