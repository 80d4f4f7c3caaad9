//! Staged acceptance on SQLite (migration 0031). A commit's cost is set by how many
//! B-trees it touches, not by how many messages it holds: a message goes into about 30
//! of them (messages and their five indexes, bodies, recipients and theirs, events and
//! theirs, counters, the subject index), about 36 WAL pages (`scripts/store-wal-model`).
//! At a few hundred messages a second each message is a commit of its own, so that was
//! the price of every message.
//!
//! So a small round of messages that are handed straight to this node's delivery is
//! first committed (fsynced) as one row each in `staged_messages`, one B-tree, and its
//! callers are answered: that is when the message is accepted. The writer keeps the jobs
//! and moves them into the full schema later, many at a time, in the same transaction
//! that deletes their staged rows: with the next round of ops (outcomes, a claim), or
//! when `STAGE_WAIT` has passed, or when a reader asks (see `Staging`). On a start, rows
//! left by a crash are moved the same way before the writer takes anything else
//! (`recover`). The staged row keeps the message as JSON and its body as stored.
//!
//! Nothing reads the store without seeing staged messages first: every connection the
//! pool hands out asks the writer to move them before it is used (`SqliteStore::open`),
//! so a `GET` right after a `250` finds the message. Another process on the same file
//! sees them when the writer has moved them, at most `STAGE_WAIT` later.

use super::writer::Job;
use crate::body_codec::Packed;
use crate::{Lease, NewMessage, NewRecipient, StoreError};
use mailroom_model::{EventDetail, EventType, MessageId, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Rounds of at most this many messages are staged; larger ones already share one
/// commit among enough messages and go straight to the full schema.
pub(super) const STAGE_MAX_ROUND: usize = 4;
/// Staged messages kept in memory at most before they are moved.
pub(super) const STAGE_MAX_HELD: usize = 64;
/// How long a staged message waits at most for a round to be moved with.
pub const STAGE_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

/// How many messages are staged and not yet moved, shared by the writer (which sets
/// it) and the pool's connections (which ask for a move when it is not zero); and how
/// long a staged message waits at most (`STAGE_WAIT`, longer in tests that look at
/// the staged rows).
/// It also carries the store's write health: while a write has been refused lately
/// (a full disk, say), nothing is staged, so submissions are refused as before rather
/// than accepted into the few pages a staged row needs.
#[derive(Clone)]
pub(crate) struct Staging {
    held: Arc<AtomicUsize>,
    pub(super) wait: std::time::Duration,
    pub(super) health: Arc<crate::health::WriteHealth>,
}

impl Default for Staging {
    fn default() -> Self {
        Self::new(STAGE_WAIT, Arc::default())
    }
}

impl Staging {
    pub(crate) fn new(wait: std::time::Duration, health: Arc<crate::health::WriteHealth>) -> Self {
        Self {
            held: Arc::default(),
            wait,
            health,
        }
    }
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
    pub(super) fn set(&self, n: usize) {
        self.held.store(n, Ordering::Release);
    }
}

/// The pool's options: before a connection is handed out (a new one, or one taken back
/// from the idle list), the writer moves what is staged, so that every read through
/// the pool sees every message already answered. Nothing waits when nothing is staged.
pub(super) fn pool_options(
    ops: &mpsc::Sender<super::ops::Op>,
    staging: &Staging,
) -> SqlitePoolOptions {
    let (on_connect, on_acquire) = (
        (ops.clone(), staging.clone()),
        (ops.clone(), staging.clone()),
    );
    SqlitePoolOptions::new()
        .max_connections(4)
        .after_connect(move |_, _| {
            let (ops, staging) = on_connect.clone();
            Box::pin(async move {
                settle(&ops, &staging).await;
                Ok(())
            })
        })
        .before_acquire(move |_, _| {
            let (ops, staging) = on_acquire.clone();
            Box::pin(async move {
                settle(&ops, &staging).await;
                Ok(true)
            })
        })
}

/// Asks the writer to move what is staged and waits until it has (or has stopped).
async fn settle(ops: &mpsc::Sender<super::ops::Op>, staging: &Staging) {
    if staging.held() == 0 {
        return;
    }
    let (done, moved) = oneshot::channel();
    if ops.send(super::ops::Op::Flush { done }).await.is_ok() {
        let _ = moved.await;
    }
}

/// Whether a round of jobs may be staged: few, none answered only after a write of
/// its own (an idempotency key), none held back from delivery (quarantine), every one
/// already leased to this node's delivery, which will record outcomes for it soon; and
/// no write refused lately.
pub(super) fn stageable(batch: &[Job], held: usize, staging: &Staging) -> bool {
    !batch.is_empty()
        && staging.health.check().is_ok()
        && batch.len() <= STAGE_MAX_ROUND
        && held + batch.len() <= STAGE_MAX_HELD
        && batch.iter().all(|j| {
            let m = &j.message;
            m.lease.is_some() && m.quarantine.is_none() && m.idempotency.is_none()
        })
}

/// Commits `batch` to `staged_messages` and answers its callers; the jobs move to
/// `held`. If the commit fails, nothing is answered and the batch is left as it was,
/// for the caller to write the ordinary way.
pub(super) async fn stage(
    conn: &mut SqliteConnection,
    batch: &mut Vec<Job>,
    held: &mut Vec<Job>,
    next_seq: &mut i64,
    staging: &Staging,
) -> bool {
    let rows: Vec<(i64, String)> = batch
        .iter()
        .enumerate()
        .map(|(i, j)| (*next_seq + i as i64, encode(&j.message)))
        .collect();
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "BEGIN IMMEDIATE; INSERT INTO staged_messages (seq, message, body, codec) ",
    );
    qb.push_values(batch.iter().zip(&rows), |mut b, (j, (seq, text))| {
        let (body, codec) = j.packed.stored(&j.message.body);
        b.push_bind(*seq)
            .push_bind(text.as_str())
            .push_bind(body)
            .push_bind(codec);
    });
    qb.push("; COMMIT");
    if qb.build().execute(&mut *conn).await.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return false;
    }
    *next_seq += rows.len() as i64;
    // Counted before anyone is answered, so that a caller's next read finds them held.
    staging.set(held.len() + batch.len());
    for (mut job, (seq, _)) in batch.drain(..).zip(rows) {
        // The caller is answered now; the later write answers no one.
        let (unheard, _) = oneshot::channel();
        let _ = std::mem::replace(&mut job.done, unheard).send(Ok(()));
        job.staged = Some(seq);
        held.push(job);
    }
    true
}

/// Moves the staged rows a crash left into the full schema, before the writer starts.
pub(super) async fn recover(conn: &mut SqliteConnection) -> Result<usize, StoreError> {
    let jobs = left_over(conn).await?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let refs: Vec<&Job> = jobs.iter().collect();
    super::writer::write_batch(conn, &refs).await?;
    Ok(jobs.len())
}

/// The seq after every staged row, for `stage` to number new rows from.
pub(super) async fn next_seq(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    let max: Option<i64> = sqlx::query("SELECT MAX(seq) AS m FROM staged_messages")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| StoreError::from_sqlx(e, "message"))?
        .get("m");
    Ok(max.unwrap_or(0) + 1)
}

/// The staged rows a crash left, as jobs (answering no one) for the writer to move
/// into the full schema before anything else.
async fn left_over(conn: &mut SqliteConnection) -> Result<Vec<Job>, StoreError> {
    let err = |e| StoreError::from_sqlx(e, "message");
    let rows = sqlx::query("SELECT seq, message, body, codec FROM staged_messages ORDER BY seq")
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        let staged: Staged = serde_json::from_str(r.get("message"))
            .map_err(|e| StoreError::Database(format!("a staged message does not read: {e}")))?;
        let body = crate::body_codec::decode(r.get("body"), r.get("codec"), staged.size)?;
        let message = staged.into_message(body)?;
        let (done, _) = oneshot::channel();
        jobs.push(Job {
            packed: Packed::of(&message.body),
            message,
            done,
            staged: Some(r.get("seq")),
        });
    }
    Ok(jobs)
}

/// A staged message: every field of `NewMessage` a stageable one can have (never an
/// idempotency key or a quarantine). Fields added later must read as absent
/// (`#[serde(default)]`), since a row may be read by the next version after a crash.
#[derive(Serialize, Deserialize)]
struct Staged {
    id: String,
    tenant_id: String,
    mail_from: String,
    rfc_message_id: Option<String>,
    received_at: i64,
    source: String,
    client_ip: Option<String>,
    dsn_ret: Option<String>,
    dsn_envid: Option<String>,
    smtputf8: bool,
    require_tls: bool,
    size: i64,
    recipients: Vec<StagedRecipient>,
    accepted_detail: serde_json::Value,
    lease: Option<(String, i64, i64)>,
    meta: Option<serde_json::Value>,
    return_path: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StagedRecipient {
    address: String,
    domain: String,
    dsn_notify: Option<String>,
    dsn_orcpt: Option<String>,
    suppressed: Option<String>,
}

fn encode(m: &NewMessage) -> String {
    let staged = Staged {
        id: m.id.as_str().into(),
        tenant_id: m.tenant_id.as_str().into(),
        mail_from: m.mail_from.clone(),
        rfc_message_id: m.rfc_message_id.clone(),
        received_at: m.received_at,
        source: m.source.into(),
        client_ip: m.client_ip.clone(),
        dsn_ret: m.dsn_ret.clone(),
        dsn_envid: m.dsn_envid.clone(),
        smtputf8: m.smtputf8,
        require_tls: m.require_tls,
        size: m.body.len() as i64,
        recipients: m
            .recipients
            .iter()
            .map(|r| StagedRecipient {
                address: r.address.clone(),
                domain: r.domain.clone(),
                dsn_notify: r.dsn_notify.clone(),
                dsn_orcpt: r.dsn_orcpt.clone(),
                suppressed: r.suppressed.clone(),
            })
            .collect(),
        accepted_detail: serde_json::from_str(&m.accepted_detail.to_json())
            .unwrap_or(serde_json::Value::Null),
        lease: m
            .lease
            .as_ref()
            .map(|l| (l.owner.clone(), l.token, l.until)),
        meta: m.meta.clone(),
        return_path: m.return_path.clone(),
    };
    // Plain data (strings, numbers, JSON values): serializing cannot fail.
    serde_json::to_string(&staged).unwrap_or_default()
}

impl Staged {
    fn into_message(self, body: Vec<u8>) -> Result<NewMessage, StoreError> {
        let bad = |what: &str| StoreError::Database(format!("a staged message has a bad {what}"));
        Ok(NewMessage {
            id: MessageId::parse(&self.id).ok_or_else(|| bad("id"))?,
            tenant_id: TenantId::from_stored(self.tenant_id),
            mail_from: self.mail_from,
            rfc_message_id: self.rfc_message_id,
            received_at: self.received_at,
            source: match self.source.as_str() {
                "api" => "api",
                "dsn" => "dsn",
                "smtp" => "smtp",
                _ => return Err(bad("source")),
            },
            client_ip: self.client_ip,
            dsn_ret: self.dsn_ret,
            dsn_envid: self.dsn_envid,
            smtputf8: self.smtputf8,
            require_tls: self.require_tls,
            body,
            recipients: self
                .recipients
                .into_iter()
                .map(|r| NewRecipient {
                    address: r.address,
                    domain: r.domain,
                    dsn_notify: r.dsn_notify,
                    dsn_orcpt: r.dsn_orcpt,
                    suppressed: r.suppressed,
                })
                .collect(),
            accepted_detail: EventDetail::parse(EventType::Accepted, &self.accepted_detail)
                .map_err(|_| bad("accepted detail"))?,
            lease: self.lease.map(|(owner, token, until)| Lease {
                owner,
                token,
                until,
            }),
            idempotency: None,
            meta: self.meta,
            return_path: self.return_path,
            quarantine: None,
        })
    }
}
