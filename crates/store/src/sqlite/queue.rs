//! `MessageStore` and `QueueStore` on SQLite: the durable enqueue (through the
//! group-commit writer), reading messages back, and the delivery queue's claims,
//! outcomes, renewals and releases (executed by the writer task, see `ops.rs`).

use super::*;

#[async_trait::async_trait]
impl MessageStore for SqliteStore {
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let packed = crate::body_codec::Packed::of(&message.body);
        self.writer
            .send(writer::Job {
                message,
                packed,
                done,
                staged: None,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = wait.await.map_err(|_| StoreError::Closed)?;
        self.health.note(&result);
        result
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError> {
        // One read transaction: the recipients and their events come from the same
        // snapshot, so the state shown never contradicts the timeline.
        let mut tx = self.pool.begin().await.map_err(db("message"))?;
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
            "SELECT b.body, b.codec, m.size FROM messages m \
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
impl QueueStore for SqliteStore {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError> {
        let lease = lease.clone();
        self.op(|done| ops::Op::Claim {
            lease,
            now,
            limit: limit as i64,
            done,
        })
        .await
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        self.op(|done| ops::Op::Record { outcomes, done }).await
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
        let (owner, tokens) = (owner.to_string(), tokens.to_vec());
        self.op(|done| ops::Op::Renew {
            owner,
            tokens,
            until,
            done,
        })
        .await
    }

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.op(|done| ops::Op::Release { owner, keys, done }).await
    }

    async fn release_node(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_string();
        self.op(|done| ops::Op::ReleaseNode { owner, done }).await
    }

    async fn retry_now(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let id = id.clone();
        self.op(|done| ops::Op::RetryNow { id, now, done }).await
    }

    async fn cancel(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let id = id.clone();
        self.op(|done| ops::Op::Cancel { id, now, done }).await
    }

    async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        let by_state = self.count_recipients_by_state().await?;
        let rows = sqlx::query(
            "SELECT domain, COUNT(*) AS n FROM recipients WHERE state IN ('queued', 'deferred') \
             GROUP BY domain ORDER BY n DESC, domain LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("recipient"))?;
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
        .map_err(db("recipient"))?;
        Ok(rows.iter().map(|r| (r.get("state"), r.get("n"))).collect())
    }

    async fn release_quarantined(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let id = id.clone();
        self.content_op(tracking::ContentOp::Release { id, now })
            .await
    }

    async fn list_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError> {
        self.quarantine_list(tenant, limit).await
    }
}
