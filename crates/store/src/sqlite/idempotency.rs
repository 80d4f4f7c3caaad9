//! HTTP idempotency keys on SQLite: written by the writer in the same transaction as
//! the messages they answer for (`writer.rs`), so a retried request can never create a
//! second message.

use crate::{NewMessage, StoreError};
use sqlx::SqliteConnection;

pub(super) async fn insert_keys<'a>(
    conn: &mut SqliteConnection,
    messages: impl Iterator<Item = &'a NewMessage>,
) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlx(e, "message");
    for m in messages {
        if let Some(k) = &m.idempotency {
            // Another request (through another process on the same file, or a race the
            // API layer did not serialise) that already stored this key wins: this batch
            // member fails alone with a conflict, and its caller replays the stored
            // response. A key older than the idempotency window is replaced.
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
    Ok(())
}
