//! Recording a batch of delivery outcomes in a few statements rather than two or three
//! per recipient. Every statement is a round trip to SQLite's worker thread (two thread
//! switches); at a thousand deliveries a second the per-recipient UPDATE, event INSERT
//! and body DELETE were about six switches per message. Here a batch is one
//! `UPDATE … FROM (VALUES …) RETURNING` per chunk, one multi-row event INSERT for the
//! rows that took their outcome, and one DELETE of the finished bodies. Rare paths
//! (hard-bounce suppressions, outcomes whose lease was lost) stay per row.
//!
//! The semantics are those of the one-row-at-a-time version (`ops::record_each`),
//! which a batch with the same recipient twice still uses: the UPDATE's join would
//! pick one of the two arbitrarily.

use super::ops::{lease_lost, record_each};
use crate::{Outcome, StoreError};
use mailroom_model::{EventDetail, EventId, MessageId, RecipientState};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::collections::HashSet;

/// Outcomes per UPDATE (9 parameters each) and events per INSERT (7 each): well under
/// SQLite's 32,766 bound parameters.
const UPDATE_CHUNK: usize = 500;
const INSERT_CHUNK: usize = 1000;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, "recipient")
}

/// Records `outcomes` (in one transaction the caller holds) and returns the keys whose
/// lease another node holds now.
pub(super) async fn record(
    conn: &mut SqliteConnection,
    outcomes: &[Outcome],
    hint: &crate::SuppressionHint,
) -> Result<Vec<(MessageId, i64)>, StoreError> {
    let mut keys = HashSet::with_capacity(outcomes.len());
    if outcomes.len() < 2
        || !outcomes
            .iter()
            .all(|o| keys.insert((o.message_id.as_str(), o.idx)))
    {
        return record_each(conn, outcomes, hint).await;
    }
    let mut updated: HashSet<(String, i64)> = HashSet::with_capacity(outcomes.len());
    for chunk in outcomes.chunks(UPDATE_CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "WITH o(message_id, idx, token, state, attempted, next_at, reply, mx, at) AS (VALUES ",
        );
        let mut rows = qb.separated(", ");
        for o in chunk {
            rows.push("(");
            rows.push_bind_unseparated(o.message_id.as_str());
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.idx);
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.lease_token);
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.state.as_str());
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(i64::from(o.attempted));
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.next_attempt_at);
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.last_reply.as_deref());
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.last_mx.as_deref());
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(o.at);
            rows.push_unseparated(")");
        }
        // Only a recipient still waiting takes an outcome, except that a delivery is a
        // fact even if the recipient was cancelled while it was in flight.
        qb.push(
            ") UPDATE recipients SET state = o.state, attempts = attempts + o.attempted, \
             next_attempt_at = o.next_at, last_reply = COALESCE(o.reply, last_reply), \
             last_mx = COALESCE(o.mx, last_mx), lease_until = NULL, lease_owner = NULL, \
             lease_token = NULL, updated_at = o.at FROM o \
             WHERE recipients.message_id = o.message_id AND recipients.idx = o.idx \
               AND recipients.lease_token = o.token \
               AND (recipients.state IN ('queued', 'deferred') OR o.state = 'delivered') \
             RETURNING recipients.message_id AS message_id, recipients.idx AS idx",
        );
        for row in qb.build().fetch_all(&mut *conn).await.map_err(err)? {
            updated.insert((row.get("message_id"), row.get("idx")));
        }
    }
    let mut lost = Vec::new();
    let mut took: Vec<&Outcome> = Vec::with_capacity(updated.len());
    for o in outcomes {
        if updated.contains(&(o.message_id.as_str().to_string(), o.idx)) {
            took.push(o);
        } else if lease_lost(conn, o).await? {
            lost.push((o.message_id.clone(), o.idx));
        }
    }
    for chunk in took.chunks(INSERT_CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail, \
             bounce_class, bounce_async) ",
        );
        qb.push_values(chunk, |mut b, o| {
            let detail = EventDetail::from(o.detail.clone());
            let (bounce_class, bounce_async) = crate::bounce_columns(&detail);
            b.push_bind(EventId::generate().as_str().to_string())
                .push_bind(o.event.as_str())
                .push_bind(o.at)
                .push_bind(o.message_id.as_str())
                .push_bind(o.tenant_id.as_str())
                .push_bind(o.recipient.as_str())
                .push_bind(detail.to_stored_json())
                .push_bind(bounce_class)
                .push_bind(bounce_async);
        });
        qb.build().execute(&mut *conn).await.map_err(err)?;
    }
    for o in &took {
        if o.suppress && o.state == RecipientState::Bounced {
            super::ops::suppress_bounced(conn, o, hint).await?;
        }
    }
    super::space::drop_finished_bodies(conn, outcomes).await?;
    Ok(lost)
}
