//! SQLite 0030: `event_counters` is kept by the writer at each commit instead of by a
//! trigger on every event row. Events stored before the migration were counted by the
//! trigger; the cursor the migration sets starts after them, so none is counted twice
//! and every later one is counted once. (That the counters equal a recount of the event
//! stream, on both backends, is `console.rs`.)

mod common;

use mailroom_model::{EventType, MessageId, TenantId};
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{DynStore, Granularity, NewEvent, StatsQuery, StatsSplit};

async fn day_counts(store: &DynStore, tenant: &TenantId) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = store
        .stats(&StatsQuery {
            granularity: Granularity::Day,
            from: 0,
            to: i64::MAX / 2,
            tenant: Some(tenant.clone()),
            split: StatsSplit::Domain,
        })
        .await
        .expect("stats")
        .into_iter()
        .map(|r| (format!("{} {}", r.group.unwrap_or_default(), r.kind), r.n))
        .collect();
    rows.sort();
    rows
}

/// An `opened` event at `at` for a message of `tenant` (through the writer, as tracking
/// records it).
async fn opened(store: &DynStore, tenant: &TenantId, at: i64) {
    store
        .record_event(NewEvent {
            kind: EventType::Opened,
            at,
            message_id: MessageId::generate(),
            tenant_id: tenant.clone(),
            recipient: Some("r@example.net".into()),
            detail: mailroom_model::TrackingDetail::default().into(),
        })
        .await
        .expect("event");
}

#[tokio::test]
async fn events_counted_by_the_trigger_are_not_counted_again_and_later_ones_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::generate();
    let mut conn = common::sqlite_before(dir.path(), "0030").await;
    for i in 0..3 {
        sqlx::query(
            "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
             VALUES ($1, 'delivered', 1000, 'm', $2, 'r@Example.NET', '{}')",
        )
        .bind(format!("e{i}"))
        .bind(tenant.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    drop(conn);
    let db = dir.path().join("mailroom.db");
    let store: DynStore = std::sync::Arc::new(SqliteStore::open(&db).await.expect("migrates"));
    assert_eq!(
        day_counts(&store, &tenant).await,
        vec![("example.net delivered".to_string(), 3)]
    );
    for _ in 0..2 {
        opened(&store, &tenant, 2000).await;
    }
    assert_eq!(
        day_counts(&store, &tenant).await,
        vec![
            ("example.net delivered".to_string(), 3),
            ("example.net opened".to_string(), 2),
        ]
    );
    // A restart reads the cursor back: nothing is counted again.
    drop(store);
    let store: DynStore = std::sync::Arc::new(SqliteStore::open(&db).await.expect("reopens"));
    opened(&store, &tenant, 3000).await;
    assert_eq!(
        day_counts(&store, &tenant).await,
        vec![
            ("example.net delivered".to_string(), 3),
            ("example.net opened".to_string(), 3),
        ]
    );
}
