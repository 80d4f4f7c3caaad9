//! The lease keeper: every lease this node holds while delivery is in progress, and
//! their renewal.
//!
//! A claim (or a hand-off from ingest) gives one fencing token; every work item made
//! from it shares one [`Held`] (the token and its deadline). The keeper sees each token
//! for as long as some work item or some outcome not yet written holds its `Held`
//! (weak references: a token leaves when its last recipient is recorded or released,
//! with no bookkeeping at those places). Every `lease / 3` it renews all live tokens in
//! one `renew_leases(node, tokens, now + lease)` call and moves their deadlines, which
//! the workers read before taking and before sending a message.
//!
//! A deadline is never moved once it is within the safety margin (`lease / 6`, at most
//! 10 s) of running out: by then another node may be about to claim the recipients, so
//! the work is given up (workers drop it unsent, the keeper stops renewing it), never
//! revived. When renewal fails (database down) deadlines stay where they were and
//! delivery of the affected work stops before they pass. The keeper runs while
//! `Engine::run` runs, and stops when it returns or is dropped (task aborted).
//!
//! It also knows whether the engine has started (released what a previous run of
//! this node left): hand-off leases issued before that are not taken, since that
//! release may have cleared them.

use crate::store::DeliveryStore;
use mailroom_model::now_millis;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One lease (fencing token) held by this node, shared by the work items made from it.
#[derive(Debug)]
pub(crate) struct Held {
    token: i64,
    /// When the lease runs out (Unix ms), as last written to the store.
    until: AtomicI64,
    /// Work needs at least this much lease left to be started.
    margin: i64,
}

impl Held {
    pub(crate) fn until(&self) -> i64 {
        self.until.load(Ordering::Acquire)
    }

    /// Whether work under this lease may still be started at `now`: enough of the lease
    /// is left that no other node can claim it meanwhile.
    pub(crate) fn usable(&self, now: i64) -> bool {
        self.until() - now > self.margin
    }
}

/// The leases this node holds and renews.
pub(crate) struct LeaseKeeper {
    owner: String,
    lease_ms: i64,
    margin: i64,
    held: Mutex<HashMap<i64, Weak<Held>>>,
    /// Set once the engine has given back what a previous run of this node left
    /// (`release_node` at start). That release also clears hand-off leases issued
    /// before it, so those are not taken (the scheduler claims them instead).
    started: AtomicBool,
    /// Hand-off tokens issued before `started`, until they are offered.
    early: Mutex<HashSet<i64>>,
}

impl LeaseKeeper {
    pub(crate) fn new(owner: &str, lease: Duration) -> Self {
        let lease_ms = (lease.as_millis() as i64).max(1);
        Self {
            owner: owner.to_string(),
            lease_ms,
            margin: (lease_ms / 6).min(10_000),
            held: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            early: Mutex::new(HashSet::new()),
        }
    }

    /// The start-up release of this node's old leases is done.
    pub(crate) fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Notes a hand-off lease being issued (`Handoff::new_lease`).
    pub(crate) fn issued(&self, token: i64) {
        if !self.started.load(Ordering::SeqCst) {
            self.early.lock().expect("early leases lock").insert(token);
        }
    }

    /// Whether a hand-off under `token` may be taken: not if its lease may have been
    /// cleared by the start-up release (issued before it finished).
    pub(crate) fn may_take(&self, token: i64) -> bool {
        let early = self.early.lock().expect("early leases lock").remove(&token);
        !early && self.started.load(Ordering::SeqCst)
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Starts keeping the lease `token`, valid until `until`; the returned handle is
    /// shared by every work item made from it.
    pub(crate) fn hold(&self, token: i64, until: i64) -> Arc<Held> {
        let mut map = self.held.lock().expect("lease map lock");
        if let Some(h) = map.get(&token).and_then(Weak::upgrade) {
            h.until.fetch_max(until, Ordering::AcqRel);
            return h;
        }
        let h = Arc::new(Held {
            token,
            until: AtomicI64::new(until),
            margin: self.margin,
        });
        map.insert(token, Arc::downgrade(&h));
        h
    }

    /// Tokens held now (work or unwritten outcomes still refer to them).
    pub(crate) fn tokens(&self) -> Vec<i64> {
        let mut map = self.held.lock().expect("lease map lock");
        map.retain(|_, w| w.strong_count() > 0);
        map.keys().copied().collect()
    }

    /// The leases worth renewing at `now`; forgets those no work holds any more and
    /// those too close to their end to be trusted.
    fn live(&self, now: i64) -> Vec<Arc<Held>> {
        let mut map = self.held.lock().expect("lease map lock");
        let mut live = Vec::with_capacity(map.len());
        map.retain(|_, w| match w.upgrade() {
            Some(h) if h.usable(now) => {
                live.push(h);
                true
            }
            _ => false,
        });
        live
    }

    /// One renewal round: extends every live lease to `now + lease` in one call.
    /// Returns how many tokens were renewed (0 when there were none or it failed).
    pub(crate) async fn renew(&self, store: &dyn DeliveryStore) -> usize {
        let start = now_millis();
        let live = self.live(start);
        if live.is_empty() {
            return 0;
        }
        let until = start + self.lease_ms;
        let tokens: Vec<i64> = live.iter().map(|h| h.token).collect();
        match store.renew_leases(&self.owner, &tokens, until).await {
            Ok(rows) => {
                for h in &live {
                    h.until.fetch_max(until, Ordering::AcqRel);
                }
                tracing::trace!(tokens = tokens.len(), rows, "leases renewed");
                tokens.len()
            }
            Err(e) => {
                // Deadlines stay: work whose lease runs out is not sent (workers check).
                tracing::warn!(error = %e, tokens = tokens.len(), "renewing leases failed");
                0
            }
        }
    }

    /// Renews every `lease / 3` until `stop`, each call bounded by the same interval.
    pub(crate) async fn run(&self, store: Arc<dyn DeliveryStore>, stop: CancellationToken) {
        let every = Duration::from_millis((self.lease_ms / 3).max(1) as u64);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            // A call that hangs (database unreachable) is given up after one interval
            // and tried again; the deadlines it would have moved stay where they were.
            tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(every, self.renew(store.as_ref())) => {
                    if r.is_err() {
                        tracing::warn!("renewing leases timed out");
                    }
                }
            }
        }
    }
}
