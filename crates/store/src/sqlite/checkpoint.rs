//! WAL checkpoints off the writer's path. By default SQLite checkpoints inside the
//! commit that takes the WAL past 1,000 pages: that commit, and every message of its
//! batch, then waits while about a thousand pages are read back from the WAL, written
//! into the database file and fsynced — every ≈ 150 messages under load (≈ 7 pages a
//! message), which showed in the slowest acceptances (BENCHMARKS.md).
//!
//! Here each connection checkpoints by itself only beyond [`AUTOCHECKPOINT_PAGES`] (a
//! backstop, should this task stall), and a background task runs a `PASSIVE`
//! checkpoint on a pool connection every [`EVERY`]. A passive checkpoint copies what
//! no reader still needs and never waits for, nor blocks, the writer or the readers.

use sqlx::SqlitePool;
use std::time::Duration;

/// The per-connection `wal_autocheckpoint` (pages; 40 MiB at 4 KiB pages). The
/// checkpointer keeps the WAL far below it; reaching it means the task fell behind.
pub(super) const AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// How often the checkpointer runs. At 2,000 messages a second about 7 pages a
/// message reach the WAL: ≈ 2,800 pages between two runs.
pub(super) const EVERY: Duration = Duration::from_millis(200);

/// Starts the checkpointer; it ends when the pool is closed.
pub(super) fn spawn_checkpointer(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            let result: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&pool)
                    .await;
            match result {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("WAL checkpoints work again");
                }
                Ok(_) => {}
                Err(_) if pool.is_closed() => return,
                // Logged once per spell: the writer's own backstop still bounds the WAL.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
                Err(_) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    fn size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// Pages reach the database file only through a checkpoint; with the automatic
    /// ones this far off, only the task can have copied them.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let limit: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(limit, i64::from(AUTOCHECKPOINT_PAGES));
        // Wait for a first run (the migrations' pages), then write more.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size(&path) < 8192 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::query("CREATE TABLE checkpoint_probe (x BLOB)")
            .execute(store.pool())
            .await
            .unwrap();
        tokio::time::sleep(EVERY * 2).await;
        let before = size(&path);
        sqlx::query("INSERT INTO checkpoint_probe VALUES (zeroblob(400000))")
            .execute(store.pool())
            .await
            .unwrap();
        let wal = path.with_extension("db-wal");
        assert!(size(&wal) > 400_000, "the row went to the WAL");
        // Most of the blob's pages are new at the end of the file (some reuse free ones).
        while size(&path) < before + 300_000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            size(&path) >= before + 300_000,
            "the database file grew from {before} to {} bytes only",
            size(&path)
        );
    }
}
