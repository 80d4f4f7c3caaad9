//! Durable acceptance with group commit. Every `enqueue` of this node goes through one
//! bounded channel to one writer task, which takes whatever queued up while the
//! previous batch was committing, writes it in one transaction with multi-row INSERTs,
//! commits (`synchronous_commit = on`: the commit record is flushed before COMMIT
//! returns) and only then answers each caller. A batch with recipients that are due
//! and not leased sends one `NOTIFY mailroom_queue` (delivered at commit), a hint to
//! every node's delivery loop. One bad message does not fail the others: a failed
//! batch is retried message by message. Semantics follow `sqlite/writer.rs`
//! (suppressed and filtered events after `accepted`, the idempotency row in the same
//! transaction, quarantine). Events are inserted last, under the event-order lock.

use super::events::lock_event_order;
use crate::{NewMessage, StoreError};
use mailroom_model::{EventId, EventType, RecipientState};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use tokio::sync::{mpsc, oneshot};

/// The channel every node listens on for "new work is due".
pub const QUEUE_CHANNEL: &str = "mailroom_queue";

pub(super) struct Job {
    pub message: NewMessage,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// Bounds on one batch (PostgreSQL takes at most 65,535 bound parameters per
/// statement: 256 messages × 14 and 1,000 rows × 12 stay well under).
const MAX_BATCH_MESSAGES: usize = 256;
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
const ROWS_PER_INSERT: usize = 1000;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, "message")
}

pub(super) async fn run(pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH_MESSAGES);
    while let Some(first) = rx.recv().await {
        let mut bytes = first.message.body.len();
        batch.push(first);
        while batch.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.message.body.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let messages: Vec<&NewMessage> = batch.iter().map(|j| &j.message).collect();
        match write_batch(&pool, &messages).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                let job = batch.pop().expect("one job");
                let _ = job.done.send(Err(e));
            }
            Err(_) => {
                // One bad message must not fail its neighbours: retry each alone.
                for job in batch.drain(..) {
                    let result = write_batch(&pool, &[&job.message]).await;
                    let _ = job.done.send(result);
                }
            }
        }
    }
}

/// One transaction for the batch; rolled back (by dropping it) on any failure.
async fn write_batch(pool: &PgPool, messages: &[&NewMessage]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(err)?;
    insert_all(&mut tx, messages).await?;
    tx.commit().await.map_err(err)
}

/// Whether a message adds recipients a delivery loop could claim now.
fn wakes_delivery(m: &NewMessage) -> bool {
    m.lease.is_none()
        && m.quarantine.is_none()
        && m.recipients.iter().any(|r| r.suppressed.is_none())
}

struct EventRow<'a> {
    m: &'a NewMessage,
    idx: usize,
    kind: EventType,
    detail: String,
}

async fn insert_all(conn: &mut PgConnection, messages: &[&NewMessage]) -> Result<(), StoreError> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO messages (id, tenant_id, mail_from, rfc_message_id, size, received_at, \
         source, client_ip, dsn_ret, dsn_envid, smtputf8, body, meta, return_path) ",
    );
    qb.push_values(messages, |mut b, m| {
        b.push_bind(m.id.as_str())
            .push_bind(m.tenant_id.as_str())
            .push_bind(m.mail_from.as_str())
            .push_bind(m.rfc_message_id.as_deref())
            .push_bind(m.body.len() as i64)
            .push_bind(m.received_at)
            .push_bind(m.source)
            .push_bind(m.client_ip.as_deref())
            .push_bind(m.dsn_ret.as_deref())
            .push_bind(m.dsn_envid.as_deref())
            .push_bind(m.smtputf8)
            .push_bind(m.body.as_slice())
            .push_bind(m.meta.as_ref().map(|v| v.to_string()))
            .push_bind(m.return_path.as_deref());
    });
    qb.build().execute(&mut *conn).await.map_err(err)?;

    let rcpts: Vec<(&NewMessage, usize)> = messages
        .iter()
        .flat_map(|m| (0..m.recipients.len()).map(move |i| (*m, i)))
        .collect();
    for chunk in rcpts.chunks(ROWS_PER_INSERT) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO recipients (message_id, idx, address, domain, state, next_attempt_at, \
             dsn_notify, dsn_orcpt, updated_at, lease_until, lease_owner, lease_token) ",
        );
        qb.push_values(chunk, |mut b, (m, idx)| {
            let rcpt = &m.recipients[*idx];
            let (state, next, lease) = match rcpt.suppressed {
                Some(_) => (RecipientState::Suppressed, None, None),
                None if m.quarantine.is_some() => (RecipientState::Quarantined, None, None),
                None => (
                    RecipientState::Queued,
                    Some(m.lease.as_ref().map_or(m.received_at, |l| l.until)),
                    m.lease.as_ref(),
                ),
            };
            b.push_bind(m.id.as_str())
                .push_bind(*idx as i64)
                .push_bind(rcpt.address.as_str())
                .push_bind(rcpt.domain.as_str())
                .push_bind(state.as_str())
                .push_bind(next)
                .push_bind(rcpt.dsn_notify.as_deref())
                .push_bind(rcpt.dsn_orcpt.as_deref())
                .push_bind(m.received_at)
                .push_bind(lease.map(|l| l.until))
                .push_bind(lease.map(|l| l.owner.as_str()))
                .push_bind(lease.map(|l| l.token));
        });
        qb.build().execute(&mut *conn).await.map_err(err)?;
    }

    for m in messages {
        if let Some(k) = &m.idempotency {
            // The API layer serialises requests per key on one node; across nodes the
            // primary key makes a second writer fail (its message is not accepted). A
            // key older than its window is replaced.
            sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
                 response = excluded.response, created_at = excluded.created_at",
            )
            .bind(m.tenant_id.as_str())
            .bind(&k.key)
            .bind(&k.request_hash)
            .bind(k.response.to_string())
            .bind(k.created_at)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
    }

    if messages.iter().any(|m| wakes_delivery(m)) {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(QUEUE_CHANNEL)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }

    // Every `accepted` event, then the `suppressed`/`filtered` ones after them.
    let mut events: Vec<EventRow> = Vec::new();
    let mut after: Vec<EventRow> = Vec::new();
    for m in messages {
        let detail = m.accepted_detail.to_string();
        for (idx, rcpt) in m.recipients.iter().enumerate() {
            events.push(EventRow {
                m,
                idx,
                kind: EventType::Accepted,
                detail: detail.clone(),
            });
            if let Some(reason) = &rcpt.suppressed {
                after.push(EventRow {
                    m,
                    idx,
                    kind: EventType::Suppressed,
                    detail: serde_json::json!({ "reason": reason, "suppression": "listed" })
                        .to_string(),
                });
            } else if let Some(filter) = &m.quarantine {
                after.push(EventRow {
                    m,
                    idx,
                    kind: EventType::Filtered,
                    detail: filter.to_string(),
                });
            }
        }
    }
    events.extend(after);
    lock_event_order(&mut *conn).await?;
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) ",
        );
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(EventId::generate().as_str().to_string())
                .push_bind(e.kind.as_str())
                .push_bind(e.m.received_at)
                .push_bind(e.m.id.as_str())
                .push_bind(e.m.tenant_id.as_str())
                .push_bind(e.m.recipients[e.idx].address.as_str())
                .push_bind(e.detail.as_str());
        });
        qb.build().execute(&mut *conn).await.map_err(err)?;
    }
    Ok(())
}
