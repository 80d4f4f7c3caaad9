//! The bounce columns of `events` (SQLite 0028, PostgreSQL 0017): bounces recorded
//! before them are filled from their JSON detail by the migration, so the sender-health
//! counts read the same from old rows as from new ones.

#[macro_use]
mod common;

use common::PgTestDb;
use mailroom_model::TenantId;
use mailroom_store::DynStore;
use mailroom_store::sqlite::SqliteStore;

/// Rows as the writers recorded them before the columns: (type, detail).
const OLD_ROWS: [(&str, &str); 5] = [
    ("delivered", r#"{"attempt":1}"#),
    (
        "bounced",
        r#"{"attempt":1,"bounce_category":"bad_mailbox","bounce_class":"hard"}"#,
    ),
    (
        "bounced",
        r#"{"attempt":1,"bounce_category":"other","bounce_class":"soft"}"#,
    ),
    (
        "bounced",
        r#"{"async":true,"bounce_category":"bad_mailbox","bounce_class":"hard"}"#,
    ),
    ("complained", r#"{"feedback_type":"abuse"}"#),
];

async fn check(store: &DynStore, tenant: &TenantId) {
    let c = store.health_counts(tenant, 0).await.unwrap();
    assert_eq!(c.delivered, 1);
    // The asynchronous bounce is not a delivery outcome; both hard ones count as hard.
    assert_eq!(c.bounced_at_delivery, 2);
    assert_eq!(c.hard_bounces, 2);
    assert_eq!(c.complaints, 1);
}

#[tokio::test]
async fn sqlite_bounces_recorded_before_the_columns_are_filled_from_their_detail() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::generate();
    let db = dir.path().join("mailroom.db");
    let mut conn = common::sqlite_before(dir.path(), "0028").await;
    for (i, (kind, detail)) in OLD_ROWS.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
             VALUES ($1, $2, 1000, 'm', $3, 'r@example.net', $4)",
        )
        .bind(format!("e{i}"))
        .bind(kind)
        .bind(tenant.as_str())
        .bind(detail)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    drop(conn);
    let store: DynStore = std::sync::Arc::new(SqliteStore::open(&db).await.expect("migrates"));
    check(&store, &tenant).await;
}

#[tokio::test]
async fn postgres_bounces_recorded_before_the_columns_are_filled_from_their_detail() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::generate();
    let db = PgTestDb::create_empty().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    common::migrate_before(dir.path(), "postgres", "0017", &mut conn).await;
    for (i, (kind, detail)) in OLD_ROWS.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
             VALUES ($1, $2, 1000, 'm', $3, 'r@example.net', $4)",
        )
        .bind(format!("e{i}"))
        .bind(kind)
        .bind(tenant.as_str())
        .bind(detail)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    let store: DynStore = std::sync::Arc::new(db.connect().await);
    check(&store, &tenant).await;
}
