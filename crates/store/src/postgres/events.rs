//! The event stream in commit order, and webhooks with their delivery rows.
//!
//! Several nodes insert events at once. A sequence (identity) hands out numbers in
//! allocation order, not commit order: a transaction that took seq 10 may commit after
//! one that took seq 11, and a reader paging with `after=11` would then never see 10.
//! So every transaction that inserts events takes one transaction-scoped advisory lock
//! (`lock_event_order`, key `EVENT_ORDER_LOCK`) right before its event INSERTs, as late
//! as possible in the transaction. The lock is held until COMMIT has made the rows
//! durable and visible, so the next transaction allocates its seqs only after the
//! previous one's are visible: seq order equals commit order, and a reader that sees
//! seq N has already seen (or can see) every seq below N that will ever exist. The
//! serialised part is short (the event INSERTs and the commit itself); everything
//! else in those transactions runs concurrently.

use super::db;
use crate::{NewEvent, StoreError};
use mailroom_model::EventId;
use sqlx::PgConnection;

/// The advisory lock key that orders event inserts ("mailroom" "events").
pub(super) const EVENT_ORDER_LOCK: i64 = 0x6d61_696c_6576_7473;

/// Takes the event-order lock for the rest of the transaction. Call it right before
/// inserting events, inside the transaction that inserts them.
pub(super) async fn lock_event_order(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENT_ORDER_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db("event order lock"))?;
    Ok(())
}

/// Inserts one event (the caller holds the event-order lock).
pub(super) async fn insert_event(conn: &mut PgConnection, e: &NewEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(EventId::generate().as_str())
    .bind(e.kind.as_str())
    .bind(e.at)
    .bind(e.message_id.as_str())
    .bind(e.tenant_id.as_str())
    .bind(e.recipient.as_deref())
    .bind(e.detail.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db("event"))?;
    Ok(())
}
