//! Tracking and quarantine on PostgreSQL: engagement events (opened, clicked), the
//! one-click unsubscribe (suppression and `unsubscribed` event in one transaction),
//! releasing quarantined recipients and the quarantine list. Every transaction that
//! inserts events takes the event-order lock first (see `events.rs`).

use super::events::{insert_event, lock_event_order};
use super::{PgStore, db};
use crate::*;
use mailroom_model::{EventType, MessageId, RecipientState, TenantId};
use sqlx::Row;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, "event")
}

#[async_trait::async_trait]
impl TrackingStore for PgStore {
    async fn record_event(&self, event: NewEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        lock_event_order(&mut tx).await?;
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(err)
    }

    async fn unsubscribe(&self, s: Suppression, event: NewEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        self.hint.note(s.tenant_id.as_str());
        sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, detail, message_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, address) DO UPDATE SET reason = excluded.reason, \
             detail = excluded.detail, message_id = excluded.message_id, \
             created_at = excluded.created_at",
        )
        .bind(s.tenant_id.as_str())
        .bind(s.address.to_lowercase())
        .bind(&s.reason)
        .bind(s.detail.to_string())
        .bind(s.message_id.as_ref().map(|m| m.as_str()))
        .bind(s.created_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        lock_event_order(&mut tx).await?;
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(err)
    }
}

impl PgStore {
    /// Quarantined → queued (due now), each with a `released` event.
    pub(super) async fn quarantine_release(
        &self,
        id: &MessageId,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let rows = sqlx::query(
            "UPDATE recipients SET state = 'queued', next_attempt_at = $1, lease_until = NULL, \
             updated_at = $1 WHERE message_id = $2 AND state = 'quarantined' RETURNING address",
        )
        .bind(now)
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(super::writer::QUEUE_CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        lock_event_order(&mut tx).await?;
        for r in &rows {
            let e = NewEvent {
                kind: EventType::Released,
                at: now,
                message_id: id.clone(),
                tenant_id: TenantId::from_stored(tenant.clone()),
                recipient: Some(r.get("address")),
                detail: mailroom_model::StateChangeDetail {
                    reason: None,
                    state: RecipientState::Queued,
                }
                .into(),
            };
            insert_event(&mut tx, &e).await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(rows.len() as u64)
    }

    pub(super) async fn quarantine_list(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.tenant_id, m.mail_from, m.rfc_message_id, m.received_at, m.size, \
               ARRAY(SELECT r2.address FROM recipients r2 WHERE r2.message_id = m.id \
                     AND r2.state = 'quarantined' ORDER BY r2.idx) AS recipients, \
               (SELECT e.detail FROM events e WHERE e.message_id = m.id AND e.type = 'filtered' \
                ORDER BY e.seq LIMIT 1) AS filter \
             FROM messages m \
             WHERE m.id IN (SELECT r.message_id FROM recipients r WHERE r.state = 'quarantined') \
               AND ($1::text IS NULL OR m.tenant_id = $1) \
             ORDER BY m.id LIMIT $2",
        )
        .bind(tenant.map(|t| t.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("quarantine"))?;
        Ok(rows
            .iter()
            .map(|m| QuarantinedMessage {
                id: MessageId::from_stored(m.get("id")),
                tenant_id: TenantId::from_stored(m.get("tenant_id")),
                mail_from: m.get("mail_from"),
                rfc_message_id: m.get("rfc_message_id"),
                received_at: m.get("received_at"),
                size: m.get("size"),
                recipients: m.get("recipients"),
                filter: m
                    .get::<Option<String>, _>("filter")
                    .and_then(|f| serde_json::from_str(&f).ok())
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }
}
