//! Webhooks on PostgreSQL: their rows, the dispatcher's fan-out (the cursor row is
//! locked, so nodes fanning out take turns and every event gets one delivery row per
//! matching webhook), and the delivery state machine. Deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED`, so two nodes never claim the same row, in per-message,
//! per-recipient stream order (as on SQLite).

use super::events::{event_columns, stream_event};
use super::{PgStore, db};
use crate::*;
use mailroom_model::{EventId, EventType, TenantId, WebhookId};
use sqlx::Row;
use sqlx::postgres::PgRow;

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

impl PgStore {
    pub(super) async fn wh_webhook_delivery_counts(
        &self,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM webhook_deliveries \
             WHERE state IN ('pending', 'failed') GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("webhook delivery"))?;
        Ok(rows.iter().map(|r| (r.get("state"), r.get("n"))).collect())
    }

    pub(super) async fn wh_create_webhook(
        &self,
        w: NewWebhook,
    ) -> Result<WebhookRecord, StoreError> {
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

    pub(super) async fn wh_list_webhooks(
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

    pub(super) async fn wh_get_webhook(
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

    pub(super) async fn wh_update_webhook(
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

    pub(super) async fn wh_delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
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

    pub(super) async fn wh_fan_out_events(
        &self,
        limit: usize,
        now: i64,
    ) -> Result<FanOut, StoreError> {
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

    pub(super) async fn wh_claim_deliveries(
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

    pub(super) async fn wh_record_delivery(&self, u: DeliveryUpdate) -> Result<(), StoreError> {
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

    pub(super) async fn wh_list_deliveries(
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

    pub(super) async fn wh_next_delivery_at(
        &self,
        webhook: &WebhookId,
    ) -> Result<Option<i64>, StoreError> {
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
