//! Staged acceptance on SQLite (`src/sqlite/staging.rs`, migration 0031): a small round
//! of messages handed straight to delivery is answered once it is committed to
//! `staged_messages`, and moved into the full schema later. These tests look at the
//! file with a connection of their own (outside the store's pool), which sees the
//! staged rows as they are; the stores they open wait an hour rather than
//! `STAGE_WAIT` before they move a staged message on their own, so that what is seen
//! does not depend on how fast the test runs.

mod common;

use mailroom_model::{EventType, MessageId, RecipientState, now_millis};
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{DynStore, Lease, NewMessage};
use sqlx::Row;
use std::path::Path;
use std::time::Duration;

const AN_HOUR: Duration = Duration::from_secs(3600);

async fn open(db: &Path, wait: Duration) -> DynStore {
    std::sync::Arc::new(SqliteStore::open_with_stage_wait(db, wait).await.unwrap())
}

fn leased(tenant: &mailroom_model::TenantId) -> NewMessage {
    NewMessage {
        body: b"From: app@acme.test\r\nSubject: Invoice 7\r\n\r\nhello\r\n".to_vec(),
        accepted_detail: mailroom_model::AcceptedDetail {
            source: "smtp".into(),
            subject: Some("Invoice 7".into()),
            ..Default::default()
        }
        .into(),
        lease: Some(Lease {
            owner: "node-a".into(),
            token: 41,
            until: now_millis() + 600_000,
        }),
        ..common::new_message(tenant, "app@acme.test", common::recipients(2))
    }
}

async fn staged_rows(db: &Path) -> i64 {
    let mut conn = common::sqlite_connection(db).await;
    sqlx::query("SELECT COUNT(*) AS n FROM staged_messages")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n")
}

async fn check_stored(store: &DynStore, id: &MessageId) {
    let view = store
        .get_message(id)
        .await
        .unwrap()
        .expect("the message is found");
    assert_eq!(view.recipients.len(), 2);
    for r in &view.recipients {
        assert_eq!(r.state, RecipientState::Queued);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].kind, EventType::Accepted);
        assert_eq!(r.events[0].detail["subject"], "Invoice 7");
    }
    let body = store.load_body(id).await.unwrap().expect("a body");
    assert!(body.ends_with(b"hello\r\n"));
}

#[tokio::test]
async fn a_staged_message_is_answered_then_read_through_the_pool_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailroom.db");
    let store = open(&db, AN_HOUR).await;
    let tenant = common::tenant(&store, "acme").await;
    let m = leased(&tenant);
    store.enqueue(m.clone()).await.unwrap();
    // Answered while it is one staged row.
    assert_eq!(staged_rows(&db).await, 1);
    // A read through the store's pool has the writer move it first.
    check_stored(&store, &m.id).await;
    assert_eq!(staged_rows(&db).await, 0);
}

#[tokio::test]
async fn a_staged_message_is_moved_on_its_own_when_nothing_else_comes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailroom.db");
    let store = open(&db, Duration::from_millis(20)).await;
    let tenant = common::tenant(&store, "acme").await;
    store.enqueue(leased(&tenant)).await.unwrap();
    // No read through the pool, no other round: only the wait moves it.
    let start = std::time::Instant::now();
    while staged_rows(&db).await > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(store);
    let mut conn = common::sqlite_connection(&db).await;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM recipients")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 2);
}

#[test]
fn staged_rows_a_crash_leaves_are_moved_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailroom.db");
    let rt = || tokio::runtime::Runtime::new().unwrap();
    // A process that stops (its runtime dropped, every task cancelled) while its
    // message is staged: nothing moves it.
    let first = rt();
    let m = first.block_on(async {
        let store = open(&db, AN_HOUR).await;
        let tenant = common::tenant(&store, "acme").await;
        let m = leased(&tenant);
        store.enqueue(m.clone()).await.unwrap();
        std::mem::forget(store);
        m
    });
    drop(first);
    rt().block_on(async {
        assert_eq!(staged_rows(&db).await, 1);
        let store = open(&db, AN_HOUR).await;
        assert_eq!(staged_rows(&db).await, 0, "moved before the store answers");
        check_stored(&store, &m.id).await;
        // Still leased as it was handed to delivery.
        let mut conn = common::sqlite_connection(&db).await;
        let (owner, token): (String, i64) = sqlx::query_as(
            "SELECT lease_owner, lease_token FROM recipients WHERE message_id = $1 AND idx = 0",
        )
        .bind(m.id.as_str())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!((owner.as_str(), token), ("node-a", 41));
    });
}

#[tokio::test]
async fn a_staged_message_that_cannot_be_moved_stays_staged_and_is_moved_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailroom.db");
    let store = open(&db, AN_HOUR).await;
    let tenant = common::tenant(&store, "acme").await;
    let mut conn = common::sqlite_connection(&db).await;
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.mail_from = 'app@acme.test' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let m = leased(&tenant);
    store.enqueue(m.clone()).await.unwrap();
    // The move fails: the message stays staged, and is not lost.
    assert!(store.get_message(&m.id).await.unwrap().is_none());
    assert_eq!(staged_rows(&db).await, 1);
    sqlx::query("DROP TRIGGER refuse")
        .execute(&mut conn)
        .await
        .unwrap();
    // The next read has the writer try again.
    check_stored(&store, &m.id).await;
    assert_eq!(staged_rows(&db).await, 0);
}
