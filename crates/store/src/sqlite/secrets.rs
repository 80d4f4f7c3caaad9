//! Sealed secrets on SQLite: the DKIM private keys and webhook secrets as envelope
//! text (sealed above the store), listed and replaced together for the start-up
//! migration and key rotation. No crypto here.

use super::db;
use crate::{SecretOwner, SecretUpdate, StoreError, StoredSecret};
use mailroom_model::WebhookId;
use mailroom_secrets::Sealed;
use sqlx::{Row, SqlitePool};

pub(super) async fn list(pool: &SqlitePool) -> Result<Vec<StoredSecret>, StoreError> {
    let mut out = Vec::new();
    let keys = sqlx::query(
        "SELECT domain, selector, private_key_pem FROM dkim_keys ORDER BY domain, selector",
    )
    .fetch_all(pool)
    .await
    .map_err(db("dkim key"))?;
    for r in keys {
        out.push(StoredSecret {
            owner: SecretOwner::DkimKey {
                domain: r.get("domain"),
                selector: r.get("selector"),
            },
            value: Sealed::from_stored(r.get("private_key_pem")),
        });
    }
    let hooks = sqlx::query("SELECT id, secret FROM webhooks ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(db("webhook"))?;
    for r in hooks {
        out.push(StoredSecret {
            owner: SecretOwner::Webhook(WebhookId::from_stored(r.get("id"))),
            value: Sealed::from_stored(r.get("secret")),
        });
    }
    Ok(out)
}

pub(super) async fn replace(
    pool: &SqlitePool,
    updates: Vec<SecretUpdate>,
) -> Result<u64, StoreError> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db("secret"))?;
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
            .map_err(db("dkim key"))?,
            SecretOwner::Webhook(id) => {
                sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2 AND secret = $3")
                    .bind(u.new.as_str())
                    .bind(id.as_str())
                    .bind(u.old.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db("webhook"))?
            }
        };
        changed += done.rows_affected();
    }
    tx.commit().await.map_err(db("secret"))?;
    Ok(changed)
}
