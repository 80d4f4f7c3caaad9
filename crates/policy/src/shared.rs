//! What a node shares with the other nodes on one store, on the policy's side: the
//! refresher that keeps the directory in step, the live-node count that divides
//! per-second rates, the daily-quota sync with every node's counts, and giving an
//! admission back when its message was not stored. How exact the quotas are across
//! nodes is written in `quota`.

use crate::{Cached, Policy, Refresher};
use mailroom_model::{TenantId, now_millis};
use mailroom_store::StoreError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the daily quotas take in the other nodes' counts by default.
pub const DEFAULT_QUOTA_SYNC_INTERVAL: Duration = Duration::from_secs(3);

impl Policy {
    /// Keeps the directory (and, through `extra`, other caches such as the DKIM
    /// signing keys) in step with changes made through other nodes: see [`crate::refresh`].
    pub fn spawn_refresher(
        self: &Arc<Self>,
        extra: Vec<Arc<dyn Cached>>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let mut caches: Vec<Arc<dyn Cached>> = vec![self.clone()];
        caches.extend(extra);
        Refresher::from_source(self.store.clone(), caches).spawn(interval, shutdown)
    }

    /// Shares the node runtime's count of live nodes: per-second rates are divided by
    /// it from now on (see `quota`). A count of 0 is taken as 1.
    pub fn use_live_nodes(&self, live_nodes: Arc<AtomicUsize>) {
        *self.live_nodes.write().expect("live nodes lock") = live_nodes;
    }

    /// The live-node count in use (1 unless [`Self::use_live_nodes`] gave another).
    pub fn live_nodes(&self) -> usize {
        self.live_nodes
            .read()
            .expect("live nodes lock")
            .load(Ordering::Relaxed)
            .max(1)
    }

    /// Takes in every node's accepted counts for the daily quotas (see `quota`): the
    /// last two hours normally, the whole day after syncs were skipped. Skipped (no
    /// query) while this node is the only live one (its own counts are then exact)
    /// or no tenant has a daily quota. The query reads the store's per-hour counts of
    /// up to two hours of messages (an index range on `received_at`): at high rates
    /// on several nodes that is the cost of this sync, once per interval per node.
    pub async fn sync_quotas(&self) -> Result<(), StoreError> {
        if self.live_nodes() <= 1 || !self.daily_quota_in_force() {
            self.quota_synced.store(false, Ordering::Relaxed);
            return Ok(());
        }
        let now = now_millis();
        let from_hour = if self.quota_synced.load(Ordering::Relaxed) {
            now / 3_600_000 - 1
        } else {
            now / 3_600_000 - 23
        };
        self.quotas.begin_sync();
        let counts = self
            .store
            .message_counts_since(from_hour * 3_600_000)
            .await?;
        self.quotas.finish_sync(counts, from_hour);
        self.quota_synced.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Runs [`Self::sync_quotas`] every `interval` until `shutdown`; a failure is
    /// logged at debug and the counts kept as they are.
    pub fn spawn_quota_sync(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let policy = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = policy.sync_quotas().await {
                    tracing::debug!(error = %e, "quota sync failed; will retry");
                }
            }
        })
    }

    fn daily_quota_in_force(&self) -> bool {
        self.defaults().messages_per_day > 0
            || self
                .directory()
                .tenants()
                .any(|t| t.limits.messages_per_day.is_some_and(|n| n > 0))
    }

    /// Gives back the quota a message took at admission when it was not stored after
    /// all (the store failed, or another node won the race on its idempotency key).
    pub fn refund_message(&self, tenant: &TenantId) {
        if let Some(t) = self.directory().tenant(tenant) {
            let limits = self.rate_limits(t);
            self.quotas.refund(tenant, limits);
        }
    }
}
