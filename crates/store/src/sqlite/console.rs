//! The console role on SQLite: sessions (administrative writes through the pool),
//! counter reads (the counters themselves are upserted by the `events` trigger of
//! migration 0016), message search over indexed columns, the queue by destination.
//! The SQL shared with PostgreSQL is in `same_sql_console.rs`; the dialect points here.

use super::{SqliteStore, db};
use crate::console::{id_floor, like_escape, meta_tags};
use crate::{
    ConsoleStore, DestinationQueue, MessageDetail, MessageSearch, MessageSummary, ReportSent,
    SessionRecord, StatsQuery, StatsRow, StatsSplit, StoreError,
};
use mailroom_model::{ApiKeyId, KeyScope, MessageId, TenantId};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;

/// The latest reply per destination among the waiting recipients, in one pass:
/// SQLite takes `last_reply` from the row holding the single `MAX(updated_at)`.
const LATEST_REPLY_SQL: &str = "SELECT domain, last_reply, MAX(updated_at) AS at FROM recipients \
     WHERE state IN ('queued', 'deferred') AND last_reply IS NOT NULL GROUP BY domain";

/// Up to how many subjects the trigram index is asked for: a substring found in fewer
/// is searched through the index; a commoner one by reading subjects newest first,
/// where a page fills within a few rows.
const RARE_SUBJECT: i64 = 5_000;

impl SqliteStore {
    /// Whether `x` is a substring the trigram index can look up (three characters or
    /// more, no LIKE wildcard) and fewer than `RARE_SUBJECT` subjects contain it.
    async fn rare_subject(&self, x: &str) -> Result<bool, StoreError> {
        if x.chars().count() < 3 || x.contains(['%', '_', '\\']) {
            return Ok(false);
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM message_subjects_fts WHERE subject LIKE $1 \
             LIMIT $2)",
        )
        .bind(format!("%{x}%"))
        .bind(RARE_SUBJECT)
        .fetch_one(self.pool())
        .await
        .map_err(db("message search"))?;
        Ok(n < RARE_SUBJECT)
    }

    // The dialect points of `console_impl!` (see `same_sql_console.rs`).
    const STATS_NO_GROUP: &str = "NULL";
    const STATS_SUM: &str = "SUM(n)";
    /// `+r.state`: the message's recipients by primary key, not every recipient in
    /// that state through `recipients_due`.
    const COMMON_STATE_MATCH: &str = " AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id \
                     AND +r.state = ";

    async fn push_subject_match(
        &self,
        qb: &mut QueryBuilder<Sqlite>,
        x: &str,
    ) -> Result<(), StoreError> {
        if self.rare_subject(x).await? {
            // Few subjects contain it: the trigram index finds them all.
            qb.push(
                " AND m.id IN (SELECT s2.message_id FROM message_subjects s2 WHERE s2.rowid IN \
                 (SELECT rowid FROM message_subjects_fts WHERE subject LIKE ",
            )
            .push_bind(format!("%{x}%"))
            .push("))");
        }
        qb.push(" AND ms.subject LIKE ")
            .push_bind(format!("%{}%", like_escape(x)))
            .push(" ESCAPE '\\'");
        Ok(())
    }

    /// Nothing to fold: SQLite keeps one counter row per key.
    async fn after_counter_prune(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

console_impl!(SqliteStore, Sqlite);
