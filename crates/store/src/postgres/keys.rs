//! Named API keys, their secrets (SHA-256 digests) and the operator token's digest,
//! on PostgreSQL. Administrative writes through the pool; "last used" times in one
//! statement per batch that only ever moves them forward (`GREATEST`), whichever node
//! writes last. `last_used_at` does not move the directory version (its trigger is on
//! the other columns), so usage never makes every node reload.

use super::rows::all;
use crate::{ApiKeyRecord, ApiKeySecret, NewApiKey, StoreError};
use mailroom_model::{ApiKeyId, KeyScope, TenantId, now_millis};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

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

fn key_from_row(r: &PgRow) -> Result<ApiKeyRecord, sqlx::Error> {
    Ok(ApiKeyRecord {
        id: ApiKeyId::from_stored(r.try_get("id")?),
        tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
        name: r.try_get("name")?,
        // The column has a CHECK constraint; an unknown value can only come from a
        // hand-edited database, and the narrowest scope is the safe reading.
        scope: KeyScope::parse(r.try_get::<&str, _>("scope")?).unwrap_or(KeyScope::Read),
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        rotated_at: r.try_get("rotated_at")?,
        previous_secret_expires_at: r.try_get("previous_expires_at")?,
    })
}

/// Inserts a key and its first secret on an open transaction (tenant creation uses
/// it too, so a tenant and its first key are written together).
pub(super) async fn insert(
    conn: &mut PgConnection,
    k: &NewApiKey,
    now: i64,
) -> Result<(), StoreError> {
    let on = StoreError::on("api key");
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
    .map_err(&on)?;
    sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at) VALUES ($1, $2, $3)")
        .bind(&k.secret_hash)
        .bind(k.id.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(&on)?;
    Ok(())
}

pub(super) async fn create(pool: &PgPool, k: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
    let on = StoreError::on("api key");
    let now = now_millis();
    let mut tx = pool.begin().await.map_err(&on)?;
    insert(&mut tx, &k, now).await?;
    tx.commit().await.map_err(&on)?;
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
    pool: &PgPool,
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
    .map_err(StoreError::on("api key"))?;
    all(&rows, key_from_row, "api key")
}

pub(super) async fn get(pool: &PgPool, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = sqlx::query(select_keys!("WHERE k.id = $2"))
        .bind(now_millis())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::on("api key"))?;
    row.as_ref()
        .map(key_from_row)
        .transpose()
        .map_err(StoreError::on("api key"))
}

pub(super) async fn revoke(pool: &PgPool, id: &ApiKeyId) -> Result<bool, StoreError> {
    let on = StoreError::on("api key");
    let mut tx = pool.begin().await.map_err(&on)?;
    sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
    let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
    tx.commit().await.map_err(&on)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn rotate(
    pool: &PgPool,
    id: &ApiKeyId,
    secret_hash: &str,
    old_expires_at: i64,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let on = StoreError::on("api key");
    let now = now_millis();
    let mut tx = pool.begin().await.map_err(&on)?;
    // The key's row stays locked until commit: two rotations of one key (through two
    // nodes) run one after the other.
    let found = sqlx::query("UPDATE api_keys SET rotated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
    if found.rows_affected() == 0 {
        return Ok(None);
    }
    // Secrets already past their expiry are of no use to anyone: forget them.
    sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1 AND expires_at <= $2")
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
    // A later rotation never extends an earlier expiry.
    sqlx::query(
        "UPDATE api_key_secrets SET expires_at = LEAST(COALESCE(expires_at, $1), $1) \
         WHERE key_id = $2",
    )
    .bind(old_expires_at)
    .bind(id.as_str())
    .execute(&mut *tx)
    .await
    .map_err(&on)?;
    sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at) VALUES ($1, $2, $3)")
        .bind(secret_hash)
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(&on)?;
    tx.commit().await.map_err(&on)?;
    get(pool, id).await
}

/// The unexpired secrets of every key, for the policy directory.
pub(super) async fn live_secrets(
    conn: &mut PgConnection,
) -> Result<(Vec<ApiKeyRecord>, Vec<ApiKeySecret>), StoreError> {
    let on = StoreError::on("api key");
    let now = now_millis();
    let keys = sqlx::query(select_keys!("ORDER BY k.id"))
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(&on)?;
    let secrets = sqlx::query(
        "SELECT hash, key_id, expires_at FROM api_key_secrets \
         WHERE expires_at IS NULL OR expires_at > $1",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(&on)?;
    Ok((
        all(&keys, key_from_row, "api key")?,
        all(
            &secrets,
            |r| {
                Ok(ApiKeySecret {
                    hash: r.try_get("hash")?,
                    key_id: ApiKeyId::from_stored(r.try_get("key_id")?),
                    expires_at: r.try_get("expires_at")?,
                })
            },
            "api key",
        )?,
    ))
}

/// One statement for the whole batch; each key's time only moves forward, so two
/// nodes writing in either order leave the later time.
pub(super) async fn record_use(pool: &PgPool, uses: &[(ApiKeyId, i64)]) -> Result<(), StoreError> {
    if uses.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
    let ats: Vec<i64> = uses.iter().map(|(_, at)| *at).collect();
    sqlx::query(
        "UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at) \
         FROM (SELECT id, MAX(at) AS at FROM UNNEST($1::text[], $2::bigint[]) AS x(id, at) \
               GROUP BY id) AS u \
         WHERE k.id = u.id",
    )
    .bind(&ids)
    .bind(&ats)
    .execute(pool)
    .await
    .map_err(StoreError::on("api key"))?;
    Ok(())
}

pub(super) async fn operator_token_hash(pool: &PgPool) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT token_hash FROM operator_token WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(StoreError::on("operator token"))?;
    row.map(|r| r.try_get("token_hash"))
        .transpose()
        .map_err(StoreError::on("operator token"))
}

pub(super) async fn set_operator_token_hash(pool: &PgPool, hash: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO operator_token (id, token_hash, created_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, \
         created_at = excluded.created_at",
    )
    .bind(hash)
    .bind(now_millis())
    .execute(pool)
    .await
    .map_err(StoreError::on("operator token"))?;
    Ok(())
}
