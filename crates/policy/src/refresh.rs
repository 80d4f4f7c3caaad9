//! Keeping in-memory caches in step with the shared store when several nodes write to
//! it: a refresher polls `ClusterStore::directory_version()` (one indexed read) and,
//! when the number moved, reloads every registered cache (the policy directory, the
//! DKIM signing keys, the operator token digest, …). A change made through any node
//! thus takes effect everywhere within one poll interval plus one reload.
//!
//! A failed poll or reload is logged at debug and retried at the next tick; a cache is
//! only ever replaced by a complete new load, never cleared, so a database outage
//! leaves every node answering from what it last knew. Two reloads of one cache may
//! overlap (the refresher's and the one a request handler runs after its own change):
//! [`Generations`] makes sure the one that started later wins, so a slow, older load
//! can never overwrite a newer one (which an outage would then leave in place).

use crate::store::DirectoryVersion;
use mailroom_store::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the refresher asks for the directory version by default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// Orders overlapping loads of one cache: take a ticket before reading the store,
/// install with it; a load whose ticket is older than the installed one is dropped.
/// A load that starts later reads everything committed before it started, so it is
/// never older than one that started earlier.
#[derive(Debug, Default)]
pub struct Generations {
    next: AtomicU64,
    installed: Mutex<u64>,
}

impl Generations {
    /// A ticket for a load about to read the store.
    pub fn begin(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Runs `install` if no load that started later was installed already; returns
    /// whether it ran.
    pub fn install(&self, ticket: u64, install: impl FnOnce()) -> bool {
        let mut installed = self.installed.lock().expect("generations lock");
        if ticket <= *installed {
            return false;
        }
        install();
        *installed = ticket;
        true
    }
}

/// An in-memory copy of stored state that can be loaded again as a whole.
#[async_trait::async_trait]
pub trait Cached: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Replaces the cache with a fresh load from the store. On error the old
    /// contents must stay in place.
    async fn reload(&self) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl Cached for crate::Policy {
    fn name(&self) -> &'static str {
        "policy directory"
    }

    async fn reload(&self) -> Result<(), StoreError> {
        crate::Policy::reload(self).await
    }
}

/// One poll loop over a set of caches (see the module doc).
pub struct Refresher {
    store: Arc<dyn DirectoryVersion>,
    caches: Vec<Arc<dyn Cached>>,
    /// The version every cache was last loaded at; `None` before the first load, so
    /// the first successful poll reloads (a change between the caches' initial load
    /// and the refresher's start is not missed).
    seen: Option<i64>,
}

impl Refresher {
    /// `store`: any `Arc` of a store with the cluster role (`Arc<dyn Store>`,
    /// `Arc<dyn ClusterStore>`, …), or anything implementing [`DirectoryVersion`].
    pub fn new(store: impl DirectoryVersion, caches: Vec<Arc<dyn Cached>>) -> Self {
        Self::from_source(Arc::new(store), caches)
    }

    pub(crate) fn from_source(
        store: Arc<dyn DirectoryVersion>,
        caches: Vec<Arc<dyn Cached>>,
    ) -> Self {
        Self {
            store,
            caches,
            seen: None,
        }
    }

    /// One poll: reads the version and reloads every cache if it moved. Returns
    /// whether a reload happened. The version is read *before* reloading, so a change
    /// committed during the reload moves it again and is picked up next time.
    pub async fn poll(&mut self) -> Result<bool, StoreError> {
        let version = self.store.directory_version().await?;
        if self.seen == Some(version) {
            return Ok(false);
        }
        for cache in &self.caches {
            cache.reload().await.inspect_err(|e| {
                tracing::debug!(cache = cache.name(), error = %e, "cache reload failed; will retry");
            })?;
        }
        self.seen = Some(version);
        Ok(true)
    }

    /// Polls every `interval` until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.poll().await {
                Ok(true) => tracing::debug!("shared state changed; caches reloaded"),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "directory version poll failed; will retry"),
            }
        }
    }

    /// Runs [`Self::run`] on its own task.
    pub fn spawn(self, interval: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(interval, shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::Generations;

    #[test]
    fn an_older_load_never_overwrites_a_newer_one() {
        let g = Generations::default();
        let slow = g.begin();
        let fast = g.begin();
        let mut value = 0;
        assert!(g.install(fast, || value = 2));
        assert!(!g.install(slow, || value = 1));
        assert_eq!(value, 2);
        let later = g.begin();
        assert!(g.install(later, || value = 3));
        assert_eq!(value, 3);
    }
}
