//! Sealed secrets on PostgreSQL: the DKIM private keys and webhook secrets as the
//! same envelope text SQLite stores (sealed above the store), listed and replaced
//! together for the start-up migration and key rotation. No crypto here.

use super::rows::all;
use crate::{SecretOwner, SecretUpdate, StoreError, StoredSecret};
use mailroom_model::WebhookId;
use mailroom_secrets::Sealed;
use sqlx::{PgPool, Row};

pub(super) async fn list(pool: &PgPool) -> Result<Vec<StoredSecret>, StoreError> {
    // One snapshot: a secret re-sealed by another node between the two reads would
    // only be skipped (its `old` no longer matches), but one read is simpler to trust.
    let on = StoreError::on("secret");
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(&on)?;
    let keys = sqlx::query(
        "SELECT domain, selector, private_key_pem FROM dkim_keys ORDER BY domain, selector",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::on("dkim key"))?;
    let hooks = sqlx::query("SELECT id, secret FROM webhooks ORDER BY id")
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::on("webhook"))?;
    tx.commit().await.map_err(&on)?;
    let mut out = all(
        &keys,
        |r| {
            Ok(StoredSecret {
                owner: SecretOwner::DkimKey {
                    domain: r.try_get("domain")?,
                    selector: r.try_get("selector")?,
                },
                value: Sealed::from_stored(r.try_get("private_key_pem")?),
            })
        },
        "dkim key",
    )?;
    out.extend(all(
        &hooks,
        |r| {
            Ok(StoredSecret {
                owner: SecretOwner::Webhook(WebhookId::from_stored(r.try_get("id")?)),
                value: Sealed::from_stored(r.try_get("secret")?),
            })
        },
        "webhook",
    )?);
    Ok(out)
}

/// Every update in one transaction, each only where the row still holds `old`: two
/// nodes re-sealing at once change each row once (the second finds `new`, not `old`,
/// after waiting for the first's row lock).
pub(super) async fn replace(pool: &PgPool, updates: Vec<SecretUpdate>) -> Result<u64, StoreError> {
    let on = StoreError::on("secret");
    let mut tx = pool.begin().await.map_err(&on)?;
    let mut changed = 0;
    for u in updates {
        let done = match &u.owner {
            SecretOwner::DkimKey { domain, selector } => sqlx::query(
                "UPDATE dkim_keys SET private_key_pem = $1 \
                 WHERE domain = $2 AND selector = $3 AND private_key_pem = $4",
            )
            .bind(u.new.as_str())
            .bind(domain)
            .bind(selector)
            .bind(u.old.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::on("dkim key"))?,
            SecretOwner::Webhook(id) => {
                sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2 AND secret = $3")
                    .bind(u.new.as_str())
                    .bind(id.as_str())
                    .bind(u.old.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::on("webhook"))?
            }
        };
        changed += done.rows_affected();
    }
    tx.commit().await.map_err(&on)?;
    Ok(changed)
}
