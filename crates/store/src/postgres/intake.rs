//! Bounce and complaint intake and sender health on PostgreSQL. Each write is one
//! transaction with its event (and suppression, or pause); the event goes in last,
//! under the event-order lock (`events.rs`), so the stream's seq order stays commit
//! order. Two nodes handling the same report: the recipient row (bounce) or the
//! recipient's row lock (complaint) makes the second one a duplicate.

use super::PgStore;
use super::domains::insert_tenant_event;
use super::rows::all;
use crate::{
    AsyncBounce, BounceTarget, Complaint, HealthChange, HealthCounts, HealthLevel, IntakeRecorded,
    IntakeStore, NewEvent, SenderHealth, StoreError, TargetRecipient,
};
use mailroom_model::now_millis;
use mailroom_model::{
    Event, EventDetail, EventId, EventType, MessageId, RecipientState, TenantId, TenantStatus,
};
use sqlx::{PgConnection, Row};

/// The recipient's address and the message's tenant, if both exist; the recipient's
/// row stays locked until the transaction ends, so two nodes recording reports about
/// the same recipient run one after the other.
async fn lock_recipient(
    conn: &mut PgConnection,
    id: &MessageId,
    idx: i64,
) -> Result<Option<(String, TenantId)>, StoreError> {
    let on = StoreError::on("recipient");
    let row = sqlx::query(
        "SELECT r.address, m.tenant_id FROM recipients r \
         JOIN messages m ON m.id = r.message_id WHERE r.message_id = $1 AND r.idx = $2 \
         FOR UPDATE OF r",
    )
    .bind(id.as_str())
    .bind(idx)
    .fetch_optional(&mut *conn)
    .await
    .map_err(&on)?;
    row.map(|r| {
        Ok((
            r.try_get("address")?,
            TenantId::from_stored(r.try_get("tenant_id")?),
        ))
    })
    .transpose()
    .map_err(on)
}

/// Suppresses the address unless it already is (a manual or earlier entry is kept).
/// The caller notes the tenant in the store's suppression hint first.
async fn suppress(
    conn: &mut PgConnection,
    tenant: &TenantId,
    address: &str,
    reason: &str,
    detail: &EventDetail,
    message: &MessageId,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO suppressions (tenant_id, address, reason, detail, message_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, address) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(address.to_lowercase())
    .bind(reason)
    .bind(detail.to_stored_json())
    .bind(message.as_str())
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::on("suppression"))?;
    Ok(())
}

/// Takes the event-order lock and inserts one message-level event.
async fn message_event(conn: &mut PgConnection, e: &NewEvent) -> Result<(), StoreError> {
    super::events::lock_event_order(&mut *conn).await?;
    super::events::insert_event(&mut *conn, e).await
}

async fn bounce(
    conn: &mut PgConnection,
    b: &AsyncBounce,
    hint: &crate::SuppressionHint,
) -> Result<IntakeRecorded, StoreError> {
    let Some((address, tenant)) = lock_recipient(conn, &b.message_id, b.idx).await? else {
        return Ok(IntakeRecorded::NotFound);
    };
    // Final states other than delivered (bounced, expired, cancelled, suppressed)
    // keep their fate: a second report about them changes nothing. The lease is
    // cleared whole (owner and token too, as `cancel` does): an attempt still in
    // flight for a queued or deferred recipient then finds its lease lost and records
    // nothing over the bounce. (SQLite clears only `lease_until`.)
    let updated = sqlx::query(
        "UPDATE recipients SET state = 'bounced', next_attempt_at = NULL, lease_until = NULL, \
         lease_owner = NULL, lease_token = NULL, last_reply = COALESCE($1, last_reply), \
         updated_at = $2 \
         WHERE message_id = $3 AND idx = $4 AND state IN ('delivered', 'queued', 'deferred')",
    )
    .bind(b.reply.as_deref())
    .bind(b.at)
    .bind(b.message_id.as_str())
    .bind(b.idx)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::on("recipient"))?;
    if updated.rows_affected() == 0 {
        return Ok(IntakeRecorded::Duplicate);
    }
    let detail = EventDetail::from(b.detail.clone());
    if b.hard {
        hint.note(tenant.as_str());
        suppress(
            conn,
            &tenant,
            &address,
            "bounce",
            &detail,
            &b.message_id,
            b.at,
        )
        .await?;
    }
    let event = NewEvent {
        kind: EventType::Bounced,
        at: b.at,
        message_id: b.message_id.clone(),
        tenant_id: tenant.clone(),
        recipient: Some(address.clone()),
        detail,
    };
    message_event(conn, &event).await?;
    Ok(IntakeRecorded::Recorded {
        tenant_id: tenant,
        recipient: address,
    })
}

async fn complaint(
    conn: &mut PgConnection,
    c: &Complaint,
    hint: &crate::SuppressionHint,
) -> Result<IntakeRecorded, StoreError> {
    // The recipient's row lock makes a concurrent second complaint wait, then see
    // this one's event.
    let Some((address, tenant)) = lock_recipient(conn, &c.message_id, c.idx).await? else {
        return Ok(IntakeRecorded::NotFound);
    };
    let seen = sqlx::query(
        "SELECT 1 FROM events WHERE message_id = $1 AND recipient = $2 AND type = 'complained' \
         LIMIT 1",
    )
    .bind(c.message_id.as_str())
    .bind(&address)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::on("event"))?;
    if seen.is_some() {
        return Ok(IntakeRecorded::Duplicate);
    }
    hint.note(tenant.as_str());
    let detail = EventDetail::from(c.detail.clone());
    suppress(
        conn,
        &tenant,
        &address,
        "complaint",
        &detail,
        &c.message_id,
        c.at,
    )
    .await?;
    let event = NewEvent {
        kind: EventType::Complained,
        at: c.at,
        message_id: c.message_id.clone(),
        tenant_id: tenant.clone(),
        recipient: Some(address.clone()),
        detail,
    };
    message_event(conn, &event).await?;
    Ok(IntakeRecorded::Recorded {
        tenant_id: tenant,
        recipient: address,
    })
}

async fn health(conn: &mut PgConnection, h: &HealthChange) -> Result<bool, StoreError> {
    sqlx::query(
        "INSERT INTO sender_health (tenant_id, level, window_start, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
         level = excluded.level, window_start = excluded.window_start, \
         updated_at = excluded.updated_at",
    )
    .bind(h.tenant_id.as_str())
    .bind(h.level.as_str())
    .bind(h.window_start)
    .bind(h.at)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::on("sender health"))?;
    let mut paused = false;
    if h.pause {
        // Only an active tenant is paused: an operator's suspension stays as it is.
        let r = sqlx::query("UPDATE tenants SET status = $1 WHERE id = $2 AND status = $3")
            .bind(TenantStatus::Paused.as_str())
            .bind(h.tenant_id.as_str())
            .bind(TenantStatus::Active.as_str())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::on("tenant"))?;
        paused = r.rows_affected() > 0;
    }
    if let Some((kind, detail)) = &h.event {
        let event = Event {
            id: EventId::generate(),
            kind: *kind,
            at: if h.at > 0 { h.at } else { now_millis() },
            message_id: None,
            tenant_id: Some(h.tenant_id.clone()),
            recipient: None,
            detail: EventDetail::from(*detail).to_value(),
        };
        insert_tenant_event(conn, &event).await?;
    }
    Ok(paused)
}

impl PgStore {
    /// Runs one intake write in its own transaction.
    async fn intake_tx<T>(
        &self,
        f: impl for<'c> FnOnce(
            &'c mut PgConnection,
        ) -> futures::future::BoxFuture<'c, Result<T, StoreError>>
        + Send,
    ) -> Result<T, StoreError>
    where
        T: Send,
    {
        let on = StoreError::on("intake");
        let mut tx = self.pool().begin().await.map_err(&on)?;
        let out = f(&mut tx).await?;
        tx.commit().await.map_err(&on)?;
        Ok(out)
    }
}

#[async_trait::async_trait]
impl IntakeStore for PgStore {
    async fn bounce_target(&self, id: &MessageId) -> Result<Option<BounceTarget>, StoreError> {
        // One snapshot: the message and its recipients as of the same moment.
        let mut tx = self
            .pool()
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(StoreError::on("message"))?;
        let Some(m) = sqlx::query(
            "SELECT tenant_id, return_path, rfc_message_id FROM messages WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::on("message"))?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT idx, address, state FROM recipients WHERE message_id = $1 ORDER BY idx",
        )
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::on("recipient"))?;
        tx.commit().await.map_err(StoreError::on("message"))?;
        let recipients = all(
            &rows,
            |r| {
                Ok(TargetRecipient {
                    idx: r.try_get("idx")?,
                    address: r.try_get("address")?,
                    state: RecipientState::parse(r.try_get::<&str, _>("state")?)
                        .unwrap_or(RecipientState::Queued),
                })
            },
            "recipient",
        )?;
        let on = StoreError::on("message");
        Ok(Some(BounceTarget {
            message_id: id.clone(),
            tenant_id: TenantId::from_stored(m.try_get("tenant_id").map_err(&on)?),
            return_path: m.try_get("return_path").map_err(&on)?,
            rfc_message_id: m.try_get("rfc_message_id").map_err(&on)?,
            recipients,
        }))
    }

    async fn record_async_bounce(&self, b: AsyncBounce) -> Result<IntakeRecorded, StoreError> {
        let hint = self.hint.clone();
        self.intake_tx(|conn| Box::pin(async move { bounce(conn, &b, &hint).await }))
            .await
    }

    async fn record_complaint(&self, c: Complaint) -> Result<IntakeRecorded, StoreError> {
        let hint = self.hint.clone();
        self.intake_tx(|conn| Box::pin(async move { complaint(conn, &c, &hint).await }))
            .await
    }

    async fn health_counts(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<HealthCounts, StoreError> {
        // Bounces are told apart by the columns their writers set (`bounce_async`:
        // recorded by intake after delivery; `bounce_class`), not by their detail's JSON.
        let on = StoreError::on("event");
        let r = sqlx::query(
            "SELECT \
               COUNT(*) FILTER (WHERE type = 'delivered') AS delivered, \
               COUNT(*) FILTER (WHERE type = 'bounced' AND NOT bounce_async) \
                 AS bounced_at_delivery, \
               COUNT(*) FILTER (WHERE type = 'bounced' AND bounce_class = 'hard') \
                 AS hard_bounces, \
               COUNT(*) FILTER (WHERE type = 'complained') AS complaints \
             FROM events WHERE tenant_id = $1 AND type IN ('delivered', 'bounced', 'complained') \
               AND at >= $2",
        )
        .bind(tenant.as_str())
        .bind(since)
        .fetch_one(self.pool())
        .await
        .map_err(&on)?;
        Ok(HealthCounts {
            delivered: r.try_get("delivered").map_err(&on)?,
            bounced_at_delivery: r.try_get("bounced_at_delivery").map_err(&on)?,
            hard_bounces: r.try_get("hard_bounces").map_err(&on)?,
            complaints: r.try_get("complaints").map_err(&on)?,
        })
    }

    async fn get_sender_health(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError> {
        let on = StoreError::on("sender health");
        let row = sqlx::query("SELECT * FROM sender_health WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(&on)?;
        row.map(|r| {
            Ok(SenderHealth {
                tenant_id: tenant.clone(),
                level: HealthLevel::parse(r.try_get::<&str, _>("level")?).unwrap_or_default(),
                window_start: r.try_get("window_start")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
        .map_err(on)
    }

    async fn set_sender_health(&self, change: HealthChange) -> Result<bool, StoreError> {
        self.intake_tx(|conn| Box::pin(async move { health(conn, &change).await }))
            .await
    }
}
