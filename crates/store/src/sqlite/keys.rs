//! Named API keys, their secrets (SHA-256 digests) and the operator token's digest.
//! Administrative writes go through the pool (they are rare); the "last used" times
//! are written by the writer task (`ops.rs`), batched by the caller to at most one
//! write per key and minute.

use super::db;
use crate::{ApiKeyRecord, ApiKeySecret, NewApiKey, StoreError};
use mailroom_model::{ApiKeyId, KeyScope, TenantId, now_millis};
use sqlx::{Row, SqliteConnection, SqlitePool};

/// The key's columns, plus when its retiring secret (if any) stops working (`$1`: now).
macro_rules! select_keys {
    ($rest:literal) => {
        concat!(
            "SELECT k.id, k.tenant_id, k.name, k.scope, k.created_at, k.last_used_at, ",
            "k.rotated_at, (SELECT MAX(s.expires_at) FROM api_key_secrets s ",
            "WHERE s.key_id = k.id AND s.expires_at > $1) AS previous_expires_at ",
            "FROM api_keys k ",
            $rest
        )
    };
}

fn key_from_row(r: &sqlx::sqlite::SqliteRow) -> ApiKeyRecord {
    ApiKeyRecord {
        id: ApiKeyId::from_stored(r.get("id")),
        tenant_id: TenantId::from_stored(r.get("tenant_id")),
        name: r.get("name"),
        // The column has a CHECK constraint; an unknown value can only come from a
        // hand-edited database, and the narrowest scope is the safe reading.
        scope: KeyScope::parse(r.get::<&str, _>("scope")).unwrap_or(KeyScope::Read),
        created_at: r.get("created_at"),
        last_used_at: r.get("last_used_at"),
        rotated_at: r.get("rotated_at"),
        previous_secret_expires_at: r.get("previous_expires_at"),
    }
}

/// Inserts a key and its first secret on an open transaction (tenant creation uses
/// it too, so a tenant and its first key are written together).
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    k: &NewApiKey,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, scope, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(k.id.as_str())
    .bind(k.tenant_id.as_str())
    .bind(&k.name)
    .bind(k.scope.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db("api key"))?;
    sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at) VALUES ($1, $2, $3)")
        .bind(&k.secret_hash)
        .bind(k.id.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db("api key"))?;
    Ok(())
}

pub(super) async fn create(pool: &SqlitePool, k: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
    let now = now_millis();
    let mut tx = pool.begin().await.map_err(db("api key"))?;
    insert(&mut tx, &k, now).await?;
    tx.commit().await.map_err(db("api key"))?;
    Ok(ApiKeyRecord {
        id: k.id,
        tenant_id: k.tenant_id,
        name: k.name,
        scope: k.scope,
        created_at: now,
        last_used_at: None,
        rotated_at: None,
        previous_secret_expires_at: None,
    })
}

pub(super) async fn list(
    pool: &SqlitePool,
    tenant: Option<&TenantId>,
) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let rows = match tenant {
        Some(t) => {
            sqlx::query(select_keys!(
                "WHERE k.tenant_id = $2 ORDER BY k.created_at, k.id"
            ))
            .bind(now_millis())
            .bind(t.as_str())
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query(select_keys!("ORDER BY k.created_at, k.id"))
                .bind(now_millis())
                .fetch_all(pool)
                .await
        }
    }
    .map_err(db("api key"))?;
    Ok(rows.iter().map(key_from_row).collect())
}

pub(super) async fn get(
    pool: &SqlitePool,
    id: &ApiKeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = sqlx::query(select_keys!("WHERE k.id = $2"))
        .bind(now_millis())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(db("api key"))?;
    Ok(row.as_ref().map(key_from_row))
}

pub(super) async fn revoke(pool: &SqlitePool, id: &ApiKeyId) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(db("api key"))?;
    sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("api key"))?;
    let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("api key"))?;
    tx.commit().await.map_err(db("api key"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn rotate(
    pool: &SqlitePool,
    id: &ApiKeyId,
    secret_hash: &str,
    old_expires_at: i64,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let now = now_millis();
    let mut tx = pool.begin().await.map_err(db("api key"))?;
    let found = sqlx::query("UPDATE api_keys SET rotated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("api key"))?;
    if found.rows_affected() == 0 {
        return Ok(None);
    }
    // Secrets already past their expiry are of no use to anyone: forget them.
    sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1 AND expires_at <= $2")
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("api key"))?;
    sqlx::query(
        "UPDATE api_key_secrets SET expires_at = MIN(COALESCE(expires_at, $1), $1) \
         WHERE key_id = $2",
    )
    .bind(old_expires_at)
    .bind(id.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db("api key"))?;
    sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at) VALUES ($1, $2, $3)")
        .bind(secret_hash)
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("api key"))?;
    tx.commit().await.map_err(db("api key"))?;
    get(pool, id).await
}

/// The unexpired secrets of every key, for the policy directory.
pub(super) async fn live_secrets(
    conn: &mut SqliteConnection,
) -> Result<(Vec<ApiKeyRecord>, Vec<ApiKeySecret>), StoreError> {
    let now = now_millis();
    let keys = sqlx::query(select_keys!("ORDER BY k.id"))
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("api key"))?;
    let secrets = sqlx::query(
        "SELECT hash, key_id, expires_at FROM api_key_secrets \
         WHERE expires_at IS NULL OR expires_at > $1",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("api key"))?;
    Ok((
        keys.iter().map(key_from_row).collect(),
        secrets
            .iter()
            .map(|r| ApiKeySecret {
                hash: r.get("hash"),
                key_id: ApiKeyId::from_stored(r.get("key_id")),
                expires_at: r.get("expires_at"),
            })
            .collect(),
    ))
}

/// Run by the writer task: one UPDATE per key, all in the writer's transaction.
pub(super) async fn record_use(
    conn: &mut SqliteConnection,
    uses: &[(ApiKeyId, i64)],
) -> Result<(), StoreError> {
    for (id, at) in uses {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), $1) WHERE id = $2",
        )
        .bind(at)
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("api key"))?;
    }
    Ok(())
}

pub(super) async fn operator_token_hash(pool: &SqlitePool) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT token_hash FROM operator_token WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(db("operator token"))?;
    Ok(row.map(|r| r.get("token_hash")))
}

pub(super) async fn set_operator_token_hash(
    pool: &SqlitePool,
    hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO operator_token (id, token_hash, created_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, \
         created_at = excluded.created_at",
    )
    .bind(hash)
    .bind(now_millis())
    .execute(pool)
    .await
    .map_err(db("operator token"))?;
    Ok(())
}
