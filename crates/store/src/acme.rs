//! The ACME role ([`AcmeStore`]): HTTP-01 challenges in progress. The node that orders a
//! certificate stores each token's key authorization here; the CA's validation request
//! (`GET /.well-known/acme-challenge/{token}`) may reach any node behind the same name,
//! and every node reads the answer from here. Same SQL on both backends (`acme_impl!`).

use crate::StoreError;

/// Pending ACME HTTP-01 challenges, shared by every node.
#[async_trait::async_trait]
pub trait AcmeStore: Send + Sync + 'static {
    /// Stores (or replaces) the key authorization that answers `token` until
    /// `expires_at` (ms).
    async fn put_acme_challenge(
        &self,
        token: &str,
        key_authorization: &str,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// The key authorization for `token`, if one is stored and not expired at `now`.
    async fn get_acme_challenge(&self, token: &str, now: i64)
    -> Result<Option<String>, StoreError>;

    /// Removes `token`'s challenge (its order is over), and every challenge expired at
    /// `now` (left by a node that stopped mid-order); returns whether `token`'s was there.
    async fn remove_acme_challenge(&self, token: &str, now: i64) -> Result<bool, StoreError>;
}

/// `AcmeStore` for `$store` (SQLite and PostgreSQL: the same statements).
macro_rules! acme_impl {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl AcmeStore for $store {
            async fn put_acme_challenge(
                &self,
                token: &str,
                key_authorization: &str,
                expires_at: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO acme_challenges (token, key_authorization, expires_at) \
                     VALUES ($1, $2, $3) \
                     ON CONFLICT (token) DO UPDATE SET \
                       key_authorization = excluded.key_authorization, \
                       expires_at = excluded.expires_at",
                )
                .bind(token)
                .bind(key_authorization)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(db("ACME challenge"))?;
                Ok(())
            }

            async fn get_acme_challenge(
                &self,
                token: &str,
                now: i64,
            ) -> Result<Option<String>, StoreError> {
                let row = sqlx::query(
                    "SELECT key_authorization FROM acme_challenges \
                     WHERE token = $1 AND expires_at > $2",
                )
                .bind(token)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("ACME challenge"))?;
                Ok(row.map(|r| r.get("key_authorization")))
            }

            async fn remove_acme_challenge(
                &self,
                token: &str,
                now: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM acme_challenges WHERE token = $1")
                    .bind(token)
                    .execute(&self.pool)
                    .await
                    .map_err(db("ACME challenge"))?;
                sqlx::query("DELETE FROM acme_challenges WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(db("ACME challenge"))?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}
