//! The group-commit writer. Every `enqueue` from every session goes through one
//! bounded channel to one task that owns one connection. The task takes whatever has
//! queued up while the previous commit was being fsynced, writes it all in one
//! transaction with multi-row INSERTs sent to SQLite as one multi-statement query,
//! commits (one fsync for the batch) and only then answers each caller. Under load
//! batches grow by themselves; at rest a lone message is committed at once. Bodies
//! arrive already deflated (`body_codec::Packed`, by the enqueuing session). The
//! delivery side's ops (`ops.rs`) that queued up meanwhile go into the same
//! transaction: one commit a round, not one for the messages and one for the outcomes.
//! Every transaction here counts the events it added just before its `COMMIT`
//! (`counting.rs`). A small round of messages already handed to delivery is staged
//! instead, one row each, and written here with a later round (`staging.rs`).

use super::counting::{COUNT_AND_COMMIT, COUNT_NEW_EVENTS};
use super::staging::{self, Staging};
use crate::{NewMessage, StoreError};
use mailroom_model::{EventId, EventType, RecipientState};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

pub(crate) struct Job {
    pub message: NewMessage,
    /// The body as it will be stored, encoded by the caller (`Packed`).
    pub packed: crate::body_codec::Packed,
    pub done: oneshot::Sender<Result<(), StoreError>>,
    /// Its row in `staged_messages` once it is staged (its caller is answered then),
    /// deleted in the transaction that writes it to the full schema (`staging.rs`).
    pub staged: Option<i64>,
}

/// Bounds on one batch: enough to amortise the fsync, small enough to keep latency
/// and memory in check and to stay under SQLite's bound-parameter limit.
const MAX_BATCH_MESSAGES: usize = 256;
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Rows per multi-row INSERT (recipient and event rows have ≤ 12 parameters).
const ROWS_PER_INSERT: usize = 1000;

pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Job>,
    mut ops: mpsc::Receiver<super::ops::Op>,
    hint: std::sync::Arc<crate::SuppressionHint>,
    outcomes_wait: std::time::Duration,
    staging: Staging,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH_MESSAGES);
    let mut waiting: Vec<super::ops::Op> = Vec::with_capacity(MAX_BATCH_OPS);
    let mut ops_open = true;
    // Staged messages not yet in the full schema, and since when (`staging.rs`).
    let mut held: Vec<Job> = Vec::new();
    let mut held_since: Option<tokio::time::Instant> = None;
    // If the staged rows cannot be read, staging fails on its first insert and
    // every round is written the ordinary way.
    let mut next_seq = staging::next_seq(&mut conn).await.unwrap_or(1);
    loop {
        let due = async {
            match held_since {
                Some(t) => tokio::time::sleep_until(t + staging.wait).await,
                None => std::future::pending().await,
            }
        };
        let mut timed_out = false;
        tokio::select! {
            biased;
            job = rx.recv() => match job {
                Some(job) => batch.push(job),
                None => break,
            },
            op = ops.recv(), if ops_open => match op {
                Some(op) => waiting.push(op),
                None => {
                    ops_open = false;
                    continue;
                }
            },
            () = due => timed_out = true,
        }
        let mut closed = false;
        if !timed_out && batch.is_empty() && waiting.iter().all(super::ops::Op::may_wait) {
            // Only outcomes: no one waits on their commit, so they wait a little for the
            // next messages' round and share its commit rather than pay for their own.
            match tokio::time::timeout(outcomes_wait, rx.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) => closed = true,
                Err(_) => {}
            }
        }
        let mut bytes: usize = batch.iter().map(|j| j.message.body.len()).sum();
        while batch.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.message.body.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        while ops_open && waiting.len() < MAX_BATCH_OPS {
            match ops.try_recv() {
                Ok(op) => waiting.push(op),
                Err(_) => break,
            }
        }
        let round = std::mem::take(&mut waiting);
        if !closed
            && round.is_empty()
            && staging::stageable(&batch, held.len(), &staging)
            && staging::stage(&mut conn, &mut batch, &mut held, &mut next_seq, &staging).await
        {
            held_since.get_or_insert_with(tokio::time::Instant::now);
            continue;
        }
        // What is held is moved with this round, in front of it.
        if !held.is_empty() {
            held.append(&mut batch);
            batch = std::mem::take(&mut held);
            held_since = None;
        }
        match (batch.is_empty(), round.is_empty()) {
            (false, true) => commit_jobs(&mut conn, &mut batch, &staging.health).await,
            (true, false) => run_ops(&mut conn, round, &hint).await,
            (false, false) => {
                commit_together(&mut conn, &mut batch, round, &hint, &staging.health).await
            }
            (true, true) => {}
        }
        if !batch.is_empty() {
            // Staged messages that could not be moved: held again, tried again later.
            held = std::mem::take(&mut batch);
            held_since = Some(tokio::time::Instant::now());
        }
        staging.set(held.len());
        if closed {
            break;
        }
    }
    // Shutting down: what is held goes to the full schema now (a crash would leave it
    // for `recover`).
    commit_jobs(&mut conn, &mut held, &staging.health).await;
    staging.set(held.len());
}

/// Ops taken into one transaction at most.
const MAX_BATCH_OPS: usize = 64;
/// How long outcomes alone wait for new messages to commit with (see `run`).
pub(crate) const OUTCOMES_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// Writes the batch and answers each caller; a failed batch is retried message by
/// message, so one bad message cannot fail its neighbours. A staged message that still
/// fails is left in `batch`: it is still staged (its caller was answered), so the
/// writer holds it again and moves it with a later round.
async fn commit_jobs(
    conn: &mut SqliteConnection,
    batch: &mut Vec<Job>,
    health: &crate::health::WriteHealth,
) {
    if batch.is_empty() {
        return;
    }
    let jobs: Vec<&Job> = batch.iter().collect();
    match write_batch(conn, &jobs).await {
        Ok(()) => {
            for job in batch.drain(..) {
                let _ = job.done.send(Ok(()));
            }
        }
        Err(err) if batch.len() == 1 && batch[0].staged.is_none() => {
            let job = batch.pop().expect("one job");
            let _ = job.done.send(Err(err));
        }
        Err(_) => {
            let mut still_staged = Vec::new();
            for job in std::mem::take(batch) {
                let result = write_batch(conn, &[&job]).await;
                if result.is_err() && job.staged.is_some() {
                    // Its caller heard long ago; readiness hears it here.
                    health.note(&result);
                    still_staged.push(job);
                } else {
                    let _ = job.done.send(result);
                }
            }
            *batch = still_staged;
        }
    }
}

/// New messages and the delivery side's ops that queued up meanwhile (outcomes, for
/// the most part), in one transaction: one commit and one fsync for both, and the
/// B-trees both write (events and their indexes, recipients, the counters) written
/// once. If it fails, each part is written on its own as it would have been alone.
async fn commit_together(
    conn: &mut SqliteConnection,
    batch: &mut Vec<Job>,
    ops: Vec<super::ops::Op>,
    hint: &crate::SuppressionHint,
    health: &crate::health::WriteHealth,
) {
    // Idempotency keys need their own statements between the inserts and the commit.
    if batch.iter().all(|j| j.message.idempotency.is_none()) {
        let jobs: Vec<&Job> = batch.iter().collect();
        if let Ok(results) = write_together(conn, &jobs, &ops, hint).await {
            for job in batch.drain(..) {
                let _ = job.done.send(Ok(()));
            }
            for (op, done) in ops.into_iter().zip(results) {
                super::ops::answer(op, Ok(done));
            }
            return;
        }
    }
    commit_jobs(conn, batch, health).await;
    run_ops(conn, ops, hint).await;
}

async fn write_together(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    ops: &[super::ops::Op],
    hint: &crate::SuppressionHint,
) -> Result<Vec<super::ops::Done>, StoreError> {
    let rows = BatchRows::of(jobs);
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("BEGIN IMMEDIATE; ");
    rows.push_inserts(&mut qb);
    let result = async {
        qb.build()
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::from_sqlx(e, "message"))?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(super::ops::execute(conn, op, hint).await?);
        }
        sqlx::query(COUNT_AND_COMMIT)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::from_sqlx(e, "message"))?;
        Ok(results)
    }
    .await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

/// Runs `ops` in one transaction; if that fails, each op alone, so one bad op cannot
/// fail the others.
async fn run_ops(
    conn: &mut SqliteConnection,
    mut ops: Vec<super::ops::Op>,
    hint: &crate::SuppressionHint,
) {
    use super::ops::{Done, answer, execute};
    let together = async {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::from_sqlx(e, "recipient"))?;
        let mut results: Vec<Done> = Vec::with_capacity(ops.len());
        for op in &ops {
            match execute(conn, op, hint).await {
                Ok(d) => results.push(d),
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = sqlx::query(COUNT_AND_COMMIT).execute(&mut *conn).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(StoreError::from_sqlx(e, "recipient"));
        }
        Ok(results)
    }
    .await;
    match together {
        Ok(results) => {
            for (op, done) in ops.into_iter().zip(results) {
                answer(op, Ok(done));
            }
        }
        Err(e) if ops.len() == 1 => answer(ops.pop().expect("one op"), Err(e)),
        Err(_) => {
            for op in ops {
                let result = async {
                    sqlx::query("BEGIN IMMEDIATE")
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| StoreError::from_sqlx(e, "recipient"))?;
                    match execute(conn, &op, hint).await {
                        Ok(d) => match sqlx::query(COUNT_AND_COMMIT).execute(&mut *conn).await {
                            Ok(_) => Ok(d),
                            Err(e) => {
                                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                                Err(StoreError::from_sqlx(e, "recipient"))
                            }
                        },
                        Err(e) => {
                            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                            Err(e)
                        }
                    }
                }
                .await;
                answer(op, result);
            }
        }
    }
}

/// Writes `jobs` in one transaction. Without idempotency keys (SMTP) the whole
/// transaction, `BEGIN` to `COMMIT`, is one multi-statement query: sqlx runs it as one
/// command on its SQLite worker thread, where one query per statement cost two thread
/// switches each (a dozen per batch, most of the writer's wall time at low load).
pub(super) async fn write_batch(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlx(e, "message");
    let keyed = jobs.iter().any(|j| j.message.idempotency.is_some());
    let rows = BatchRows::of(jobs);
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("BEGIN IMMEDIATE; ");
    rows.push_inserts(&mut qb);
    qb.push(COUNT_NEW_EVENTS);
    if !keyed {
        qb.push("COMMIT");
    }
    let mut result = qb
        .build()
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(err);
    if keyed && result.is_ok() {
        result = match super::idempotency::insert_keys(conn, jobs.iter().map(|j| &j.message)).await
        {
            Ok(()) => sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(err),
            Err(e) => Err(e),
        };
    }
    if result.is_err() {
        // After a failed statement or a failed COMMIT (SQLITE_FULL may leave the
        // transaction open) make sure nothing of the batch remains.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

/// One recipient's `recipients` row and `accepted` event.
struct Row<'a> {
    m: &'a NewMessage,
    idx: usize,
    detail: String,
    event_id: EventId,
}

/// What a batch writes, owned here so the query can borrow it.
struct BatchRows<'a> {
    jobs: &'a [&'a Job],
    rows: Vec<Row<'a>>,
    /// `suppressed` and `filtered` events, which follow their `accepted` event:
    /// (message, idx, type, event id, detail).
    later: Vec<(&'a NewMessage, usize, EventType, EventId, String)>,
}

impl<'a> BatchRows<'a> {
    fn of(jobs: &'a [&'a Job]) -> Self {
        let mut rows = Vec::new();
        let mut later = Vec::new();
        for job in jobs {
            let m = &job.message;
            let detail = m.accepted_detail.to_stored_json();
            for (idx, rcpt) in m.recipients.iter().enumerate() {
                rows.push(Row {
                    m,
                    idx,
                    detail: detail.clone(),
                    event_id: EventId::generate(),
                });
                if let Some(reason) = &rcpt.suppressed {
                    later.push((
                        m,
                        idx,
                        EventType::Suppressed,
                        EventId::generate(),
                        crate::suppressed_detail(reason).to_stored_json(),
                    ));
                } else if let Some(filter) = &m.quarantine {
                    // Held by content protection: a `filtered` event after `accepted`.
                    later.push((
                        m,
                        idx,
                        EventType::Filtered,
                        EventId::generate(),
                        mailroom_model::EventDetail::from(filter.clone()).to_stored_json(),
                    ));
                }
            }
        }
        Self { jobs, rows, later }
    }

    /// The batch's INSERTs, each ended by `; `.
    fn push_inserts(&self, qb: &mut QueryBuilder<Sqlite>) {
        qb.push(
            "INSERT INTO messages (id, tenant_id, mail_from, rfc_message_id, size, received_at, \
             source, client_ip, dsn_ret, dsn_envid, smtputf8, body, meta, return_path, require_tls) ",
        );
        qb.push_values(self.jobs, |mut b, j| {
            let m = &j.message;
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
                // The body itself lives in `message_bodies` (see `body_codec`).
                .push_bind(&b""[..])
                .push_bind(m.meta.as_ref().map(|v| v.to_string()))
                .push_bind(m.return_path.as_deref())
                .push_bind(m.require_tls);
        });
        qb.push("; INSERT INTO message_bodies (message_id, codec, body) ");
        qb.push_values(self.jobs, |mut b, j| {
            let (body, codec) = j.packed.stored(&j.message.body);
            b.push_bind(j.message.id.as_str())
                .push_bind(codec)
                .push_bind(body);
        });
        qb.push("; ");
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            qb.push(
                "INSERT INTO recipients (message_id, idx, address, domain, state, \
                 next_attempt_at, dsn_notify, dsn_orcpt, updated_at, lease_until, lease_owner, \
                 lease_token) ",
            );
            qb.push_values(chunk, |mut b, r| {
                let rcpt = &r.m.recipients[r.idx];
                let (state, next, lease) = match rcpt.suppressed {
                    Some(_) => (RecipientState::Suppressed, None, None),
                    None if r.m.quarantine.is_some() => (RecipientState::Quarantined, None, None),
                    None => (
                        RecipientState::Queued,
                        Some(r.m.lease.as_ref().map_or(r.m.received_at, |l| l.until)),
                        r.m.lease.as_ref(),
                    ),
                };
                b.push_bind(r.m.id.as_str())
                    .push_bind(r.idx as i64)
                    .push_bind(rcpt.address.as_str())
                    .push_bind(rcpt.domain.as_str())
                    .push_bind(state.as_str())
                    .push_bind(next)
                    .push_bind(rcpt.dsn_notify.as_deref())
                    .push_bind(rcpt.dsn_orcpt.as_deref())
                    .push_bind(r.m.received_at)
                    .push_bind(lease.map(|l| l.until))
                    .push_bind(lease.map(|l| l.owner.as_str()))
                    .push_bind(lease.map(|l| l.token));
            });
            qb.push(
                "; INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.event_id.as_str())
                    .push_bind(EventType::Accepted.as_str())
                    .push_bind(r.m.received_at)
                    .push_bind(r.m.id.as_str())
                    .push_bind(r.m.tenant_id.as_str())
                    .push_bind(r.m.recipients[r.idx].address.as_str())
                    .push_bind(r.detail.as_str());
            });
            qb.push("; ");
        }
        let staged: Vec<i64> = self.jobs.iter().filter_map(|j| j.staged).collect();
        if !staged.is_empty() {
            qb.push("DELETE FROM staged_messages WHERE seq IN (");
            let mut list = qb.separated(", ");
            for seq in staged {
                list.push_bind(seq);
            }
            qb.push("); ");
        }
        for chunk in self.later.chunks(ROWS_PER_INSERT) {
            qb.push("INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) ");
            qb.push_values(chunk, |mut b, (m, idx, kind, event_id, detail)| {
                b.push_bind(event_id.as_str())
                    .push_bind(kind.as_str())
                    .push_bind(m.received_at)
                    .push_bind(m.id.as_str())
                    .push_bind(m.tenant_id.as_str())
                    .push_bind(m.recipients[*idx].address.as_str())
                    .push_bind(detail.as_str());
            });
            qb.push("; ");
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
