//! Event retention: deletes events older than `events.retention_days`, in small
//! batches, except those a webhook still has to deliver (the store checks). Needs only
//! the events role (`EventStore`).

use mailroom_model::now_millis;
use mailroom_store::EventStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 1000;

#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Events older than this are deleted.
    pub keep: Duration,
    /// Time between prune rounds (the first runs soon after start).
    pub interval: Duration,
}

/// Deletes everything prunable now; returns how many events were deleted.
pub async fn prune_once(
    store: &dyn EventStore,
    keep: Duration,
) -> Result<u64, mailroom_store::StoreError> {
    let before = now_millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
    let mut total = 0;
    loop {
        let n = store.prune_events(before, BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        // Let the writers in between batches.
        tokio::task::yield_now().await;
    }
}

/// Runs prune rounds until shutdown.
pub async fn run(store: Arc<dyn EventStore>, cfg: RetentionConfig, shutdown: CancellationToken) {
    let mut wait = Duration::from_secs(5).min(cfg.interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = cfg.interval;
        match prune_once(store.as_ref(), cfg.keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned old events"),
            Err(e) => tracing::warn!(error = %e, "event pruning failed"),
        }
    }
}
