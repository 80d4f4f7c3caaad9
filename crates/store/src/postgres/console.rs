//! The console role on PostgreSQL: sessions (through the pool), counter reads (the
//! counters are upserted by the `events` trigger of migration 0005, one row per
//! backend shard, summed here), message search over indexed columns, the queue by
//! destination. The SQL shared with SQLite is in `same_sql_console.rs`; the dialect
//! points here.

use super::{PgStore, db};
use crate::console::{id_floor, like_escape, meta_tags};
use crate::{
    ConsoleStore, DestinationQueue, MessageDetail, MessageSearch, MessageSummary, ReportSent,
    SessionRecord, StatsQuery, StatsRow, StatsSplit, StoreError,
};
use mailroom_model::{ApiKeyId, KeyScope, MessageId, TenantId};
use sqlx::{Postgres, QueryBuilder, Row};
use std::collections::HashMap;

/// The latest reply per destination among the waiting recipients, in one pass.
const LATEST_REPLY_SQL: &str = "SELECT DISTINCT ON (domain) domain, last_reply FROM recipients \
     WHERE state IN ('queued', 'deferred') AND last_reply IS NOT NULL \
     ORDER BY domain, updated_at DESC";

impl PgStore {
    // The dialect points of `console_impl!` (see `same_sql_console.rs`).
    const STATS_NO_GROUP: &str = "NULL::TEXT";
    const STATS_SUM: &str = "SUM(n)::BIGINT";
    const COMMON_STATE_MATCH: &str = " AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id \
                     AND r.state = ";

    async fn push_subject_match(
        &self,
        qb: &mut QueryBuilder<Postgres>,
        x: &str,
    ) -> Result<(), StoreError> {
        qb.push(" AND lower(ms.subject) LIKE lower(")
            .push_bind(format!("%{}%", like_escape(x)))
            .push(") ESCAPE '\\'");
        Ok(())
    }

    /// Folds the per-backend shards of the state counts into shard 0.
    async fn after_counter_prune(&self) -> Result<(), StoreError> {
        sqlx::query(crate::console::FOLD_STATE_COUNTS_PG)
            .execute(self.pool())
            .await
            .map_err(db("counters"))?;
        Ok(())
    }
}

console_impl!(PgStore, Postgres);
