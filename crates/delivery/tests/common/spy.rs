//! A store wrapper for delivery tests: implements only what the engine uses
//! (`DeliveryStore`), passes every call to a real store, and counts or records what
//! the tests ask about — claim rounds, each claimed recipient with its fencing token,
//! lease renewals — and can make renewals fail (the database unreachable for them) or
//! refuse outcomes (the disk full).

#![allow(dead_code)]

use mailroom_delivery::DeliveryStore;
use mailroom_model::{MessageId, TenantId};
use mailroom_store::{
    DueRecipient, DynStore, Lease, NewMessage, Outcome, StoreError, TenantRecord,
};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Spied {
    /// `claim_due` calls.
    pub claims: AtomicUsize,
    /// Every recipient claimed.
    pub claimed: Mutex<Vec<Claimed>>,
    /// `renew_leases` calls, and those that failed.
    pub renewals: AtomicUsize,
    pub failed_renewals: AtomicUsize,
    /// The deadline the last successful renewal wrote (Unix ms).
    pub last_renewed_until: AtomicI64,
    /// While set, `renew_leases` fails without touching the store.
    pub fail_renewals: AtomicBool,
    /// While set, `claim_due` claims nothing (this node takes no new work).
    pub pause_claims: AtomicBool,
    /// While set, `record_outcomes` fails with `StoreError::Full` (the disk is full)
    /// without touching the store.
    pub refuse_outcomes: AtomicBool,
    /// The recipients of each refused `record_outcomes` call, in order.
    pub refused: Mutex<Vec<Vec<(MessageId, i64)>>>,
}

/// One recipient as claimed: by whom, under which token, when and until when.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub message_id: MessageId,
    pub idx: i64,
    pub owner: String,
    pub token: i64,
    pub at: i64,
    pub until: i64,
}

impl Spied {
    /// How many times the recipient was claimed (by any engine on this spy).
    pub fn times_claimed(&self, id: &MessageId, idx: i64) -> usize {
        self.claimed
            .lock()
            .unwrap()
            .iter()
            .filter(|c| &c.message_id == id && c.idx == idx)
            .count()
    }

    /// The recipient's claims, oldest first.
    pub fn claims_of(&self, id: &MessageId, idx: i64) -> Vec<Claimed> {
        self.claimed
            .lock()
            .unwrap()
            .iter()
            .filter(|c| &c.message_id == id && c.idx == idx)
            .cloned()
            .collect()
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
        if self.spied.pause_claims.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let due = self.inner.claim_due(lease, now, limit).await?;
        self.spied
            .claimed
            .lock()
            .unwrap()
            .extend(due.iter().map(|r| Claimed {
                message_id: r.message_id.clone(),
                idx: r.idx,
                owner: lease.owner.clone(),
                token: r.lease_token,
                at: now,
                until: lease.until,
            }));
        Ok(due)
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        if self.spied.refuse_outcomes.load(Ordering::SeqCst) {
            let keys = outcomes
                .iter()
                .map(|o| (o.message_id.clone(), o.idx))
                .collect();
            self.spied.refused.lock().unwrap().push(keys);
            return Err(StoreError::Full);
        }
        self.inner.record_outcomes(outcomes).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError> {
        self.spied.renewals.fetch_add(1, Ordering::SeqCst);
        if self.spied.fail_renewals.load(Ordering::SeqCst) {
            self.spied.failed_renewals.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Database(
                "renewals switched off by the test".into(),
            ));
        }
        let n = self.inner.renew_leases(owner, tokens, until).await?;
        self.spied
            .last_renewed_until
            .fetch_max(until, Ordering::SeqCst);
        Ok(n)
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
