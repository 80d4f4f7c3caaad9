//! Tracking and quarantine on SQLite: engagement events (opened, clicked), the
//! one-click unsubscribe (suppression + `unsubscribed` event in one transaction), and
//! releasing quarantined recipients. Every write that inserts an event runs in the
//! writer task (an `ops::Op::Content`), so the event stream's seq order stays commit
//! order (see `events.rs`); the quarantine list is a read through the pool.

use super::{SqliteStore, db};
use crate::{NewEvent, QuarantinedMessage, StoreError, Suppression};
use mailroom_model::{EventId, EventType, MessageId, RecipientState, TenantId};
use sqlx::{Row, SqliteConnection};

pub(crate) enum ContentOp {
    Event(NewEvent),
    Unsubscribe(Suppression, NewEvent),
    Release {
        id: MessageId,
        now: i64,
    },
    /// A tenant-level event without a message (`domain.dns_error`, ...).
    TenantEvent(mailroom_model::Event),
    /// Deletes a domain and its DKIM keys, then writes its `domain.deleted` event
    /// (nothing when the domain is already gone): 1 if deleted.
    DeleteDomain {
        name: String,
        event: mailroom_model::Event,
    },
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, "event")
}

async fn insert(conn: &mut SqliteConnection, e: &NewEvent) -> Result<(), StoreError> {
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
    .map_err(err)?;
    Ok(())
}

pub(crate) async fn execute(
    conn: &mut SqliteConnection,
    op: &ContentOp,
    hint: &crate::SuppressionHint,
) -> Result<u64, StoreError> {
    match op {
        ContentOp::Event(e) => insert(conn, e).await.map(|_| 1),
        ContentOp::Unsubscribe(s, e) => {
            hint.note(s.tenant_id.as_str());
            sqlx::query(
                "INSERT INTO suppressions (tenant_id, address, reason, detail, message_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, address) DO UPDATE SET reason = excluded.reason, \
                 detail = excluded.detail, message_id = excluded.message_id, created_at = excluded.created_at",
            )
            .bind(s.tenant_id.as_str())
            .bind(s.address.to_lowercase())
            .bind(&s.reason)
            .bind(s.detail.to_string())
            .bind(s.message_id.as_ref().map(|m| m.as_str()))
            .bind(s.created_at)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            insert(conn, e).await.map(|_| 1)
        }
        ContentOp::Release { id, now } => release(conn, id, *now).await,
        ContentOp::DeleteDomain { name, event } => {
            sqlx::query("DELETE FROM dkim_keys WHERE domain = $1")
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            let gone = sqlx::query("DELETE FROM domains WHERE name = $1")
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(err)?
                .rows_affected();
            if gone == 0 {
                return Ok(0);
            }
            // Reports about the domain go with it: whoever adds the name next sees none.
            for sql in [
                "DELETE FROM received_reports WHERE domain = $1",
                "DELETE FROM dmarc_report_rows WHERE domain = $1",
                "DELETE FROM tlsrpt_report_rows WHERE domain = $1",
            ] {
                sqlx::query(sql)
                    .bind(name)
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?;
            }
            insert_tenant_event(conn, event).await
        }
        ContentOp::TenantEvent(e) => insert_tenant_event(conn, e).await,
    }
}

async fn insert_tenant_event(
    conn: &mut SqliteConnection,
    e: &mailroom_model::Event,
) -> Result<u64, StoreError> {
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
         VALUES ($1, $2, $3, NULL, $4, NULL, $5)",
    )
    .bind(e.id.as_str())
    .bind(e.kind.as_str())
    .bind(e.at)
    .bind(e.tenant_id.as_ref().map(|t| t.as_str()))
    .bind(e.detail.to_string())
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(1)
}

/// Quarantined → queued (due now), each with a `released` event.
async fn release(conn: &mut SqliteConnection, id: &MessageId, now: i64) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "UPDATE recipients SET state = 'queued', next_attempt_at = $1, lease_until = NULL, \
         updated_at = $1 WHERE message_id = $2 AND state = 'quarantined' RETURNING address",
    )
    .bind(now)
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let tenant: String = sqlx::query("SELECT tenant_id FROM messages WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?
        .get("tenant_id");
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
        insert(conn, &e).await?;
    }
    Ok(rows.len() as u64)
}

impl SqliteStore {
    pub(crate) async fn content_op(&self, op: ContentOp) -> Result<u64, StoreError> {
        self.op(|done| super::ops::Op::Content {
            op: Box::new(op),
            done,
        })
        .await
    }

    pub(crate) async fn quarantine_list(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("quarantine"))?;
        let ids = sqlx::query(
            "SELECT DISTINCT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id \
             WHERE r.state = 'quarantined' AND ($1 IS NULL OR m.tenant_id = $1) \
             ORDER BY r.message_id LIMIT $2",
        )
        .bind(tenant.map(|t| t.as_str()))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("quarantine"))?;
        let mut out = Vec::with_capacity(ids.len());
        for row in ids {
            let id: String = row.get("message_id");
            let m = sqlx::query(
                "SELECT id, tenant_id, mail_from, rfc_message_id, received_at, size FROM messages WHERE id = $1",
            )
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("quarantine"))?;
            let recipients = sqlx::query(
                "SELECT address FROM recipients WHERE message_id = $1 AND state = 'quarantined' ORDER BY idx",
            )
            .bind(&id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("quarantine"))?
            .iter()
            .map(|r| r.get::<String, _>("address"))
            .collect();
            let filter: Option<String> = sqlx::query(
                "SELECT detail FROM events WHERE message_id = $1 AND type = 'filtered' ORDER BY seq LIMIT 1",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("quarantine"))?
            .map(|r| r.get("detail"));
            out.push(QuarantinedMessage {
                id: MessageId::from_stored(m.get("id")),
                tenant_id: TenantId::from_stored(m.get("tenant_id")),
                mail_from: m.get("mail_from"),
                rfc_message_id: m.get("rfc_message_id"),
                received_at: m.get("received_at"),
                size: m.get("size"),
                recipients,
                filter: filter
                    .and_then(|f| serde_json::from_str(&f).ok())
                    .unwrap_or(serde_json::Value::Null),
            });
        }
        tx.commit().await.map_err(db("quarantine"))?;
        Ok(out)
    }
}
