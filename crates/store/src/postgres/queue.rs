//! The queue on PostgreSQL: reading messages back, claiming due recipients under owned,
//! fenced leases (`FOR UPDATE SKIP LOCKED`, one round trip, no row lock outlives the
//! claim), recording outcomes fenced by their token in one transaction, renewing and
//! releasing leases, and the operator's retry, cancel and quarantine actions.

use super::events::{EventColumns, insert_event, insert_events_in_order, lock_event_order};
use super::{PgStore, db, event_from_row, writer};
use crate::*;
use mailroom_model::{Event, EventType, MessageId, RecipientState, TenantId};
use sqlx::{PgConnection, Row};
use tokio::sync::oneshot;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, "recipient")
}

#[async_trait::async_trait]
impl MessageStore for PgStore {
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let packed = crate::body_codec::Packed::of(&message.body);
        self.writer
            .send(writer::Job {
                message,
                packed,
                done,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = wait.await.map_err(|_| StoreError::Closed)?;
        self.health.note(&result);
        result
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError> {
        // One snapshot for the message, its recipients and events.
        let mut tx = self.pool.begin().await.map_err(db("message"))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db("message"))?;
        let Some(m) = sqlx::query(
            "SELECT id, tenant_id, mail_from, rfc_message_id, size, received_at, source, client_ip, \
             dsn_ret, dsn_envid FROM messages WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("message"))?
        else {
            return Ok(None);
        };
        let rcpts = sqlx::query("SELECT * FROM recipients WHERE message_id = $1 ORDER BY idx")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("recipient"))?;
        let events = sqlx::query("SELECT * FROM events WHERE message_id = $1 ORDER BY seq")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("event"))?;
        tx.commit().await.map_err(db("message"))?;
        let events: Vec<Event> = events.iter().filter_map(event_from_row).collect();
        let recipients = rcpts
            .iter()
            .map(|r| {
                let address: String = r.get("address");
                RecipientView {
                    events: events
                        .iter()
                        .filter(|e| e.recipient.as_deref() == Some(&address))
                        .cloned()
                        .collect(),
                    state: RecipientState::parse(r.get::<&str, _>("state"))
                        .unwrap_or(RecipientState::Queued),
                    attempts: r.get("attempts"),
                    next_attempt_at: r.get("next_attempt_at"),
                    last_reply: r.get("last_reply"),
                    dsn_notify: r.get("dsn_notify"),
                    dsn_orcpt: r.get("dsn_orcpt"),
                    updated_at: r.get("updated_at"),
                    address,
                }
            })
            .collect();
        Ok(Some(MessageView {
            id: MessageId::from_stored(m.get("id")),
            tenant_id: TenantId::from_stored(m.get("tenant_id")),
            mail_from: m.get("mail_from"),
            rfc_message_id: m.get("rfc_message_id"),
            size: m.get("size"),
            received_at: m.get("received_at"),
            source: m.get("source"),
            client_ip: m.get("client_ip"),
            dsn_ret: m.get("dsn_ret"),
            dsn_envid: m.get("dsn_envid"),
            recipients,
        }))
    }

    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        // No body row: every recipient is final and the body was deleted.
        let row = sqlx::query(
            "SELECT b.body, b.codec::bigint AS codec, m.size FROM messages m \
             LEFT JOIN message_bodies b ON b.message_id = m.id WHERE m.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("message"))?;
        row.map(|r| match r.get::<Option<Vec<u8>>, _>("body") {
            Some(body) => crate::body_codec::decode(body, r.get("codec"), r.get("size")),
            None => Ok(Vec::new()),
        })
        .transpose()
    }
}

#[async_trait::async_trait]
impl QueueStore for PgStore {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError> {
        // A claim moves next_attempt_at to the lease's end (as on SQLite): leased rows
        // leave the due range of the (state, next_attempt_at) index, and a dead
        // claimant's rows come due again by themselves. Rows another claim has locked
        // are skipped; a row changed by a claim that committed meanwhile is re-checked
        // against the WHERE clause and dropped.
        let rows = sqlx::query(
            "WITH due AS ( \
               SELECT message_id, idx FROM recipients \
               WHERE state IN ('queued', 'deferred') AND next_attempt_at <= $2 \
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE recipients r SET lease_until = $1, next_attempt_at = $1, \
                 lease_owner = $4, lease_token = $5 \
               FROM due WHERE r.message_id = due.message_id AND r.idx = due.idx \
               RETURNING r.message_id, r.idx, r.address, r.domain, r.attempts, r.dsn_notify, \
                 r.dsn_orcpt, r.updated_at) \
             SELECT c.*, m.tenant_id, m.mail_from, m.received_at, m.dsn_ret, m.dsn_envid, \
               m.smtputf8, m.return_path, m.require_tls \
             FROM claimed c JOIN messages m ON m.id = c.message_id \
             ORDER BY c.message_id, c.idx",
        )
        .bind(lease.until)
        .bind(now)
        .bind(limit as i64)
        .bind(&lease.owner)
        .bind(lease.token)
        .fetch_all(&self.pool)
        .await
        .map_err(err);
        self.health.note(&rows);
        Ok(rows?
            .iter()
            .map(|r| DueRecipient {
                message_id: MessageId::from_stored(r.get("message_id")),
                idx: r.get("idx"),
                address: r.get("address"),
                domain: r.get("domain"),
                attempts: r.get("attempts"),
                dsn_notify: r.get("dsn_notify"),
                dsn_orcpt: r.get("dsn_orcpt"),
                tenant_id: TenantId::from_stored(r.get("tenant_id")),
                mail_from: r.get("mail_from"),
                received_at: r.get("received_at"),
                dsn_ret: r.get("dsn_ret"),
                dsn_envid: r.get("dsn_envid"),
                smtputf8: r.get("smtputf8"),
                require_tls: r.get("require_tls"),
                return_path: r.get("return_path"),
                lease_token: lease.token,
                last_attempt_at: r.get("updated_at"),
            })
            .collect())
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let result = async {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let lost = record(&mut tx, &outcomes, &self.hint).await?;
            drop_finished_bodies(&mut tx, &outcomes).await?;
            tx.commit().await.map_err(err)?;
            Ok(lost)
        }
        .await;
        self.health.note(&result);
        result
    }

    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        // next_attempt_at follows the lease's end, as in a claim.
        let r = sqlx::query(
            "UPDATE recipients SET lease_until = $1, next_attempt_at = $1 \
             WHERE lease_token = ANY($2) AND lease_owner = $3 \
               AND state IN ('queued', 'deferred')",
        )
        .bind(until)
        .bind(tokens)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected())
    }

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = keys.iter().map(|(m, _)| m.as_str().to_string()).collect();
        let idxs: Vec<i64> = keys.iter().map(|(_, i)| *i).collect();
        sqlx::query(
            "UPDATE recipients r SET lease_until = NULL, lease_owner = NULL, \
             lease_token = NULL, next_attempt_at = $3 \
             FROM UNNEST($1::text[], $2::bigint[]) AS k(message_id, idx) \
             WHERE r.message_id = k.message_id AND r.idx = k.idx AND r.lease_owner = $4 \
               AND r.state IN ('queued', 'deferred')",
        )
        .bind(&ids)
        .bind(&idxs)
        .bind(mailroom_model::now_millis())
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn release_node(&self, owner: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE recipients SET lease_until = NULL, lease_owner = NULL, \
             lease_token = NULL, next_attempt_at = $1 \
             WHERE lease_owner = $2 AND state IN ('queued', 'deferred')",
        )
        .bind(mailroom_model::now_millis())
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected())
    }

    async fn retry_now(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE recipients SET next_attempt_at = $1 WHERE message_id = $2 \
             AND state IN ('queued', 'deferred') AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        if r.rows_affected() > 0 {
            notify_queue(&self.pool).await?;
        }
        Ok(r.rows_affected())
    }

    async fn cancel(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let rows = sqlx::query(
            "UPDATE recipients SET state = 'cancelled', lease_until = NULL, updated_at = $1 \
             WHERE message_id = $2 AND state IN ('queued', 'deferred', 'quarantined') \
             RETURNING address",
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
        let tenant = TenantId::from_stored(tenant);
        lock_event_order(&mut tx).await?;
        for r in &rows {
            let e = NewEvent {
                kind: EventType::Cancelled,
                at: now,
                message_id: id.clone(),
                tenant_id: tenant.clone(),
                recipient: Some(r.get("address")),
                detail: crate::cancelled_detail(None),
            };
            insert_event(&mut tx, &e).await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(rows.len() as u64)
    }

    async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        let by_state = self.count_recipients_by_state().await?;
        let rows = sqlx::query(
            "SELECT domain, COUNT(*) AS n FROM recipients WHERE state IN ('queued', 'deferred') \
             GROUP BY domain ORDER BY n DESC, domain LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(QueueSummary {
            by_state,
            by_domain: rows.iter().map(|r| (r.get("domain"), r.get("n"))).collect(),
        })
    }

    async fn count_recipients_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            // Kept by triggers on `recipients` (migrations SQLite 0024, PostgreSQL 0013).
            crate::console::STATE_COUNTS_SQL,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows.iter().map(|r| (r.get("state"), r.get("n"))).collect())
    }

    async fn release_quarantined(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        self.quarantine_release(id, now).await
    }

    async fn list_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError> {
        self.quarantine_list(tenant, limit).await
    }
}

/// Wakes every node's delivery loop (a hint; they poll too).
pub(super) async fn notify_queue(pool: &sqlx::PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(writer::QUEUE_CHANNEL)
        .execute(pool)
        .await
        .map_err(err)?;
    Ok(())
}

/// Records the outcomes in the caller's transaction: one UPDATE for all of them
/// (fenced by token), the hard-bounce suppressions, then the events under the
/// event-order lock. Returns the keys of outcomes whose lease was lost.
async fn record(
    conn: &mut PgConnection,
    outcomes: &[Outcome],
    hint: &crate::SuppressionHint,
) -> Result<Vec<(MessageId, i64)>, StoreError> {
    let ord: Vec<i64> = (0..outcomes.len() as i64).collect();
    let ids: Vec<&str> = outcomes.iter().map(|o| o.message_id.as_str()).collect();
    let idxs: Vec<i64> = outcomes.iter().map(|o| o.idx).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state.as_str()).collect();
    let attempted: Vec<i64> = outcomes.iter().map(|o| i64::from(o.attempted)).collect();
    let next: Vec<Option<i64>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
    let replies: Vec<Option<&str>> = outcomes.iter().map(|o| o.last_reply.as_deref()).collect();
    let mxs: Vec<Option<&str>> = outcomes.iter().map(|o| o.last_mx.as_deref()).collect();
    let ats: Vec<i64> = outcomes.iter().map(|o| o.at).collect();
    let tokens: Vec<i64> = outcomes.iter().map(|o| o.lease_token).collect();
    // Only a recipient still waiting takes an outcome, except that a delivery is a
    // fact even if the recipient was cancelled while it was in flight.
    let updated: Vec<i64> = sqlx::query_scalar(
        "UPDATE recipients r SET state = o.state, attempts = r.attempts + o.attempted, \
           next_attempt_at = o.next_at, last_reply = COALESCE(o.reply, r.last_reply), \
           last_mx = COALESCE(o.mx, r.last_mx), lease_until = NULL, lease_owner = NULL, \
           lease_token = NULL, updated_at = o.at \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], \
                     $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::bigint[]) \
           AS o(ord, message_id, idx, state, attempted, next_at, reply, mx, at, token) \
         WHERE r.message_id = o.message_id AND r.idx = o.idx AND r.lease_token = o.token \
           AND (r.state IN ('queued', 'deferred') OR o.state = 'delivered') \
         RETURNING o.ord",
    )
    .bind(&ord)
    .bind(&ids)
    .bind(&idxs)
    .bind(&states)
    .bind(&attempted)
    .bind(&next)
    .bind(&replies)
    .bind(&mxs)
    .bind(&ats)
    .bind(&tokens)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let mut done = vec![false; outcomes.len()];
    for i in updated {
        done[i as usize] = true;
    }
    // Outcomes that changed nothing: lost if the recipient now carries another token
    // (or none), not if it was cancelled or is already final under this token.
    let missed: Vec<usize> = (0..outcomes.len()).filter(|i| !done[*i]).collect();
    let mut lost = Vec::new();
    if !missed.is_empty() {
        let m_ord: Vec<i64> = missed.iter().map(|i| *i as i64).collect();
        let m_ids: Vec<&str> = missed.iter().map(|i| ids[*i]).collect();
        let m_idx: Vec<i64> = missed.iter().map(|i| idxs[*i]).collect();
        let m_tok: Vec<i64> = missed.iter().map(|i| tokens[*i]).collect();
        let lost_ord: Vec<i64> = sqlx::query_scalar(
            "SELECT k.ord FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) \
               AS k(ord, message_id, idx, token) \
             JOIN recipients r ON r.message_id = k.message_id AND r.idx = k.idx \
             WHERE r.lease_token IS DISTINCT FROM k.token ORDER BY k.ord",
        )
        .bind(&m_ord)
        .bind(&m_ids)
        .bind(&m_idx)
        .bind(&m_tok)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        lost = lost_ord
            .into_iter()
            .map(|i| {
                let o = &outcomes[i as usize];
                (o.message_id.clone(), o.idx)
            })
            .collect();
    }
    let recorded: Vec<&Outcome> = outcomes
        .iter()
        .zip(&done)
        .filter_map(|(o, d)| d.then_some(o))
        .collect();
    for o in recorded
        .iter()
        .filter(|o| o.suppress && o.state == RecipientState::Bounced)
    {
        // A hard bounce: the address goes on the tenant's suppression list, in the
        // same transaction as the outcome. A manual or earlier entry is kept.
        hint.note(o.tenant_id.as_str());
        sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, detail, message_id, created_at) \
             VALUES ($1, $2, 'bounce', $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(o.tenant_id.as_str())
        .bind(o.recipient.to_lowercase())
        .bind(mailroom_model::EventDetail::from(o.detail.clone()).to_stored_json())
        .bind(o.message_id.as_str())
        .bind(o.at)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    }
    if !recorded.is_empty() {
        let mut events = EventColumns::default();
        for o in &recorded {
            let detail = mailroom_model::EventDetail::from(o.detail.clone());
            events.push_bounce(
                o.event,
                o.at,
                &o.message_id,
                &o.tenant_id,
                &o.recipient,
                detail.to_stored_json(),
                crate::bounce_columns(&detail),
            );
        }
        insert_events_in_order(&mut *conn, &events, None).await?;
    }
    Ok(lost)
}

/// Deletes the bodies of the messages among `outcomes` that have no recipient left to
/// deliver, in the outcomes' transaction (see `body_codec`). PostgreSQL's autovacuum
/// makes the space reusable; the table does not shrink on disk without `VACUUM FULL`.
async fn drop_finished_bodies(
    conn: &mut PgConnection,
    outcomes: &[Outcome],
) -> Result<(), StoreError> {
    let mut ids: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.state.is_final())
        .map(|o| o.message_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM message_bodies b WHERE b.message_id = ANY($1::text[]) \
           AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = b.message_id \
             AND (r.state IN ('queued', 'deferred', 'quarantined') \
               OR upper(coalesce(r.dsn_notify, '')) LIKE '%FAILURE%'))",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}
