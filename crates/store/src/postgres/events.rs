//! The event stream in commit order, and webhooks with their delivery rows.
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
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
           $6::text[], $7::text[])",
    )
    .bind(&events.id)
    .bind(&events.kind)
    .bind(&events.at)
    .bind(&events.message_id)
    .bind(&events.tenant_id)
    .bind(&events.recipient)
    .bind(&events.detail)
    .execute(&mut *conn)
    .await
    .map_err(db("event"))?;
    Ok(())
}

/// Inserts one event (the caller holds the event-order lock).
pub(super) async fn insert_event(conn: &mut PgConnection, e: &NewEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(EventId::generate().as_str())
    .bind(e.kind.as_str())
    .bind(e.at)
    .bind(e.message_id.as_str())
    .bind(e.tenant_id.as_str())
    .bind(e.recipient.as_deref())
    .bind(e.detail.to_string())
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

fn stream_event(r: &PgRow) -> Option<StreamEvent> {
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

fn kinds_json(kinds: &[EventType]) -> String {
    serde_json::to_string(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

fn webhook_from_row(r: &PgRow) -> WebhookRecord {
    let types: Option<String> = r.get("event_types");
    WebhookRecord {
        id: WebhookId::from_stored(r.get("id")),
        tenant_id: TenantId::from_stored(r.get("tenant_id")),
        url: r.get("url"),
        event_types: types.map(|t| {
            serde_json::from_str::<Vec<String>>(&t)
                .unwrap_or_default()
                .iter()
                .filter_map(|k| EventType::parse(k))
                .collect()
        }),
        secret: mailroom_secrets::Sealed::from_stored(r.get("secret")),
        enabled: r.get("enabled"),
        created_at: r.get("created_at"),
    }
}

fn delivery_from_row(r: &PgRow) -> Option<WebhookDelivery> {
    let state = DeliveryState::parse(r.get::<&str, _>("state"))?;
    Some(WebhookDelivery {
        webhook_id: WebhookId::from_stored(r.get("webhook_id")),
        event_id: EventId::from_stored(r.get("event_id")),
        event_type: EventType::parse(r.get::<&str, _>("type"))?,
        state,
        attempts: r.get("attempts"),
        next_attempt_at: (state == DeliveryState::Pending).then(|| r.get("next_attempt_at")),
        last_status: r.get("last_status"),
        last_error: r.get("last_error"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        seq: r.get("seq"),
    })
}

#[async_trait::async_trait]
impl EventStore for PgStore {
    async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM webhook_deliveries \
             WHERE state IN ('pending', 'failed') GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("webhook delivery"))?;
        Ok(rows.iter().map(|r| (r.get("state"), r.get("n"))).collect())
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
        let now = mailroom_model::now_millis();
        let types = w.event_types.as_deref().map(kinds_json);
        // Every event visible now is before the webhook; any later one has a higher
        // seq (seq order is commit order).
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, event_types, secret, enabled, after_seq, \
             created_at) VALUES ($1, $2, $3, $4, $5, TRUE, \
             (SELECT COALESCE(MAX(seq), 0) FROM events), $6)",
        )
        .bind(w.id.as_str())
        .bind(w.tenant_id.as_str())
        .bind(&w.url)
        .bind(types)
        .bind(w.secret.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("webhook"))?;
        Ok(WebhookRecord {
            id: w.id,
            tenant_id: w.tenant_id,
            url: w.url,
            event_types: w.event_types,
            secret: w.secret,
            enabled: true,
            created_at: now,
        })
    }

    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM webhooks WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY id",
        )
        .bind(tenant.map(TenantId::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db("webhook"))?;
        Ok(rows.iter().map(webhook_from_row).collect())
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("webhook"))?;
        Ok(row.as_ref().map(webhook_from_row))
    }

    async fn update_webhook(
        &self,
        id: &WebhookId,
        p: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let types = p.event_types.as_ref().map(|t| t.as_deref().map(kinds_json));
        sqlx::query(
            "UPDATE webhooks SET url = COALESCE($2, url), enabled = COALESCE($3, enabled), \
             event_types = CASE WHEN $4 THEN $5 ELSE event_types END WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(p.url.as_deref())
        .bind(p.enabled)
        .bind(types.is_some())
        .bind(types.flatten())
        .execute(&self.pool)
        .await
        .map_err(db("webhook"))?;
        self.get_webhook(id).await
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("webhook"))?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("webhook delivery"))?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("webhook"))?;
        tx.commit().await.map_err(db("webhook"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn fan_out_events(&self, limit: usize, now: i64) -> Result<FanOut, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("event cursor"))?;
        // The cursor row is locked: two nodes fanning out take turns.
        let cursor: i64 =
            sqlx::query_scalar("SELECT seq FROM event_cursors WHERE name = 'webhooks' FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(db("event cursor"))?;
        let span: (Option<i64>, i64) = sqlx::query_as(
            "SELECT MAX(seq), COUNT(*) FROM \
             (SELECT seq FROM events WHERE seq > $1 ORDER BY seq LIMIT $2) s",
        )
        .bind(cursor)
        .bind(limit as i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("event"))?;
        let (Some(upto), events) = span else {
            tx.commit().await.map_err(db("event cursor"))?;
            return Ok(FanOut {
                cursor,
                ..FanOut::default()
            });
        };
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, seq, state, attempts, next_attempt_at, \
             created_at, updated_at) \
             SELECT w.id, e.seq, 'pending', 0, $3, $3, $3 FROM events e \
             JOIN webhooks w ON w.tenant_id = e.tenant_id AND w.enabled \
                  AND e.seq > w.after_seq \
                  AND (w.event_types IS NULL \
                       OR strpos(w.event_types, '\"' || e.type || '\"') > 0) \
             WHERE e.seq > $1 AND e.seq <= $2 \
             ON CONFLICT (webhook_id, seq) DO NOTHING",
        )
        .bind(cursor)
        .bind(upto)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("webhook delivery"))?;
        sqlx::query("UPDATE event_cursors SET seq = $1 WHERE name = 'webhooks'")
            .bind(upto)
            .execute(&mut *tx)
            .await
            .map_err(db("event cursor"))?;
        tx.commit().await.map_err(db("event cursor"))?;
        Ok(FanOut {
            cursor: upto,
            events: events as u64,
            deliveries: inserted.rows_affected(),
        })
    }

    async fn claim_deliveries(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // Per message and recipient, stream order: not while an earlier event of the
        // same recipient (or an earlier message-wide event) is pending (waiting or in
        // flight) for this webhook. Rows another node is claiming are skipped; a row a
        // committed claim moved past `now` is re-checked and dropped.
        let sql = concat!(
            "WITH due AS ( \
               SELECT d.webhook_id, d.seq FROM webhook_deliveries d JOIN events e ON e.seq = d.seq \
               WHERE d.webhook_id = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2 \
               AND NOT EXISTS (SELECT 1 FROM events e2 JOIN webhook_deliveries d2 \
                   ON d2.webhook_id = d.webhook_id AND d2.seq = e2.seq \
                   WHERE e2.message_id = e.message_id AND e2.seq < e.seq \
                   AND (e2.recipient IS NOT DISTINCT FROM e.recipient OR e2.recipient IS NULL) \
                   AND d2.state = 'pending') \
               ORDER BY d.next_attempt_at, d.seq LIMIT $3 \
               FOR UPDATE OF d SKIP LOCKED), \
             claimed AS ( \
               UPDATE webhook_deliveries w SET next_attempt_at = $4 FROM due \
               WHERE w.webhook_id = due.webhook_id AND w.seq = due.seq \
               RETURNING w.seq, w.attempts, w.created_at AS d_created_at) \
             SELECT c.attempts, c.d_created_at, ",
            event_columns!(),
            " FROM claimed c JOIN events e ON e.seq = c.seq \
             LEFT JOIN messages m ON m.id = e.message_id ORDER BY e.seq"
        );
        let rows = sqlx::query(sql)
            .bind(webhook.as_str())
            .bind(now)
            .bind(limit as i64)
            .bind(lease_until)
            .fetch_all(&self.pool)
            .await
            .map_err(db("webhook delivery"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(DueDelivery {
                    webhook_id: webhook.clone(),
                    seq: r.get("seq"),
                    attempts: r.get("attempts"),
                    created_at: r.get("d_created_at"),
                    event: stream_event(r)?,
                })
            })
            .collect())
    }

    async fn record_delivery(&self, u: DeliveryUpdate) -> Result<(), StoreError> {
        let next = match u.state {
            DeliveryState::Pending => u.next_attempt_at.unwrap_or(u.at),
            DeliveryState::Delivered | DeliveryState::Failed => u.at,
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $3, attempts = $4, next_attempt_at = $5, \
             last_status = $6, last_error = $7, updated_at = $8 \
             WHERE webhook_id = $1 AND seq = $2 AND state = 'pending'",
        )
        .bind(u.webhook_id.as_str())
        .bind(u.seq)
        .bind(u.state.as_str())
        .bind(u.attempts)
        .bind(next)
        .bind(u.last_status.map(i64::from))
        .bind(u.last_error.as_deref())
        .bind(u.at)
        .execute(&self.pool)
        .await
        .map_err(db("webhook delivery"))?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.*, e.id AS event_id, e.type FROM webhook_deliveries d \
             JOIN events e ON e.seq = d.seq \
             WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.state = $2) \
             ORDER BY d.seq DESC LIMIT $3",
        )
        .bind(webhook.as_str())
        .bind(state.map(DeliveryState::as_str))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db("webhook delivery"))?;
        Ok(rows.iter().filter_map(delivery_from_row).collect())
    }

    async fn next_delivery_at(&self, webhook: &WebhookId) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries \
             WHERE webhook_id = $1 AND state = 'pending'",
        )
        .bind(webhook.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db("webhook delivery"))
    }
}
