//! How much an event and a subject take on disk (issue 14), on both backends: an
//! event's detail is recorded without its top-level `null` fields and read back with
//! them, and on SQLite the subject index rebuilt without token positions (0029) still
//! finds what was recorded before it.

#[macro_use]
mod common;

use common::TestDb;
use mailroom_model::{AcceptedDetail, EventType, TenantId};
use mailroom_store::{DynStore, EventQuery};

/// The `detail` column of every `accepted` event, as stored.
async fn stored_details(db: &TestDb) -> Vec<String> {
    let sql = "SELECT detail FROM events WHERE type = 'accepted'";
    match db {
        TestDb::Sqlite(dir) => {
            let mut conn = common::sqlite_connection(&dir.path().join("mailroom.db")).await;
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
        TestDb::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

conformance_db!(
    an_events_nulls_are_not_stored_but_are_read_back,
    |db: TestDb| async move {
        let store: DynStore = db.open().await;
        let tenant: TenantId = common::tenant(&store, "acme").await;
        let detail = AcceptedDetail {
            auth: "allowed-ip".into(),
            source: "smtp".into(),
            subject: Some("Your invoice".into()),
            size: 42,
            ..AcceptedDetail::default()
        };
        let want = mailroom_model::EventDetail::from(detail.clone()).to_value();
        store
            .enqueue(mailroom_store::NewMessage {
                accepted_detail: detail.into(),
                ..common::new_message(&tenant, "app@acme.test", common::recipients(1))
            })
            .await
            .unwrap();

        let stored = stored_details(&db).await;
        assert_eq!(stored.len(), 1);
        assert!(!stored[0].contains("null"), "{}", stored[0]);
        assert!(
            stored[0].contains("\"subject\":\"Your invoice\""),
            "{}",
            stored[0]
        );

        let page = store
            .list_events(&EventQuery {
                kinds: vec![EventType::Accepted],
                limit: 10,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1);
        let shown = &page.events[0].event.detail;
        assert_eq!(shown, &want);
        for key in ["client_ip", "content", "helo", "metadata", "tags", "tls"] {
            assert_eq!(shown.get(key), Some(&serde_json::Value::Null), "{key}");
        }
    }
);

/// A subject recorded under the positional index of 0024 is found through the index
/// (with the LIKE check the message search adds) after 0029 rebuilt it without
/// positions, and so is a new one.
#[tokio::test]
async fn sqlite_subjects_recorded_before_the_rebuild_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.db");
    let mut conn = common::sqlite_before(dir.path(), "0029").await;
    sqlx::query("INSERT INTO message_subjects (message_id, subject) VALUES ('m1', 'Password reset for Ada')")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let store = mailroom_store::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    drop(store);
    let mut conn = common::sqlite_connection(&path).await;
    sqlx::query("INSERT INTO message_subjects (message_id, subject) VALUES ('m2', 'Receipt: your order reset')")
        .execute(&mut conn)
        .await
        .unwrap();
    let found = |x: &'static str| {
        sqlx::query_scalar::<_, String>(
            "SELECT s.message_id FROM message_subjects s WHERE s.rowid IN \
             (SELECT rowid FROM message_subjects_fts WHERE subject LIKE $1) \
             AND s.subject LIKE $1 ORDER BY s.message_id",
        )
        .bind(format!("%{x}%"))
    };
    let detail: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'message_subjects_fts'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(detail.contains("detail = 'none'"), "{detail}");
    assert_eq!(
        found("word res").fetch_all(&mut conn).await.unwrap(),
        ["m1"]
    );
    assert_eq!(
        found("RESET").fetch_all(&mut conn).await.unwrap(),
        ["m1", "m2"]
    );
    assert_eq!(
        found("t: your order").fetch_all(&mut conn).await.unwrap(),
        ["m2"]
    );
    // Every trigram of "your reset" is in m2, but not in that order: the index alone
    // (no positions) offers m2, and the LIKE beside it turns it down.
    let offered: Vec<i64> = sqlx::query_scalar(
        "SELECT rowid FROM message_subjects_fts('\"you\" AND \"our\" AND \"ur \"          AND \"r r\" AND \" re\" AND \"res\" AND \"ese\" AND \"set\"')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(offered.len(), 1);
    assert!(
        found("your reset")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .is_empty()
    );
}
