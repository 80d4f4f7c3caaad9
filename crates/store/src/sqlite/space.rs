//! Disk space on SQLite: message bodies (`message_bodies`) deleted once every
//! recipient of the message has a final state (in the same transaction as the
//! outcomes that finished it; a delete, unlike an update, frees b-tree pages), and
//! free pages given back to the file system. The file uses `auto_vacuum =
//! INCREMENTAL` (set on a new file; an older file is converted once at start with
//! `VACUUM`), and a background task runs `PRAGMA incremental_vacuum` whenever enough
//! pages are free (after a drain, or after event retention deleted old events).
//! The WAL is truncated after checkpoints beyond `journal_size_limit`.

use crate::{Outcome, StoreError};
use sqlx::{SqliteConnection, SqlitePool};
use std::collections::BTreeSet;
use std::time::Duration;

/// How often the reclaimer looks at the free list.
const RECLAIM_EVERY: Duration = Duration::from_secs(30);
/// Free pages (4 KiB each) worth giving back: 4 MiB.
const RECLAIM_MIN_PAGES: i64 = 1024;

/// Deletes the bodies of the messages among `outcomes` that have no recipient left to
/// deliver (queued, deferred or quarantined). Nothing reads a body after that: the
/// bounce report of a failed recipient is built from the body in memory.
pub(super) async fn drop_finished_bodies(
    conn: &mut SqliteConnection,
    outcomes: &[Outcome],
) -> Result<(), StoreError> {
    let ids: BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.state.is_final())
        .map(|o| o.message_id.as_str())
        .collect();
    // One statement for the batch (each is a round trip to SQLite's thread).
    for chunk in ids.into_iter().collect::<Vec<_>>().chunks(900) {
        let mut qb: sqlx::QueryBuilder<sqlx::Sqlite> =
            sqlx::QueryBuilder::new("DELETE FROM message_bodies WHERE message_id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        qb.push(
            ") AND NOT EXISTS (SELECT 1 FROM recipients r \
               WHERE r.message_id = message_bodies.message_id \
               AND (r.state IN ('queued', 'deferred', 'quarantined') \
                 OR upper(coalesce(r.dsn_notify, '')) LIKE '%FAILURE%'))",
        );
        qb.build()
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::from_sqlx(e, "message"))?;
    }
    Ok(())
}

/// Whether the file predates incremental auto-vacuum.
pub(super) async fn needs_conversion(pool: &SqlitePool) -> Result<bool, StoreError> {
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::from_sqlx(e, "database"))?;
    Ok(mode != 2)
}

/// Converts a file made before incremental auto-vacuum: one `VACUUM` (logged: it
/// rewrites the file once), on the only connection open, outside WAL mode (where a
/// VACUUM cannot change the auto-vacuum mode), then back to WAL.
pub(super) async fn convert(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    tracing::info!("converting the database to incremental auto-vacuum (one VACUUM)");
    for sql in [
        "PRAGMA journal_mode = DELETE",
        "PRAGMA auto_vacuum = INCREMENTAL",
        "VACUUM",
        "PRAGMA journal_mode = WAL",
    ] {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::from_sqlx(e, "database"))?;
    }
    Ok(())
}

/// Gives free pages back to the file system when at least `min_pages` are free;
/// returns how many.
pub(super) async fn reclaim(pool: &SqlitePool, min_pages: i64) -> Result<i64, StoreError> {
    let e = |e| StoreError::from_sqlx(e, "database");
    let mut total = 0;
    loop {
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(pool)
            .await
            .map_err(e)?;
        if free == 0 || (total == 0 && free < min_pages) {
            return Ok(total);
        }
        // At most 2048 pages per statement, so one step never holds the write lock
        // long (the pragma takes no bound parameter).
        sqlx::query("PRAGMA incremental_vacuum(2048)")
            .execute(pool)
            .await
            .map_err(e)?;
        let after: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(pool)
            .await
            .map_err(e)?;
        if after >= free {
            return Ok(total);
        }
        total += free - after;
        tokio::task::yield_now().await;
    }
}

/// Runs `reclaim` every `RECLAIM_EVERY` until the pool is closed.
pub(super) fn spawn_reclaimer(pool: SqlitePool) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECLAIM_EVERY).await;
            if pool.is_closed() {
                return;
            }
            match reclaim(&pool, RECLAIM_MIN_PAGES).await {
                Ok(0) => {}
                Ok(pages) => tracing::debug!(pages, "free pages returned to the file system"),
                Err(e) => tracing::warn!(error = %e, "reclaiming free pages failed"),
            }
        }
    });
}
