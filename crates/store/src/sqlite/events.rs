//! The event stream and webhooks on SQLite: pulling events by cursor, retention,
//! webhook rows, the dispatcher's fan-out and the per-delivery state machine
//! (pending → delivered | failed).
//!
//! Why a seq cursor never skips or repeats here: with several writers, an
//! AUTOINCREMENT seq is allocated at INSERT but becomes visible at COMMIT, so seq 11
//! could be visible before seq 10 commits, and a reader that moved its cursor to 11
//! would never see 10. In this backend every INSERT into `events` is made by the one
//! writer task on its one connection (`writer.rs`, `ops.rs`), one transaction after
//! another, so seqs become visible in increasing order: what a reader sees is always a
//! prefix of the stream. As a second guard each pull reads `MAX(seq)` first and only
//! returns events up to it, in the same read transaction (one WAL snapshot). A backend
//! with concurrent writers (PostgreSQL) needs another rule, e.g. holding back events
//! younger than the oldest open writing transaction.
//!
//! Webhook rows and delivery rows are written through the pool (never events), in
//! short `BEGIN IMMEDIATE` transactions, so they cannot reorder the stream.

use super::{SqliteStore, db, event_from_row};
use crate::*;
use mailroom_model::{EventId, EventType, MessageId, TenantId, WebhookId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// A pull never scans more than this many seqs past its cursor, so a filter that
/// matches rarely still costs a bounded read; the cursor then moves to the window's end.
const SCAN_WINDOW: i64 = 100_000;

/// The columns `stream_event` reads (events `e` joined with messages `m`).
macro_rules! event_columns {
    () => {
        "e.seq, e.id, e.type, e.at, e.message_id, e.tenant_id, e.recipient, e.detail, \
         m.rfc_message_id, m.meta"
    };
}

fn stream_event(r: &SqliteRow) -> Option<StreamEvent> {
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

fn webhook_from_row(r: &SqliteRow) -> WebhookRecord {
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

fn delivery_from_row(r: &SqliteRow) -> Option<WebhookDelivery> {
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

impl SqliteStore {
    pub(super) async fn events_list(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("event"))?;
        let max: Option<i64> = sqlx::query("SELECT MAX(seq) AS m FROM events")
            .fetch_one(&mut *tx)
            .await
            .map_err(db("event"))?
            .get("m");
        let upto = max.unwrap_or(0).min(q.after.saturating_add(SCAN_WINDOW));
        if upto <= q.after {
            tx.commit().await.map_err(db("event"))?;
            return Ok(EventPage {
                events: Vec::new(),
                next_cursor: q.after,
            });
        }
        let kinds = (!q.kinds.is_empty()).then(|| kinds_json(&q.kinds));
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events e LEFT JOIN messages m ON m.id = e.message_id \
             WHERE e.seq > $1 AND e.seq <= $2 \
             AND ($3 IS NULL OR e.tenant_id = $3) \
             AND ($4 IS NULL OR e.recipient = $4) \
             AND ($5 IS NULL OR e.message_id = $5) \
             AND ($6 IS NULL OR instr($6, '\"' || e.type || '\"') > 0) \
             ORDER BY e.seq LIMIT $7"
        );
        let rows = sqlx::query(sql)
            .bind(q.after)
            .bind(upto)
            .bind(q.tenant.as_ref().map(TenantId::as_str))
            .bind(q.recipient.as_deref())
            .bind(q.message_id.as_ref().map(MessageId::as_str))
            .bind(kinds)
            .bind(q.limit as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("event"))?;
        tx.commit().await.map_err(db("event"))?;
        let full = rows.len() >= q.limit;
        let events: Vec<StreamEvent> = rows.iter().filter_map(stream_event).collect();
        let next_cursor = match events.last() {
            Some(last) if full => last.seq,
            _ => upto,
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    pub(super) async fn events_prune(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        const PRUNABLE: &str = "SELECT e.seq FROM events e WHERE e.at < $1 \
             AND e.seq <= (SELECT seq FROM event_cursors WHERE name = 'webhooks') \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.seq = e.seq AND d.state = 'pending') \
             ORDER BY e.seq LIMIT $2";
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("event"))?;
        let seqs: Vec<i64> = sqlx::query(PRUNABLE)
            .bind(before)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("event"))?
            .iter()
            .map(|r| r.get("seq"))
            .collect();
        let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
            tx.commit().await.map_err(db("event"))?;
            return Ok(0);
        };
        // Deletes exactly the rows selected: the same conditions, within their range.
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE seq >= $1 AND seq <= $2 \
             AND state != 'pending' AND seq IN (SELECT seq FROM events WHERE at < $3)",
        )
        .bind(first)
        .bind(last)
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(db("webhook delivery"))?;
        let done = sqlx::query(
            "DELETE FROM events WHERE seq >= $1 AND seq <= $2 AND at < $3 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.seq = events.seq AND d.state = 'pending')",
        )
        .bind(first)
        .bind(last)
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(db("event"))?;
        tx.commit().await.map_err(db("event"))?;
        Ok(done.rows_affected())
    }

    pub(super) async fn webhook_create(&self, w: NewWebhook) -> Result<WebhookRecord, StoreError> {
        let now = mailroom_model::now_millis();
        let types = w.event_types.as_deref().map(kinds_json);
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, event_types, secret, enabled, after_seq, \
             created_at) VALUES ($1, $2, $3, $4, $5, 1, \
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

    pub(super) async fn webhook_list(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM webhooks WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY id")
                .bind(tenant.map(TenantId::as_str))
                .fetch_all(&self.pool)
                .await
                .map_err(db("webhook"))?;
        Ok(rows.iter().map(webhook_from_row).collect())
    }

    pub(super) async fn webhook_get(
        &self,
        id: &WebhookId,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("webhook"))?;
        Ok(row.as_ref().map(webhook_from_row))
    }

    pub(super) async fn webhook_update(
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
        self.webhook_get(id).await
    }

    pub(super) async fn webhook_delete(&self, id: &WebhookId) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("webhook"))?;
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

    pub(super) async fn fan_out(&self, limit: usize, now: i64) -> Result<FanOut, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("event cursor"))?;
        let cursor: i64 = sqlx::query("SELECT seq FROM event_cursors WHERE name = 'webhooks'")
            .fetch_one(&mut *tx)
            .await
            .map_err(db("event cursor"))?
            .get("seq");
        // The seq of the `limit`-th event after the cursor, or the last one there is.
        let upto: Option<i64> = sqlx::query(
            "SELECT MAX(seq) AS m FROM \
             (SELECT seq FROM events WHERE seq > $1 ORDER BY seq LIMIT $2)",
        )
        .bind(cursor)
        .bind(limit as i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("event"))?
        .get("m");
        let Some(upto) = upto else {
            tx.commit().await.map_err(db("event cursor"))?;
            return Ok(FanOut {
                cursor,
                ..FanOut::default()
            });
        };
        let events: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM events WHERE seq > $1 AND seq <= $2")
                .bind(cursor)
                .bind(upto)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("event"))?
                .get("n");
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, seq, state, attempts, next_attempt_at, \
             created_at, updated_at) \
             SELECT w.id, e.seq, 'pending', 0, $3, $3, $3 FROM events e \
             JOIN webhooks w ON w.tenant_id = e.tenant_id AND w.enabled = 1 \
                  AND e.seq > w.after_seq \
                  AND (w.event_types IS NULL OR instr(w.event_types, '\"' || e.type || '\"') > 0) \
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

    pub(super) async fn deliveries_claim(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("webhook delivery"))?;
        let sql = concat!(
            "SELECT d.webhook_id, d.attempts, d.created_at AS d_created_at, ",
            event_columns!(),
            " FROM webhook_deliveries d JOIN events e ON e.seq = d.seq \
             LEFT JOIN messages m ON m.id = e.message_id \
             WHERE d.webhook_id = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM events e2 JOIN webhook_deliveries d2 \
                 ON d2.webhook_id = d.webhook_id AND d2.seq = e2.seq \
                 WHERE e2.message_id = e.message_id AND e2.seq < e.seq \
                 AND (e2.recipient IS e.recipient OR e2.recipient IS NULL) \
                 AND d2.state = 'pending') \
             ORDER BY d.next_attempt_at, d.seq LIMIT $3"
        );
        let rows = sqlx::query(sql)
            .bind(webhook.as_str())
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("webhook delivery"))?;
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.get("seq");
            sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $3 \
                 WHERE webhook_id = $1 AND seq = $2",
            )
            .bind(webhook.as_str())
            .bind(seq)
            .bind(lease_until)
            .execute(&mut *tx)
            .await
            .map_err(db("webhook delivery"))?;
            if let Some(event) = stream_event(r) {
                due.push(DueDelivery {
                    webhook_id: webhook.clone(),
                    seq,
                    attempts: r.get("attempts"),
                    created_at: r.get("d_created_at"),
                    event,
                });
            }
        }
        tx.commit().await.map_err(db("webhook delivery"))?;
        Ok(due)
    }

    pub(super) async fn delivery_record(&self, u: DeliveryUpdate) -> Result<(), StoreError> {
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

    pub(super) async fn deliveries_list(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.*, e.id AS event_id, e.type FROM webhook_deliveries d \
             JOIN events e ON e.seq = d.seq \
             WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.state = $2) \
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

    pub(super) async fn delivery_next_at(
        &self,
        webhook: &WebhookId,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS n FROM webhook_deliveries \
             WHERE webhook_id = $1 AND state = 'pending'",
        )
        .bind(webhook.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db("webhook delivery"))?;
        Ok(row.get("n"))
    }
}
