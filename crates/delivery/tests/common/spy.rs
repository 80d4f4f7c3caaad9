//! A store wrapper for delivery tests: implements only what the engine uses
//! (`DeliveryStore`), passes every call to a real store, and counts or records what
//! the tests ask about — claim rounds, each claimed recipient with its fencing token,
//! lease renewals — and can make renewals fail (the database unreachable for them).

#![allow(dead_code)]

use mailroom_delivery::DeliveryStore;
use mailroom_model::{MessageId, TenantId};
use mailroom_store::{
    DueRecipient, DynStore, Lease, NewMessage, Outcome, StoreError, TenantRecord,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Spied {
    /// `claim_due` calls.
    pub claims: AtomicUsize,
    /// Every recipient claimed: (message, index, owner, token).
    pub claimed: Mutex<Vec<(MessageId, i64, String, i64)>>,
    /// `renew_leases` calls, and those that failed.
    pub renewals: AtomicUsize,
    pub failed_renewals: AtomicUsize,
    /// Tokens passed to the last renewal.
    pub last_renewed: Mutex<Vec<i64>>,
    /// While set, `renew_leases` fails without touching the store.
    pub fail_renewals: AtomicBool,
}

impl Spied {
    /// How many times the recipient was claimed (by any engine on this spy).
    pub fn times_claimed(&self, id: &MessageId, idx: i64) -> usize {
        self.claimed
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, i, _, _)| m == id && *i == idx)
            .count()
    }

    /// The owner and token of the recipient's last claim.
    pub fn last_claim(&self, id: &MessageId, idx: i64) -> Option<(String, i64)> {
        self.claimed
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(m, i, _, _)| m == id && *i == idx)
            .map(|(_, _, o, t)| (o.clone(), *t))
    }
}

/// Cloned into the engine; the test keeps another clone to read `spied`.
#[derive(Clone)]
pub struct SpyStore {
    pub inner: DynStore,
    pub spied: Arc<Spied>,
}

impl SpyStore {
    pub fn new(inner: DynStore) -> Self {
        Self {
            inner,
            spied: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl DeliveryStore for SpyStore {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError> {
        self.spied.claims.fetch_add(1, Ordering::SeqCst);
        let due = self.inner.claim_due(lease, now, limit).await?;
        self.spied
            .claimed
            .lock()
            .unwrap()
            .extend(due.iter().map(|r| {
                (
                    r.message_id.clone(),
                    r.idx,
                    lease.owner.clone(),
                    r.lease_token,
                )
            }));
        Ok(due)
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        self.inner.record_outcomes(outcomes).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError> {
        self.spied.renewals.fetch_add(1, Ordering::SeqCst);
        *self.spied.last_renewed.lock().unwrap() = tokens.to_vec();
        if self.spied.fail_renewals.load(Ordering::SeqCst) {
            self.spied.failed_renewals.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Database(
                "renewals switched off by the test".into(),
            ));
        }
        self.inner.renew_leases(owner, tokens, until).await
    }

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        self.inner.release(owner, keys).await
    }

    async fn release_node(&self, owner: &str) -> Result<u64, StoreError> {
        self.inner.release_node(owner).await
    }

    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.load_body(id).await
    }

    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        self.inner.enqueue(message).await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.inner.get_tenant(id).await
    }
}
