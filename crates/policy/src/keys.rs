//! Named API keys at request time: which key (and scope) a secret belongs to, and when
//! each key was last used. The lookup is a digest and a map access on the cached
//! directory, so a revoked key (the directory is reloaded by every change) or a
//! retiring secret past its expiry fails on the very next request.
//!
//! "Last used" is kept in memory for every use and written to the store through the
//! writer at most once a minute per key, so an API under load does not write a row
//! per request.

use crate::{Policy, TenantContext, Via, secrets};
use mailroom_model::{ApiKeyId, KeyScope, now_millis};
use std::collections::HashMap;
use std::sync::Mutex;

/// How often, at most, a key's `last_used_at` is written to the store.
pub const LAST_USED_WRITE_INTERVAL_MS: i64 = 60_000;

/// A caller authenticated by an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAuth {
    pub context: TenantContext,
    pub key_id: ApiKeyId,
    pub scope: KeyScope,
}

/// Per key: (last use seen, last use written to the store).
#[derive(Default)]
pub(crate) struct Usage(Mutex<HashMap<ApiKeyId, (i64, i64)>>);

impl Usage {
    /// Notes a use; returns whether it is time to write it to the store.
    fn note(&self, id: &ApiKeyId, now: i64) -> bool {
        let mut map = self.0.lock().expect("usage lock");
        let entry = map.entry(id.clone()).or_insert((now, i64::MIN));
        entry.0 = entry.0.max(now);
        if now.saturating_sub(entry.1) >= LAST_USED_WRITE_INTERVAL_MS {
            entry.1 = now;
            true
        } else {
            false
        }
    }

    fn last_seen(&self, id: &ApiKeyId) -> Option<i64> {
        self.0.lock().expect("usage lock").get(id).map(|e| e.0)
    }

    /// Forgets keys that no longer exist (bounded by the number of live keys).
    pub(crate) fn retain(&self, keep: impl Fn(&ApiKeyId) -> bool) {
        self.0.lock().expect("usage lock").retain(|id, _| keep(id));
    }
}

impl Policy {
    /// The key a secret belongs to, if it works now; records the use.
    pub fn api_key(&self, secret: &str) -> Option<KeyAuth> {
        let hash = secrets::hash_api_key(secret);
        let now = now_millis();
        let directory = self.directory();
        let (key, tenant) = directory.api_key_by_hash(&hash, now)?;
        let auth = KeyAuth {
            context: TenantContext {
                tenant_id: tenant.id.clone(),
                tenant_name: tenant.name.clone(),
                via: Via::ApiKey,
            },
            key_id: key.id.clone(),
            scope: key.scope,
        };
        self.record_key_use(&auth.key_id, now);
        Some(auth)
    }

    /// When the key was last used as far as this process saw (the stored value can
    /// lag by up to [`LAST_USED_WRITE_INTERVAL_MS`]).
    pub fn key_last_used(&self, id: &ApiKeyId) -> Option<i64> {
        self.usage.last_seen(id)
    }

    fn record_key_use(&self, id: &ApiKeyId, now: i64) {
        if !self.usage.note(id, now) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let id = id.clone();
        runtime.spawn(async move {
            if let Err(e) = store.record_api_key_use(vec![(id.clone(), now)]).await {
                tracing::warn!(key = %id, error = %e, "recording API key use failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_written_at_most_once_a_minute_per_key() {
        let usage = Usage::default();
        let a = ApiKeyId::generate();
        let b = ApiKeyId::generate();
        assert!(usage.note(&a, 1_000));
        assert!(!usage.note(&a, 2_000));
        assert!(usage.note(&b, 2_000), "another key has its own interval");
        assert!(!usage.note(&a, 60_999));
        assert_eq!(usage.last_seen(&a), Some(60_999));
        assert!(usage.note(&a, 61_000));
        usage.retain(|id| id == &b);
        assert_eq!(usage.last_seen(&a), None);
        assert_eq!(usage.last_seen(&b), Some(2_000));
    }
}
