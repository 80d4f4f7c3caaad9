//! Rows of named API keys and their secrets (digests only), and the operator token's
//! digest.

use mailroom_model::{ApiKeyId, KeyScope, TenantId};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub scope: KeyScope,
    /// SHA-256 (hex) of the secret, which is shown once and never stored.
    pub secret_hash: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub scope: KeyScope,
    pub created_at: i64,
    /// When the key was last used, recorded at most once a minute per key.
    pub last_used_at: Option<i64>,
    pub rotated_at: Option<i64>,
    /// Until when the secret replaced by the last rotation still works (only while it
    /// does).
    pub previous_secret_expires_at: Option<i64>,
}

/// One secret of a key: the current one (`expires_at` `None`) or one retiring after a
/// rotation.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeySecret {
    pub hash: String,
    pub key_id: ApiKeyId,
    pub expires_at: Option<i64>,
}
