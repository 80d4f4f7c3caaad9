//! The console's role (`ConsoleStore`): server-side console sessions, the event
//! counters the overview charts read, message search and the queue by destination.
//!
//! The counters are not written by this trait: a trigger on `events` (migrations
//! SQLite 0016, PostgreSQL 0005) upserts them in the same transaction as every event
//! insert, whichever code path writes it, so an event and its count can never disagree
//! and no read scans the events table.

use crate::StoreError;
use mailroom_model::{ApiKeyId, KeyScope, MessageId, TenantId};

/// A console session as stored: the cookie's digest, never the cookie.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie value.
    pub token_hash: String,
    /// `None`: the operator.
    pub tenant_id: Option<TenantId>,
    /// The API key a tenant session was opened with; revoking it ends the session.
    pub api_key_id: Option<ApiKeyId>,
    /// Must come back in `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Read back only (ignored by `create_session`): the key's current scope.
    pub scope: Option<KeyScope>,
    /// Read back only: the tenant's name.
    pub tenant_name: Option<String>,
}

/// How long minute counters are kept (ms): `GET /v1/stats` refuses an older minute range.
pub const MINUTE_COUNTERS_KEPT_MS: i64 = 2 * 3_600_000;
/// How long hour counters are kept (ms): `GET /v1/stats` refuses an older hour range.
pub const HOUR_COUNTERS_KEPT_MS: i64 = 2 * 86_400_000;
/// What `prune_counters` keeps beyond the promise above: one hour bucket (the reader
/// asks for whole buckets that overlap the kept window) and room for another node's
/// clock to differ from this one's, so no reader ever sees a bucket already deleted.
const PRUNE_MARGIN_MS: i64 = 2 * 3_600_000;

/// Deletes minute and hour counters older than their retention (`$1`: minute cut-off,
/// `$2`: hour cut-off); the same SQL on both backends, driven by the primary key
/// (granularity, bucket, ...). Day counters are kept.
pub(crate) const PRUNE_COUNTERS_SQL: &str = "DELETE FROM event_counters \
     WHERE (granularity = 'minute' AND bucket < $1) OR (granularity = 'hour' AND bucket < $2)";

/// Recipients by state: the shards of the trigger-kept counts summed (the same SQL on
/// both backends); states with none left are not listed.
pub(crate) const STATE_COUNTS_SQL: &str = "SELECT state, CAST(SUM(n) AS BIGINT) AS n \
     FROM recipient_state_counts GROUP BY state HAVING SUM(n) <> 0 ORDER BY state";

/// How many recipients are in one state (`$1`), from the trigger-kept counts.
pub(crate) const STATE_COUNT_SQL: &str =
    "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM recipient_state_counts WHERE state = $1";

/// A state with at most this many recipients drives the search from the recipients
/// (`recipients_due` index); a commoner one is checked message by message, newest
/// first, where a page fills within a few rows.
pub(crate) const RARE_STATE: i64 = 20_000;

/// PostgreSQL: folds the per-backend shards of the state counts into shard 0 (a
/// concurrent trigger's row is locked, waited for and folded too, or made afresh).
pub(crate) const FOLD_STATE_COUNTS_PG: &str = "WITH gone AS (DELETE FROM recipient_state_counts \
     WHERE shard <> 0 RETURNING state, n) \
     INSERT INTO recipient_state_counts (state, shard, n) \
     SELECT state, 0, SUM(n) FROM gone GROUP BY state \
     ON CONFLICT (state, shard) DO UPDATE SET n = recipient_state_counts.n + EXCLUDED.n";

/// The cut-offs `prune_counters` deletes below at `now`: (minute, hour).
pub(crate) fn prune_cutoffs(now: i64) -> (i64, i64) {
    (
        now - MINUTE_COUNTERS_KEPT_MS - PRUNE_MARGIN_MS,
        now - HOUR_COUNTERS_KEPT_MS - PRUNE_MARGIN_MS,
    )
}

/// Counter granularity: the bucket width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Granularity::Minute),
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            _ => None,
        }
    }

    /// The bucket width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }
}

/// What the counters are split by, besides bucket and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsSplit {
    None,
    Tenant,
    Domain,
}

#[derive(Clone, Debug)]
pub struct StatsQuery {
    pub granularity: Granularity,
    /// Bucket starts in `[from, to)`, ms.
    pub from: i64,
    pub to: i64,
    pub tenant: Option<TenantId>,
    pub split: StatsSplit,
}

/// One counter: `n` events of `kind` in the bucket starting at `bucket`, for `group`
/// (the tenant id or recipient domain when split; `None` otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsRow {
    pub bucket: i64,
    pub group: Option<String>,
    pub kind: String,
    pub n: i64,
}

/// Message search filters; every one is optional, all given ones must hold.
#[derive(Clone, Debug, Default)]
pub struct MessageSearch {
    pub tenant: Option<TenantId>,
    /// A recipient address (case-insensitive, exact).
    pub recipient: Option<String>,
    /// The envelope sender (case-insensitive, exact).
    pub sender: Option<String>,
    /// A substring of the subject (case-insensitive for ASCII).
    pub subject: Option<String>,
    /// The `Message-ID:` header value (with or without angle brackets).
    pub rfc_message_id: Option<String>,
    pub tag: Option<String>,
    /// At least one recipient in this state.
    pub state: Option<String>,
    /// Received at or after (ms).
    pub from: Option<i64>,
    /// Received before (ms).
    pub to: Option<i64>,
    /// Only messages with an id below this one (the cursor: newest first).
    pub before: Option<MessageId>,
    pub limit: i64,
}

/// A message as listed by the search.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageSummary {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub mail_from: String,
    pub subject: Option<String>,
    pub received_at: i64,
    pub size: i64,
    pub tags: Vec<String>,
    /// Every recipient with its state, in recipient order.
    pub recipients: Vec<(String, String)>,
}

/// The queue for one destination domain.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationQueue {
    pub domain: String,
    /// Recipients waiting (queued or deferred).
    pub count: i64,
    /// When the oldest of them was received (ms).
    pub oldest_at: i64,
    /// The latest remote reply among them, if any attempt was made.
    pub last_error: Option<String>,
}

/// What the message page shows beside `QueueStore::get_message`'s view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageDetail {
    /// From the first `accepted` event (ingest records it there).
    pub subject: Option<String>,
    /// The message's stored meta (tags and metadata of an HTTP submission), as JSON text.
    pub meta: Option<String>,
    /// The delivery status reports (DSNs) sent about this message, oldest first.
    pub reports: Vec<ReportSent>,
    /// Events of the message that name no recipient (an open or click of a message
    /// whose recipient is not known), in order.
    pub message_events: Vec<mailroom_model::Event>,
}

/// A delivery status report sent about a message: itself a message, to the sender.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportSent {
    pub id: MessageId,
    pub received_at: i64,
    /// The report's recipient (the original's envelope sender) and its state.
    pub to: String,
    pub state: String,
}

/// The message page's extra reads, the same SQL on both backends (`$1`: the id).
pub(crate) const DETAIL_SQL: &str = "SELECT ms.subject, m.meta FROM messages m \
     LEFT JOIN message_subjects ms ON ms.message_id = m.id WHERE m.id = $1";
pub(crate) const REPORTS_SQL: &str = "SELECT m.id, m.received_at, r.address, r.state \
     FROM message_reports mr JOIN messages m ON m.id = mr.report_id \
     JOIN recipients r ON r.message_id = m.id AND r.idx = 0 \
     WHERE mr.original_id = $1 ORDER BY m.received_at, m.id";
pub(crate) const MESSAGE_EVENTS_SQL: &str =
    "SELECT * FROM events WHERE message_id = $1 AND recipient IS NULL ORDER BY seq";

/// Sessions, counters, search and the per-destination queue, for the console.
#[async_trait::async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError>;

    /// The session with this digest, if it exists and has not expired at `now`.
    async fn get_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Returns whether a session was removed.
    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// Deletes sessions expired at `now`; returns how many.
    async fn prune_sessions(&self, now: i64) -> Result<u64, StoreError>;

    /// Deletes minute counters older than `MINUTE_COUNTERS_KEPT_MS` and hour counters
    /// older than `HOUR_COUNTERS_KEPT_MS` (plus a margin) at `now`; returns how many rows.
    /// PostgreSQL also folds the per-connection shards of the recipient state counts.
    async fn prune_counters(&self, now: i64) -> Result<u64, StoreError>;

    /// Counters summed per bucket, group and kind, bucket order.
    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsRow>, StoreError>;

    /// Messages matching every filter, newest first, at most `limit`.
    async fn search_messages(
        &self,
        search: &MessageSearch,
    ) -> Result<Vec<MessageSummary>, StoreError>;

    /// The message page's subject, meta, reports sent and message-level events;
    /// `None` when there is no such message.
    async fn message_detail(&self, id: &MessageId) -> Result<Option<MessageDetail>, StoreError>;

    /// The `limit` destinations with the most waiting recipients.
    async fn queue_destinations(&self, limit: i64) -> Result<Vec<DestinationQueue>, StoreError>;
}

/// The busiest destinations (`$1`: how many), the same SQL on both backends: the
/// waiting recipients (through the `recipients_due` index) grouped by domain, in one
/// pass; each backend adds the latest reply per domain in a second pass.
pub(crate) const QUEUE_DESTINATIONS_SQL: &str = "SELECT r.domain, COUNT(*) AS n, \
     MIN(m.received_at) AS oldest FROM recipients r JOIN messages m ON m.id = r.message_id \
     WHERE r.state IN ('queued', 'deferred') \
     GROUP BY r.domain ORDER BY n DESC, r.domain LIMIT $1";

/// The smallest ULID text of the given millisecond (for id-range time filters).
pub(crate) fn id_floor(ms: i64) -> String {
    ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The tags of a message's stored meta (`{"tags": [...]}`).
pub(crate) fn meta_tags(meta: Option<&str>) -> Vec<String> {
    meta.and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|v| v.get("tags").cloned())
        .and_then(|t| serde_json::from_value::<Vec<String>>(t).ok())
        .unwrap_or_default()
}
