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

use super::events::{EventColumns, insert_events_in_order};
use crate::{NewMessage, StoreError};
use mailroom_model::{EventType, RecipientState};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

/// The channel every node listens on for "new work is due".
pub const QUEUE_CHANNEL: &str = "mailroom_queue";

pub(super) struct Job {
    pub message: NewMessage,
    /// The body as it will be stored, encoded by the caller (`Packed`).
    pub packed: crate::body_codec::Packed,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// Bounds on one batch: enough to amortise the commit, small enough to keep latency
/// and memory in check.
const MAX_BATCH_MESSAGES: usize = 256;
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

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
        let packed: Vec<_> = batch.iter().map(|j| &j.packed).collect();
        match write_batch(&pool, &messages, &packed).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(Failure::Unavailable(e)) => {
                // Whatever queued up while this batch waited for a connection fails
                // now too, rather than waiting its own turn.
                while let Ok(job) = rx.try_recv() {
                    batch.push(job);
                }
                fail_all(&mut batch, &e);
            }
            Err(Failure::Failed(e)) if batch.len() == 1 => {
                let job = batch.pop().expect("one job");
                let _ = job.done.send(Err(e));
            }
            Err(Failure::Failed(_)) => {
                // One bad message must not fail its neighbours: retry each alone (but
                // stop trying once the database is unreachable).
                while !batch.is_empty() {
                    let job = batch.remove(0);
                    match write_batch(&pool, &[&job.message], &[&job.packed]).await {
                        Ok(()) => {
                            let _ = job.done.send(Ok(()));
                        }
                        Err(Failure::Failed(e)) => {
                            let _ = job.done.send(Err(e));
                        }
                        Err(Failure::Unavailable(e)) => {
                            batch.insert(0, job);
                            fail_all(&mut batch, &e);
                        }
                    }
                }
            }
        }
    }
}

/// Why a batch was not written.
enum Failure {
    /// No connection (server down, pool exhausted): every message fails alike.
    Unavailable(StoreError),
    /// A statement or the commit failed: maybe because of one message.
    Failed(StoreError),
}

fn fail_all(batch: &mut Vec<Job>, e: &StoreError) {
    for job in batch.drain(..) {
        let _ = job.done.send(Err(StoreError::Database(e.to_string())));
    }
}

/// One transaction for the batch; rolled back (by dropping it) on any failure.
async fn write_batch(
    pool: &PgPool,
    messages: &[&NewMessage],
    packed: &[&crate::body_codec::Packed],
) -> Result<(), Failure> {
    let mut tx = pool.begin().await.map_err(|e| {
        Failure::Unavailable(StoreError::Database(format!("PostgreSQL unavailable: {e}")))
    })?;
    insert_all(&mut tx, messages, packed)
        .await
        .map_err(Failure::Failed)?;
    tx.commit().await.map_err(|e| Failure::Failed(err(e)))
}

/// Whether a message adds recipients a delivery loop could claim now.
fn wakes_delivery(m: &NewMessage) -> bool {
    m.lease.is_none()
        && m.quarantine.is_none()
        && m.recipients.iter().any(|r| r.suppressed.is_none())
}

#[derive(Default)]
struct RecipientColumns<'a> {
    message_id: Vec<&'a str>,
    idx: Vec<i64>,
    address: Vec<&'a str>,
    domain: Vec<&'a str>,
    state: Vec<&'static str>,
    next: Vec<Option<i64>>,
    notify: Vec<Option<&'a str>>,
    orcpt: Vec<Option<&'a str>>,
    updated: Vec<i64>,
    lease_until: Vec<Option<i64>>,
    lease_owner: Vec<Option<&'a str>>,
    lease_token: Vec<Option<i64>>,
}

async fn insert_all(
    conn: &mut PgConnection,
    messages: &[&NewMessage],
    packed: &[&crate::body_codec::Packed],
) -> Result<(), StoreError> {
    // Messages and recipients in one statement, each column bound as one array: the
    // SQL text is the same whatever the batch size, so it is prepared once per
    // connection (a VALUES list would be a new statement for every batch size).
    let mut m_id = Vec::with_capacity(messages.len());
    let mut m_tenant = Vec::with_capacity(messages.len());
    let mut m_from = Vec::with_capacity(messages.len());
    let mut m_rfc = Vec::with_capacity(messages.len());
    let mut m_size = Vec::with_capacity(messages.len());
    let mut m_at = Vec::with_capacity(messages.len());
    let mut m_source = Vec::with_capacity(messages.len());
    let mut m_ip = Vec::with_capacity(messages.len());
    let mut m_ret = Vec::with_capacity(messages.len());
    let mut m_envid = Vec::with_capacity(messages.len());
    let mut m_utf8 = Vec::with_capacity(messages.len());
    let mut m_requiretls = Vec::with_capacity(messages.len());
    let bodies: Vec<_> = messages
        .iter()
        .zip(packed)
        .map(|(m, p)| p.stored(&m.body))
        .collect();
    let mut m_body: Vec<&[u8]> = Vec::with_capacity(messages.len());
    let mut m_codec = Vec::with_capacity(messages.len());
    let mut m_meta = Vec::with_capacity(messages.len());
    let mut m_rp = Vec::with_capacity(messages.len());
    let mut r = RecipientColumns::default();
    for (m, (body, codec)) in messages.iter().zip(&bodies) {
        m_id.push(m.id.as_str());
        m_tenant.push(m.tenant_id.as_str());
        m_from.push(m.mail_from.as_str());
        m_rfc.push(m.rfc_message_id.as_deref());
        m_size.push(m.body.len() as i64);
        m_at.push(m.received_at);
        m_source.push(m.source);
        m_ip.push(m.client_ip.as_deref());
        m_ret.push(m.dsn_ret.as_deref());
        m_envid.push(m.dsn_envid.as_deref());
        m_utf8.push(m.smtputf8);
        m_requiretls.push(m.require_tls);
        m_body.push(*body);
        // 0 or 1: fits the SMALLINT column.
        m_codec.push(*codec as i16);
        m_meta.push(m.meta.as_ref().map(|v| v.to_string()));
        m_rp.push(m.return_path.as_deref());
        for (idx, rcpt) in m.recipients.iter().enumerate() {
            let (state, next, lease) = match rcpt.suppressed {
                Some(_) => (RecipientState::Suppressed, None, None),
                None if m.quarantine.is_some() => (RecipientState::Quarantined, None, None),
                None => (
                    RecipientState::Queued,
                    Some(m.lease.as_ref().map_or(m.received_at, |l| l.until)),
                    m.lease.as_ref(),
                ),
            };
            r.message_id.push(m.id.as_str());
            r.idx.push(idx as i64);
            r.address.push(rcpt.address.as_str());
            r.domain.push(rcpt.domain.as_str());
            r.state.push(state.as_str());
            r.next.push(next);
            r.notify.push(rcpt.dsn_notify.as_deref());
            r.orcpt.push(rcpt.dsn_orcpt.as_deref());
            r.updated.push(m.received_at);
            r.lease_until.push(lease.map(|l| l.until));
            r.lease_owner.push(lease.map(|l| l.owner.as_str()));
            r.lease_token.push(lease.map(|l| l.token));
        }
    }
    sqlx::query(
        "WITH m AS (INSERT INTO messages (id, tenant_id, mail_from, rfc_message_id, size, \
           received_at, source, client_ip, dsn_ret, dsn_envid, smtputf8, meta, return_path, \
           require_tls) \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
             $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], \
             $13::text[], $14::text[], $28::bool[])), \
         b AS (INSERT INTO message_bodies (message_id, codec, body) \
           SELECT * FROM UNNEST($1::text[], $27::smallint[], $12::bytea[])) \
         INSERT INTO recipients (message_id, idx, address, domain, state, next_attempt_at, \
           dsn_notify, dsn_orcpt, updated_at, lease_until, lease_owner, lease_token) \
         SELECT * FROM UNNEST($15::text[], $16::bigint[], $17::text[], $18::text[], $19::text[], \
           $20::bigint[], $21::text[], $22::text[], $23::bigint[], $24::bigint[], $25::text[], \
           $26::bigint[])",
    )
    .bind(&m_id)
    .bind(&m_tenant)
    .bind(&m_from)
    .bind(&m_rfc)
    .bind(&m_size)
    .bind(&m_at)
    .bind(&m_source)
    .bind(&m_ip)
    .bind(&m_ret)
    .bind(&m_envid)
    .bind(&m_utf8)
    .bind(&m_body)
    .bind(&m_meta)
    .bind(&m_rp)
    .bind(&r.message_id)
    .bind(&r.idx)
    .bind(&r.address)
    .bind(&r.domain)
    .bind(&r.state)
    .bind(&r.next)
    .bind(&r.notify)
    .bind(&r.orcpt)
    .bind(&r.updated)
    .bind(&r.lease_until)
    .bind(&r.lease_owner)
    .bind(&r.lease_token)
    .bind(&m_codec)
    .bind(&m_requiretls)
    .execute(&mut *conn)
    .await
    .map_err(err)?;

    for m in messages {
        if let Some(k) = &m.idempotency {
            // Nodes do not serialise requests with each other: the same key may arrive
            // on two nodes at once. The first commit wins; the other message fails
            // alone with a conflict (its caller reads the stored response). A key older
            // than the idempotency window is replaced.
            let written = sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
                 response = excluded.response, created_at = excluded.created_at \
                 WHERE idempotency_keys.created_at < excluded.created_at - $6",
            )
            .bind(m.tenant_id.as_str())
            .bind(&k.key)
            .bind(&k.request_hash)
            .bind(k.response.to_string())
            .bind(k.created_at)
            .bind(crate::IDEMPOTENCY_WINDOW_MS)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            if written.rows_affected() == 0 {
                return Err(StoreError::Conflict("idempotency key"));
            }
        }
    }

    // Every `accepted` event, then the `suppressed`/`filtered` ones after them.
    let mut events = EventColumns::default();
    let mut after = EventColumns::default();
    for m in messages {
        let accepted = m.accepted_detail.to_stored_json();
        for (idx, rcpt) in m.recipients.iter().enumerate() {
            let address = m.recipients[idx].address.as_str();
            events.push(
                EventType::Accepted,
                m.received_at,
                &m.id,
                &m.tenant_id,
                address,
                accepted.clone(),
            );
            if let Some(reason) = &rcpt.suppressed {
                let detail = crate::suppressed_detail(reason);
                after.push(
                    EventType::Suppressed,
                    m.received_at,
                    &m.id,
                    &m.tenant_id,
                    address,
                    detail.to_stored_json(),
                );
            } else if let Some(filter) = &m.quarantine {
                after.push(
                    EventType::Filtered,
                    m.received_at,
                    &m.id,
                    &m.tenant_id,
                    address,
                    mailroom_model::EventDetail::from(filter.clone()).to_stored_json(),
                );
            }
        }
    }
    events.append(after);
    let notify = messages
        .iter()
        .any(|m| wakes_delivery(m))
        .then_some(QUEUE_CHANNEL);
    insert_events_in_order(&mut *conn, &events, notify).await
}
