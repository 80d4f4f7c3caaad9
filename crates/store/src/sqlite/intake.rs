//! Bounce and complaint intake and sender health on SQLite. Reads go through the
//! pool; every write that inserts an event (async bounces, complaints, health level
//! changes) runs as a writer op (`ops.rs`), so the event stream keeps its one-writer
//! order (see `events.rs`).

use super::db;
use crate::{
    AsyncBounce, BounceTarget, Complaint, HealthChange, HealthCounts, HealthLevel, IntakeRecorded,
    SenderHealth, StoreError, TargetRecipient,
};
use mailroom_model::{
    EventDetail, EventId, EventType, MessageId, RecipientState, TenantId, TenantStatus, now_millis,
};
use sqlx::{Row, SqliteConnection, SqlitePool};

/// The intake writes, queued to the writer task.
pub(crate) enum IntakeOp {
    Bounce(AsyncBounce),
    Complaint(Complaint),
    Health(HealthChange),
}

/// What an intake op produced.
pub(crate) enum IntakeDone {
    Recorded(IntakeRecorded),
    Paused(bool),
}

pub(super) async fn bounce_target(
    pool: &SqlitePool,
    id: &MessageId,
) -> Result<Option<BounceTarget>, StoreError> {
    let Some(m) =
        sqlx::query("SELECT tenant_id, return_path, rfc_message_id FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db("message"))?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT idx, address, state FROM recipients WHERE message_id = $1 ORDER BY idx",
    )
    .bind(id.as_str())
    .fetch_all(pool)
    .await
    .map_err(db("recipient"))?;
    let recipients = rows
        .iter()
        .map(|r| TargetRecipient {
            idx: r.get("idx"),
            address: r.get("address"),
            state: RecipientState::parse(r.get::<&str, _>("state"))
                .unwrap_or(RecipientState::Queued),
        })
        .collect();
    Ok(Some(BounceTarget {
        message_id: id.clone(),
        tenant_id: TenantId::from_stored(m.get("tenant_id")),
        return_path: m.get("return_path"),
        rfc_message_id: m.get("rfc_message_id"),
        recipients,
    }))
}

pub(super) async fn health_counts(
    pool: &SqlitePool,
    tenant: &TenantId,
    since: i64,
) -> Result<HealthCounts, StoreError> {
    // Deliveries and complaints are counted from the `events_tenant` index alone; only
    // the (few) bounces are read, for the columns their writers set (`bounce_async`:
    // recorded by intake after delivery; `bounce_class`), not their detail's JSON.
    let r = sqlx::query(
        "SELECT \
           (SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND type = 'delivered' \
              AND at >= $2) AS delivered, \
           COALESCE(SUM(bounce_async = 0), 0) AS bounced_at_delivery, \
           COALESCE(SUM(bounce_class IS 'hard'), 0) AS hard_bounces, \
           (SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND type = 'complained' \
              AND at >= $2) AS complaints \
         FROM events WHERE tenant_id = $1 AND type = 'bounced' AND at >= $2",
    )
    .bind(tenant.as_str())
    .bind(since)
    .fetch_one(pool)
    .await
    .map_err(db("event"))?;
    Ok(HealthCounts {
        delivered: r.get("delivered"),
        bounced_at_delivery: r.get("bounced_at_delivery"),
        hard_bounces: r.get("hard_bounces"),
        complaints: r.get("complaints"),
    })
}

pub(super) async fn get_sender_health(
    pool: &SqlitePool,
    tenant: &TenantId,
) -> Result<Option<SenderHealth>, StoreError> {
    let row = sqlx::query("SELECT * FROM sender_health WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await
        .map_err(db("sender health"))?;
    Ok(row.map(|r| SenderHealth {
        tenant_id: tenant.clone(),
        level: HealthLevel::parse(r.get::<&str, _>("level")).unwrap_or_default(),
        window_start: r.get("window_start"),
        updated_at: r.get("updated_at"),
    }))
}

pub(crate) async fn execute(
    conn: &mut SqliteConnection,
    op: &IntakeOp,
    hint: &crate::SuppressionHint,
) -> Result<IntakeDone, StoreError> {
    match op {
        IntakeOp::Bounce(b) => bounce(conn, b, hint).await.map(IntakeDone::Recorded),
        IntakeOp::Complaint(c) => complaint(conn, c, hint).await.map(IntakeDone::Recorded),
        IntakeOp::Health(h) => health(conn, h).await.map(IntakeDone::Paused),
    }
}

fn err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(e, what)
}

/// The recipient's address and the message's tenant, if both exist.
async fn recipient(
    conn: &mut SqliteConnection,
    id: &MessageId,
    idx: i64,
) -> Result<Option<(String, TenantId)>, StoreError> {
    let row = sqlx::query(
        "SELECT r.address, m.tenant_id FROM recipients r \
         JOIN messages m ON m.id = r.message_id WHERE r.message_id = $1 AND r.idx = $2",
    )
    .bind(id.as_str())
    .bind(idx)
    .fetch_optional(&mut *conn)
    .await
    .map_err(err("recipient"))?;
    Ok(row.map(|r| (r.get("address"), TenantId::from_stored(r.get("tenant_id")))))
}

async fn insert_event(
    conn: &mut SqliteConnection,
    kind: EventType,
    at: i64,
    message: Option<&MessageId>,
    tenant: &TenantId,
    recipient: Option<&str>,
    detail: &EventDetail,
) -> Result<(), StoreError> {
    let (bounce_class, bounce_async) = crate::bounce_columns(detail);
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail, \
         bounce_class, bounce_async) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(EventId::generate().as_str())
    .bind(kind.as_str())
    .bind(at)
    .bind(message.map(|m| m.as_str()))
    .bind(tenant.as_str())
    .bind(recipient)
    .bind(detail.to_stored_json())
    .bind(bounce_class)
    .bind(bounce_async)
    .execute(&mut *conn)
    .await
    .map_err(err("event"))?;
    Ok(())
}

/// The caller notes the tenant in the store's suppression hint first.
async fn suppress(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    address: &str,
    reason: &str,
    detail: &EventDetail,
    message: &MessageId,
    at: i64,
) -> Result<(), StoreError> {
    // A manual or earlier entry is kept.
    sqlx::query(
        "INSERT OR IGNORE INTO suppressions \
         (tenant_id, address, reason, detail, message_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant.as_str())
    .bind(address.to_lowercase())
    .bind(reason)
    .bind(detail.to_stored_json())
    .bind(message.as_str())
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(err("suppression"))?;
    Ok(())
}

async fn bounce(
    conn: &mut SqliteConnection,
    b: &AsyncBounce,
    hint: &crate::SuppressionHint,
) -> Result<IntakeRecorded, StoreError> {
    let Some((address, tenant)) = recipient(conn, &b.message_id, b.idx).await? else {
        return Ok(IntakeRecorded::NotFound);
    };
    // Final states other than delivered (bounced, expired, cancelled, suppressed)
    // keep their fate: a second report about them changes nothing.
    let updated = sqlx::query(
        "UPDATE recipients SET state = 'bounced', next_attempt_at = NULL, lease_until = NULL, lease_owner = NULL, \
         lease_token = NULL, last_reply = COALESCE($1, last_reply), updated_at = $2 \
         WHERE message_id = $3 AND idx = $4 AND state IN ('delivered', 'queued', 'deferred')",
    )
    .bind(b.reply.as_deref())
    .bind(b.at)
    .bind(b.message_id.as_str())
    .bind(b.idx)
    .execute(&mut *conn)
    .await
    .map_err(err("recipient"))?;
    if updated.rows_affected() == 0 {
        return Ok(IntakeRecorded::Duplicate);
    }
    let detail = EventDetail::from(b.detail.clone());
    insert_event(
        conn,
        EventType::Bounced,
        b.at,
        Some(&b.message_id),
        &tenant,
        Some(&address),
        &detail,
    )
    .await?;
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
    Ok(IntakeRecorded::Recorded {
        tenant_id: tenant,
        recipient: address,
    })
}

async fn complaint(
    conn: &mut SqliteConnection,
    c: &Complaint,
    hint: &crate::SuppressionHint,
) -> Result<IntakeRecorded, StoreError> {
    let Some((address, tenant)) = recipient(conn, &c.message_id, c.idx).await? else {
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
    .map_err(err("event"))?;
    if seen.is_some() {
        return Ok(IntakeRecorded::Duplicate);
    }
    let detail = EventDetail::from(c.detail.clone());
    insert_event(
        conn,
        EventType::Complained,
        c.at,
        Some(&c.message_id),
        &tenant,
        Some(&address),
        &detail,
    )
    .await?;
    hint.note(tenant.as_str());
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
    Ok(IntakeRecorded::Recorded {
        tenant_id: tenant,
        recipient: address,
    })
}

async fn health(conn: &mut SqliteConnection, h: &HealthChange) -> Result<bool, StoreError> {
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
    .map_err(err("sender health"))?;
    let mut paused = false;
    if h.pause {
        // Only an active tenant is paused: an operator's suspension stays as it is.
        let r = sqlx::query("UPDATE tenants SET status = $1 WHERE id = $2 AND status = $3")
            .bind(TenantStatus::Paused.as_str())
            .bind(h.tenant_id.as_str())
            .bind(TenantStatus::Active.as_str())
            .execute(&mut *conn)
            .await
            .map_err(err("tenant"))?;
        paused = r.rows_affected() > 0;
    }
    if let Some((kind, detail)) = &h.event {
        let at = if h.at > 0 { h.at } else { now_millis() };
        let detail = EventDetail::from(*detail);
        insert_event(conn, *kind, at, None, &h.tenant_id, None, &detail).await?;
    }
    Ok(paused)
}
