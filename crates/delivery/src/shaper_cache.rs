//! The shaper's view of the store: the throttles in force (kept as a parsed snapshot
//! the per-message path reads without a lock on the cache), tenant pools and today's
//! egress counts, re-read every `refresh` — the bound on how stale this node's view of
//! another node's throttles and counts can be — and the warm-up counts this node
//! added, flushed to the store with each refresh and when the engine stops.

use crate::shaper::Shaper;
use crate::shaping::limits::ActiveThrottle;
use crate::shaping::rules::RuleAction;
use crate::shaping::warmup::day_of;
use mailroom_store::{EgressCount, ThrottleRecord};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[derive(Default)]
pub(crate) struct Cache {
    pub(crate) fetched_at: i64,
    pub(crate) throttles: Vec<ThrottleRecord>,
    pub(crate) pools: HashMap<String, String>,
    pub(crate) day: i64,
    pub(crate) counts: HashMap<(String, String), u64>,
    pub(crate) warmup_start: HashMap<String, i64>,
    pub(crate) pending: HashMap<(i64, String, String), i64>,
}

impl Shaper {
    /// The throttles in force (parsed), read again from the store when older than
    /// `refresh`; between refreshes no lock is taken but this snapshot's.
    pub(crate) async fn active(&self) -> Arc<Vec<ActiveThrottle>> {
        let age = self.now() - self.fetched_at.load(Ordering::Acquire);
        if age >= self.settings.refresh.as_millis() as i64 {
            drop(self.refreshed().await);
        }
        self.throttles_now.read().expect("throttles").clone()
    }

    /// Parses the cache's throttles into the snapshot the per-message path reads.
    pub(crate) fn publish_throttles(&self, cache: &Cache) {
        let parsed: Vec<ActiveThrottle> = cache
            .throttles
            .iter()
            .filter_map(|t| {
                Some(ActiveThrottle {
                    site: t.site.clone(),
                    tenant: t.tenant.clone(),
                    action: RuleAction::from_parts(&t.action, t.value)?,
                    expires_at: t.expires_at,
                })
            })
            .collect();
        *self.throttles_now.write().expect("throttles") = Arc::new(parsed);
    }

    /// The cache, read again from the store when older than `refresh` (pending
    /// warm-up counts are flushed first).
    pub(crate) async fn refreshed(&self) -> tokio::sync::MutexGuard<'_, Cache> {
        let mut cache = self.cache.lock().await;
        let now = self.now();
        if now - cache.fetched_at < self.settings.refresh.as_millis() as i64 {
            return cache;
        }
        cache.fetched_at = now;
        self.fetched_at.store(now, Ordering::Release);
        self.flush_counts(&mut cache).await;
        match self.store.active_throttles(now).await {
            Ok(t) => {
                cache.throttles = t;
                self.publish_throttles(&cache);
            }
            Err(e) => tracing::warn!(error = %e, "reading throttles failed; using the last ones"),
        }
        if !self.settings.pools.is_empty() {
            if let Ok(p) = self.store.tenant_pools().await {
                cache.pools = p.into_iter().map(|(t, p)| (t.to_string(), p)).collect();
            }
            let day = day_of(now);
            if let Ok(c) = self.store.egress_counts(day).await {
                cache.day = day;
                cache.counts = c
                    .into_iter()
                    .map(|c| ((c.address, c.provider), c.sent.max(0) as u64))
                    .collect();
                // Counts not yet flushed are ours on top.
                let pending: Vec<_> = cache
                    .pending
                    .iter()
                    .filter(|((d, _, _), _)| *d == day)
                    .map(|((_, a, p), n)| ((a.clone(), p.clone()), *n as u64))
                    .collect();
                for (k, n) in pending {
                    *cache.counts.entry(k).or_default() += n;
                }
            }
        }
        cache
    }

    /// Writes the warm-up counts not yet in the store (kept for the next try when
    /// that fails).
    async fn flush_counts(&self, cache: &mut Cache) {
        if cache.pending.is_empty() {
            return;
        }
        let counts: Vec<EgressCount> = cache
            .pending
            .drain()
            .map(|((day, address, provider), sent)| EgressCount {
                day,
                address,
                provider,
                sent,
            })
            .collect();
        if let Err(e) = self.store.add_egress_counts(&counts).await {
            tracing::warn!(error = %e, "writing warm-up counts failed; kept for the next flush");
            for c in counts {
                *cache
                    .pending
                    .entry((c.day, c.address, c.provider))
                    .or_default() += c.sent;
            }
        }
    }

    /// Writes what only this process knows to the store (the engine calls it when it
    /// stops): a restart the same day must not give warming addresses their day's
    /// allowance again.
    pub async fn flush(&self) {
        let mut cache = self.cache.lock().await;
        self.flush_counts(&mut cache).await;
    }

    /// Forces the next call to read the store again (after a manual change).
    pub async fn invalidate(&self) {
        self.cache.lock().await.fetched_at = 0;
        self.fetched_at.store(0, Ordering::Release);
    }

    /// The throttles in force now (from the cache, read again if old).
    pub async fn throttles(&self) -> Vec<ThrottleRecord> {
        let now = self.now();
        self.refreshed()
            .await
            .throttles
            .iter()
            .filter(|t| t.expires_at > now)
            .cloned()
            .collect()
    }
}
