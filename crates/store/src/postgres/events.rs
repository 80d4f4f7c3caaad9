//! The event stream in commit order (inserting, reading by cursor, pruning) and the
//! `EventStore` impl, whose webhook half lives in `webhooks.rs`.
//!
//! Several nodes insert events at once. A sequence (identity) hands out numbers in
//! allocation order, not commit order: a transaction that took seq 10 may commit after
//! one that took seq 11, and a reader paging with `after=11` would then never see 10.
//! So every transaction that inserts events takes one transaction-scoped advisory lock
//! (`lock_event_order`, key `EVENT_ORDER_LOCK`) right before its event INSERTs, as late
//! as possible in the transaction. The lock is held until COMMIT has made the rows
//! durable and visible, so the next transaction allocates its seqs only after the
//! previous one's are visible: seq order equals commit order, and a reader that sees
//! seq N has already seen (or can see) every seq below N that will ever exist. The
//! serialised part is short (the event INSERTs and the commit itself); everything
//! else in those transactions runs concurrently.

use super::{PgStore, db, event_from_row};
use crate::*;
use mailroom_model::{EventId, EventType, MessageId, TenantId, WebhookId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

/// The advisory lock key that orders event inserts ("mailroom" "events").
pub(super) const EVENT_ORDER_LOCK: i64 = 0x6d61_696c_6576_7473;

/// Takes the event-order lock for the rest of the transaction. Call it right before
/// inserting events, inside the transaction that inserts them.
pub(super) async fn lock_event_order(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENT_ORDER_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db("event order lock"))?;
    Ok(())
}

/// Event rows as columns, inserted in one statement by [`insert_events_in_order`].
#[derive(Default)]
pub(super) struct EventColumns {
    id: Vec<String>,
    kind: Vec<&'static str>,
    at: Vec<i64>,
    message_id: Vec<String>,
    tenant_id: Vec<String>,
    recipient: Vec<String>,
    detail: Vec<String>,
    /// The bounce columns (`crate::bounce_columns`), written beside the detail.
    bounce_class: Vec<Option<String>>,
    bounce_async: Vec<bool>,
}

impl EventColumns {
    pub(super) fn push(
        &mut self,
        kind: EventType,
        at: i64,
        message: &MessageId,
        tenant: &TenantId,
        recipient: &str,
        detail: String,
    ) {
        self.push_bounce(kind, at, message, tenant, recipient, detail, (None, false));
    }

    /// [`Self::push`] with the event's bounce columns.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_bounce(
        &mut self,
        kind: EventType,
        at: i64,
        message: &MessageId,
        tenant: &TenantId,
        recipient: &str,
        detail: String,
        (bounce_class, bounce_async): (Option<&'static str>, bool),
    ) {
        self.bounce_class.push(bounce_class.map(str::to_string));
        self.bounce_async.push(bounce_async);
        self.id.push(EventId::generate().as_str().to_string());
        self.kind.push(kind.as_str());
        self.at.push(at);
        self.message_id.push(message.as_str().to_string());
        self.tenant_id.push(tenant.as_str().to_string());
        self.recipient.push(recipient.to_string());
        self.detail.push(detail);
    }

    pub(super) fn append(&mut self, mut other: EventColumns) {
        self.id.append(&mut other.id);
        self.kind.append(&mut other.kind);
        self.at.append(&mut other.at);
        self.message_id.append(&mut other.message_id);
        self.tenant_id.append(&mut other.tenant_id);
        self.recipient.append(&mut other.recipient);
        self.detail.append(&mut other.detail);
        self.bounce_class.append(&mut other.bounce_class);
        self.bounce_async.append(&mut other.bounce_async);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.id.is_empty()
    }
}

/// Takes the event-order lock (with a NOTIFY on `notify`, sent at commit, in the same
/// round trip) and inserts the events in their order, in one statement each. The last
/// thing a transaction should do before COMMIT.
pub(super) async fn insert_events_in_order(
    conn: &mut PgConnection,
    events: &EventColumns,
    notify: Option<&str>,
) -> Result<(), StoreError> {
    let lock = match notify {
        Some(channel) => sqlx::query("SELECT pg_notify($2, ''), pg_advisory_xact_lock($1)")
            .bind(EVENT_ORDER_LOCK)
            .bind(channel),
        None => sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(EVENT_ORDER_LOCK),
    };
    lock.execute(&mut *conn)
        .await
        .map_err(db("event order lock"))?;
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail, \
           bounce_class, bounce_async) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
           $6::text[], $7::text[], $8::text[], $9::bool[])",
    )
    .bind(&events.id)
    .bind(&events.kind)
    .bind(&events.at)
    .bind(&events.message_id)
    .bind(&events.tenant_id)
    .bind(&events.recipient)
    .bind(&events.detail)
    .bind(&events.bounce_class)
    .bind(&events.bounce_async)
    .execute(&mut *conn)
    .await
    .map_err(db("event"))?;
    Ok(())
}

/// Inserts one event (the caller holds the event-order lock).
pub(super) async fn insert_event(conn: &mut PgConnection, e: &NewEvent) -> Result<(), StoreError> {
    let (bounce_class, bounce_async) = crate::bounce_columns(&e.detail);
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail, \
           bounce_class, bounce_async) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(EventId::generate().as_str())
    .bind(e.kind.as_str())
    .bind(e.at)
    .bind(e.message_id.as_str())
    .bind(e.tenant_id.as_str())
    .bind(e.recipient.as_deref())
    .bind(e.detail.to_stored_json())
    .bind(bounce_class)
    .bind(bounce_async)
    .execute(&mut *conn)
    .await
    .map_err(db("event"))?;
    Ok(())
}

/// A pull never scans more than this many seqs past its cursor (as on SQLite).
const SCAN_WINDOW: i64 = 100_000;

/// The columns `stream_event` reads (events `e` joined with messages `m`).
macro_rules! event_columns {
    () => {
        "e.seq, e.id, e.type, e.at, e.message_id, e.tenant_id, e.recipient, e.detail, \
         m.rfc_message_id, m.meta"
    };
}
pub(super) use event_columns;

pub(super) fn stream_event(r: &PgRow) -> Option<StreamEvent> {
    let meta: Option<serde_json::Value> = r
        .get::<Option<String>, _>("meta")
        .and_then(|m| serde_json::from_str(&m).ok());
    let part = |key: &str| meta.as_ref().and_then(|m| m.get(key)).cloned();
    Some(StreamEvent {
        seq: r.get("seq"),
        event: event_from_row(r)?,
        rfc_message_id: r.get("rfc_message_id"),
        tags: part("tags"),
        metadata: part("metadata"),
    })
}

#[async_trait::async_trait]
impl EventStore for PgStore {
    async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.wh_webhook_delivery_counts().await
    }

    async fn list_events(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        // Seq order is commit order (see above): whatever a snapshot shows is a prefix
        // of the stream, so reading up to the highest visible seq never skips. One
        // statement, one snapshot: the bound and the page. With no match the one row
        // carries only the bound.
        let kinds: Option<Vec<&str>> =
            (!q.kinds.is_empty()).then(|| q.kinds.iter().map(|k| k.as_str()).collect());
        let sql = concat!(
            "SELECT w.upto, x.* FROM \
               (SELECT LEAST(COALESCE(MAX(seq), 0), $2) AS upto FROM events) w \
             LEFT JOIN LATERAL (SELECT ",
            event_columns!(),
            " FROM events e LEFT JOIN messages m ON m.id = e.message_id \
               WHERE e.seq > $1 AND e.seq <= w.upto \
               AND ($3::text IS NULL OR e.tenant_id = $3) \
               AND ($4::text IS NULL OR e.recipient = $4) \
               AND ($5::text IS NULL OR e.message_id = $5) \
               AND ($6::text[] IS NULL OR e.type = ANY($6)) \
               ORDER BY e.seq LIMIT $7) x ON TRUE \
             ORDER BY x.seq"
        );
        let rows = sqlx::query(sql)
            .bind(q.after)
            .bind(q.after.saturating_add(SCAN_WINDOW))
            .bind(q.tenant.as_ref().map(TenantId::as_str))
            .bind(q.recipient.as_deref())
            .bind(q.message_id.as_ref().map(MessageId::as_str))
            .bind(kinds)
            .bind(q.limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db("event"))?;
        let upto: i64 = rows.first().map_or(0, |r| r.get("upto"));
        if upto <= q.after {
            return Ok(EventPage {
                events: Vec::new(),
                next_cursor: q.after,
            });
        }
        let rows: Vec<&PgRow> = rows
            .iter()
            .filter(|r| r.get::<Option<i64>, _>("seq").is_some())
            .collect();
        let full = rows.len() >= q.limit;
        let events: Vec<StreamEvent> = rows.into_iter().filter_map(stream_event).collect();
        let next_cursor = match events.last() {
            Some(last) if full => last.seq,
            _ => upto,
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("event"))?;
        // The cursor row lock keeps a concurrent fan-out from moving past events being
        // deleted here.
        let cursor: i64 =
            sqlx::query_scalar("SELECT seq FROM event_cursors WHERE name = 'webhooks' FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(db("event cursor"))?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT e.seq FROM events e WHERE e.at < $1 AND e.seq <= $3 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.seq = e.seq AND d.state = 'pending') \
             ORDER BY e.seq LIMIT $2",
        )
        .bind(before)
        .bind(limit as i64)
        .bind(cursor)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("event"))?;
        if seqs.is_empty() {
            tx.commit().await.map_err(db("event"))?;
            return Ok(0);
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE seq = ANY($1) AND state != 'pending'")
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .map_err(db("webhook delivery"))?;
        let done = sqlx::query(
            "DELETE FROM events e WHERE e.seq = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.seq = e.seq AND d.state = 'pending')",
        )
        .bind(&seqs)
        .execute(&mut *tx)
        .await
        .map_err(db("event"))?;
        tx.commit().await.map_err(db("event"))?;
        Ok(done.rows_affected())
    }

    async fn create_webhook(&self, w: NewWebhook) -> Result<WebhookRecord, StoreError> {
        self.wh_create_webhook(w).await
    }

    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        self.wh_list_webhooks(tenant).await
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        self.wh_get_webhook(id).await
    }

    async fn update_webhook(
        &self,
        id: &WebhookId,
        p: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.wh_update_webhook(id, p).await
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        self.wh_delete_webhook(id).await
    }

    async fn fan_out_events(&self, limit: usize, now: i64) -> Result<FanOut, StoreError> {
        self.wh_fan_out_events(limit, now).await
    }

    async fn claim_deliveries(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.wh_claim_deliveries(webhook, now, lease_until, limit)
            .await
    }

    async fn record_delivery(&self, u: DeliveryUpdate) -> Result<(), StoreError> {
        self.wh_record_delivery(u).await
    }

    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.wh_list_deliveries(webhook, state, limit).await
    }

    async fn next_delivery_at(&self, webhook: &WebhookId) -> Result<Option<i64>, StoreError> {
        self.wh_next_delivery_at(webhook).await
    }
}
