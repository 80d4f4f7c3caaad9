//! Delivery-side writes, executed by the writer task so that SQLite never has two
//! writers: claiming due recipients under a lease, recording outcomes with their events,
//! and the operator's retry/cancel. Each batch of ops is one transaction (one fsync).

use crate::{DueRecipient, Outcome, StoreError, SuppressionHint};
use mailroom_model::{EventDetail, EventId, EventType, MessageId, RecipientState, TenantId};
use sqlx::{Row, SqliteConnection};
use tokio::sync::oneshot;

pub(crate) enum Op {
    Claim {
        lease: crate::Lease,
        now: i64,
        limit: i64,
        done: oneshot::Sender<Result<Vec<DueRecipient>, StoreError>>,
    },
    Record {
        outcomes: Vec<Outcome>,
        done: oneshot::Sender<Result<Vec<(MessageId, i64)>, StoreError>>,
    },
    Release {
        owner: String,
        keys: Vec<(MessageId, i64)>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    ReleaseNode {
        owner: String,
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    Renew {
        owner: String,
        tokens: Vec<i64>,
        until: i64,
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    RetryNow {
        id: MessageId,
        now: i64,
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    Cancel {
        id: MessageId,
        now: i64,
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Engagement events, unsubscribes and quarantine releases (`tracking.rs`).
    Content {
        op: Box<super::tracking::ContentOp>,
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Tenant deletion and address erasure (`deletion.rs`).
    Deletion {
        op: super::deletion::DeletionOp,
        done: oneshot::Sender<Result<super::deletion::DeletionDone, StoreError>>,
    },
    /// When API keys were last used (`keys.rs`).
    KeyUse {
        uses: Vec<(mailroom_model::ApiKeyId, i64)>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Nothing of its own: its round moves the staged messages into the full schema,
    /// so that a reader sees them (`staging.rs`).
    Flush {
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Bounce and complaint intake, sender health (`intake.rs`).
    Intake {
        op: super::intake::IntakeOp,
        done: oneshot::Sender<Result<super::intake::IntakeDone, StoreError>>,
    },
}

impl Op {
    /// Whether the op may wait a few milliseconds to share a commit: recorded outcomes,
    /// whose callers do not wait on the commit. Everything else is answered at once.
    pub(crate) fn may_wait(&self) -> bool {
        matches!(self, Op::Record { .. })
    }
}

/// What an op produced, kept until the transaction commits.
pub(crate) enum Done {
    Claimed(Vec<DueRecipient>),
    Lost(Vec<(MessageId, i64)>),
    Unit,
    Count(u64),
    Intake(super::intake::IntakeDone),
    /// Boxed: the counts of a deletion are far larger than every other answer.
    Deletion(Box<super::deletion::DeletionDone>),
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, "recipient")
}

/// Runs one op inside the caller's transaction. `hint` is noted before any insert
/// into `suppressions` (hard bounces, unsubscribes, complaints).
pub(crate) async fn execute(
    conn: &mut SqliteConnection,
    op: &Op,
    hint: &SuppressionHint,
) -> Result<Done, StoreError> {
    match op {
        Op::Flush { .. } => Ok(Done::Unit),
        Op::Claim {
            lease, now, limit, ..
        } => claim(conn, lease, *now, *limit).await.map(Done::Claimed),
        Op::Record { outcomes, .. } => super::record::record(conn, outcomes, hint)
            .await
            .map(Done::Lost),
        Op::Release { owner, keys, .. } => {
            for (id, idx) in keys {
                sqlx::query(
                    "UPDATE recipients SET lease_until = NULL, lease_owner = NULL, \
                     lease_token = NULL, next_attempt_at = $3 \
                     WHERE message_id = $1 AND idx = $2 AND lease_owner = $4 \
                       AND state IN ('queued', 'deferred')",
                )
                .bind(id.as_str())
                .bind(idx)
                .bind(mailroom_model::now_millis())
                .bind(owner)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            }
            Ok(Done::Unit)
        }
        Op::ReleaseNode { owner, .. } => {
            // A claim moved next_attempt_at to the lease's end: make them due now.
            let r = sqlx::query(
                "UPDATE recipients SET lease_until = NULL, lease_owner = NULL, \
                 lease_token = NULL, next_attempt_at = $1 \
                 WHERE lease_owner = $2 AND state IN ('queued', 'deferred')",
            )
            .bind(mailroom_model::now_millis())
            .bind(owner)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            Ok(Done::Count(r.rows_affected()))
        }
        Op::Renew {
            owner,
            tokens,
            until,
            ..
        } => {
            let mut n = 0;
            for token in tokens {
                // next_attempt_at follows the lease's end, as in a claim.
                let r = sqlx::query(
                    "UPDATE recipients SET lease_until = $1, next_attempt_at = $1 \
                     WHERE lease_token = $2 AND lease_owner = $3 \
                       AND state IN ('queued', 'deferred')",
                )
                .bind(until)
                .bind(token)
                .bind(owner)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
                n += r.rows_affected();
            }
            Ok(Done::Count(n))
        }
        Op::RetryNow { id, now, .. } => {
            let r = sqlx::query(
                "UPDATE recipients SET next_attempt_at = $1 WHERE message_id = $2 \
                 AND state IN ('queued', 'deferred') AND (lease_until IS NULL OR lease_until < $1)",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            Ok(Done::Count(r.rows_affected()))
        }
        Op::Cancel { id, now, .. } => cancel(conn, id, *now).await.map(Done::Count),
        Op::Content { op, .. } => super::tracking::execute(conn, op, hint)
            .await
            .map(Done::Count),
        Op::Intake { op, .. } => super::intake::execute(conn, op, hint)
            .await
            .map(Done::Intake),
        Op::Deletion { op, .. } => super::deletion::execute(conn, op)
            .await
            .map(|d| Done::Deletion(Box::new(d))),
        Op::KeyUse { uses, .. } => super::keys::record_use(conn, uses)
            .await
            .map(|_| Done::Unit),
    }
}

/// Sends the result of a committed (or failed) op to its caller.
pub(crate) fn answer(op: Op, result: Result<Done, StoreError>) {
    match op {
        Op::Claim { done, .. } => {
            let _ = done.send(result.map(|d| match d {
                Done::Claimed(rows) => rows,
                Done::Lost(_)
                | Done::Unit
                | Done::Count(_)
                | Done::Intake(_)
                | Done::Deletion(_) => Vec::new(),
            }));
        }
        Op::Record { done, .. } => {
            let _ = done.send(result.map(|d| match d {
                Done::Lost(keys) => keys,
                Done::Claimed(_)
                | Done::Unit
                | Done::Count(_)
                | Done::Intake(_)
                | Done::Deletion(_) => Vec::new(),
            }));
        }
        Op::Release { done, .. } | Op::KeyUse { done, .. } | Op::Flush { done } => {
            let _ = done.send(result.map(|_| ()));
        }
        Op::RetryNow { done, .. }
        | Op::Cancel { done, .. }
        | Op::ReleaseNode { done, .. }
        | Op::Renew { done, .. }
        | Op::Content { done, .. } => {
            let _ = done.send(result.map(|d| match d {
                Done::Count(n) => n,
                Done::Claimed(_)
                | Done::Lost(_)
                | Done::Unit
                | Done::Intake(_)
                | Done::Deletion(_) => 0,
            }));
        }
        Op::Intake { done, .. } => {
            let _ = done.send(result.and_then(|d| match d {
                Done::Intake(d) => Ok(d),
                Done::Claimed(_)
                | Done::Lost(_)
                | Done::Unit
                | Done::Count(_)
                | Done::Deletion(_) => {
                    Err(StoreError::Database("intake op produced no result".into()))
                }
            }));
        }
        Op::Deletion { done, .. } => {
            let _ = done.send(result.and_then(|d| match d {
                Done::Deletion(d) => Ok(*d),
                Done::Claimed(_)
                | Done::Lost(_)
                | Done::Unit
                | Done::Count(_)
                | Done::Intake(_) => Err(StoreError::Database(
                    "deletion op produced no result".into(),
                )),
            }));
        }
    }
}

async fn claim(
    conn: &mut SqliteConnection,
    lease: &crate::Lease,
    now: i64,
    limit: i64,
) -> Result<Vec<DueRecipient>, StoreError> {
    let rows = sqlx::query(
        // A claim moves next_attempt_at to the lease's end: leased rows drop out of the
        // due range of the (state, next_attempt_at) index, so a claim never scans work in
        // flight, and a crashed claimant's rows become due again by themselves.
        "UPDATE recipients SET lease_until = $1, next_attempt_at = $1, lease_owner = $4, \
             lease_token = $5 WHERE rowid IN ( \
             SELECT rowid FROM recipients \
             WHERE state IN ('queued', 'deferred') AND next_attempt_at <= $2 \
             ORDER BY next_attempt_at LIMIT $3) \
         RETURNING message_id, idx, address, domain, attempts, dsn_notify, dsn_orcpt, updated_at",
    )
    .bind(lease.until)
    .bind(now)
    .bind(limit)
    .bind(&lease.owner)
    .bind(lease.token)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let message_id: String = r.get("message_id");
        let m = sqlx::query(
            "SELECT tenant_id, mail_from, received_at, dsn_ret, dsn_envid, smtputf8, return_path, \
             require_tls FROM messages WHERE id = $1",
        )
        .bind(&message_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
        out.push(DueRecipient {
            message_id: MessageId::from_stored(message_id),
            idx: r.get("idx"),
            address: r.get("address"),
            domain: r.get("domain"),
            attempts: r.get("attempts"),
            dsn_notify: r.get("dsn_notify"),
            dsn_orcpt: r.get("dsn_orcpt"),
            tenant_id: TenantId::from_stored(m.get("tenant_id")),
            mail_from: m.get("mail_from"),
            received_at: m.get("received_at"),
            dsn_ret: m.get("dsn_ret"),
            dsn_envid: m.get("dsn_envid"),
            smtputf8: m.get("smtputf8"),
            require_tls: m.get("require_tls"),
            return_path: m.get("return_path"),
            lease_token: lease.token,
            last_attempt_at: r.get("updated_at"),
        });
    }
    Ok(out)
}

/// Records outcomes one row at a time (`record.rs` batches them, and falls back to
/// this when a batch holds the same recipient twice).
pub(super) async fn record_each(
    conn: &mut SqliteConnection,
    outcomes: &[Outcome],
    hint: &SuppressionHint,
) -> Result<Vec<(MessageId, i64)>, StoreError> {
    let mut lost = Vec::new();
    for o in outcomes {
        // Only a recipient still waiting takes an outcome, except that a delivery is a
        // fact even if the recipient was cancelled while it was in flight. A deferral
        // after a cancel must not bring the recipient back.
        let updated = sqlx::query(
            "UPDATE recipients SET state = $1, attempts = attempts + $2, next_attempt_at = $3, \
             last_reply = COALESCE($4, last_reply), last_mx = COALESCE($5, last_mx), \
             lease_until = NULL, lease_owner = NULL, lease_token = NULL, updated_at = $6 \
             WHERE message_id = $7 AND idx = $8 AND lease_token = $9 \
               AND (state IN ('queued', 'deferred') OR $1 = 'delivered')",
        )
        .bind(o.state.as_str())
        .bind(i64::from(o.attempted))
        .bind(o.next_attempt_at)
        .bind(o.last_reply.as_deref())
        .bind(o.last_mx.as_deref())
        .bind(o.at)
        .bind(o.message_id.as_str())
        .bind(o.idx)
        .bind(o.lease_token)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        if updated.rows_affected() == 0 {
            if lease_lost(conn, o).await? {
                lost.push((o.message_id.clone(), o.idx));
            }
            continue;
        }
        insert_event(
            conn,
            o.event,
            o.at,
            &o.message_id,
            &o.tenant_id,
            &o.recipient,
            &EventDetail::from(o.detail.clone()),
        )
        .await?;
        if o.suppress && o.state == RecipientState::Bounced {
            suppress_bounced(conn, o, hint).await?;
        }
    }
    super::space::drop_finished_bodies(conn, outcomes).await?;
    Ok(lost)
}

/// A hard bounce: the address goes on the tenant's suppression list, in the same
/// transaction as the outcome. A manual or earlier entry is kept.
pub(super) async fn suppress_bounced(
    conn: &mut SqliteConnection,
    o: &Outcome,
    hint: &SuppressionHint,
) -> Result<(), StoreError> {
    hint.note(o.tenant_id.as_str());
    sqlx::query(
        "INSERT OR IGNORE INTO suppressions \
         (tenant_id, address, reason, detail, message_id, created_at) \
         VALUES ($1, $2, 'bounce', $3, $4, $5)",
    )
    .bind(o.tenant_id.as_str())
    .bind(o.recipient.to_lowercase())
    .bind(EventDetail::from(o.detail.clone()).to_stored_json())
    .bind(o.message_id.as_str())
    .bind(o.at)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}

/// Whether an outcome changed nothing because its lease is no longer held (rather
/// than because the recipient was cancelled or is already final).
pub(super) async fn lease_lost(
    conn: &mut SqliteConnection,
    o: &Outcome,
) -> Result<bool, StoreError> {
    let token: Option<Option<i64>> =
        sqlx::query_scalar("SELECT lease_token FROM recipients WHERE message_id = $1 AND idx = $2")
            .bind(o.message_id.as_str())
            .bind(o.idx)
            .fetch_optional(&mut *conn)
            .await
            .map_err(err)?;
    Ok(matches!(token, Some(t) if t != Some(o.lease_token)))
}

pub(super) async fn insert_event(
    conn: &mut SqliteConnection,
    kind: EventType,
    at: i64,
    message_id: &MessageId,
    tenant_id: &TenantId,
    recipient: &str,
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
    .bind(message_id.as_str())
    .bind(tenant_id.as_str())
    .bind(recipient)
    .bind(detail.to_stored_json())
    .bind(bounce_class)
    .bind(bounce_async)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}

/// Cancels every recipient that is not final yet, each with a `cancelled` event.
async fn cancel(conn: &mut SqliteConnection, id: &MessageId, now: i64) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "UPDATE recipients SET state = 'cancelled', lease_until = NULL, updated_at = $1 \
         WHERE message_id = $2 AND state IN ('queued', 'deferred', 'quarantined') RETURNING address",
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
    let tenant = TenantId::from_stored(tenant);
    for r in &rows {
        let address: String = r.get("address");
        let detail = crate::cancelled_detail(None);
        insert_event(
            conn,
            EventType::Cancelled,
            now,
            id,
            &tenant,
            &address,
            &detail,
        )
        .await?;
    }
    Ok(rows.len() as u64)
}
