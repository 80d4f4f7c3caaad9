//! What keeps this node's in-memory state in step with other nodes sharing the store:
//! [`spawn_refreshers`] starts the directory-version refresher over every cache the
//! API serves from (policy directory, DKIM signing keys, the operator token digest)
//! and the daily-quota sync. One call in `serve`, after the `AppState` is built.

use crate::AppState;
use crate::auth::OperatorToken;
use mailroom_policy::{Cached, DEFAULT_QUOTA_SYNC_INTERVAL, DEFAULT_REFRESH_INTERVAL, Refresher};
use mailroom_store::{DynStore, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The operator token's digest as a cache: a rotation through another node replaces
/// it here too (the old token stops working on every node).
pub struct OperatorTokenCache {
    pub token: Arc<OperatorToken>,
    pub store: DynStore,
}

#[mailroom_policy::async_trait]
impl Cached for OperatorTokenCache {
    fn name(&self) -> &'static str {
        "operator token"
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let ticket = self.token.begin();
        if let Some(hash) = self.store.operator_token_hash().await? {
            self.token.set_from(ticket, hash);
        }
        Ok(())
    }
}

/// How often the refreshers run.
#[derive(Clone, Copy, Debug)]
pub struct RefreshIntervals {
    /// Directory-version polls (a change through another node is seen within this
    /// plus one reload).
    pub directory: Duration,
    /// Daily-quota syncs (other nodes' traffic during one interval can be
    /// over-accepted; see `mailroom_policy::quota`).
    pub quotas: Duration,
}

impl Default for RefreshIntervals {
    fn default() -> Self {
        Self {
            directory: DEFAULT_REFRESH_INTERVAL,
            quotas: DEFAULT_QUOTA_SYNC_INTERVAL,
        }
    }
}

/// The refresher over the caches of `state` (not started).
pub fn refresher(state: &AppState) -> Refresher {
    let mut caches = state.ingest.caches();
    caches.push(Arc::new(OperatorTokenCache {
        token: state.operator_token_hash.clone(),
        store: state.store.clone(),
    }));
    Refresher::new(state.store.clone(), caches)
}

/// Starts the directory refresher and the quota sync; the task ends at `shutdown`.
pub fn spawn_refreshers(
    state: &AppState,
    intervals: RefreshIntervals,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let directory = refresher(state).spawn(intervals.directory, shutdown.clone());
    let quotas = state
        .policy
        .spawn_quota_sync(intervals.quotas, shutdown.clone());
    tokio::spawn(async move {
        let _ = tokio::join!(directory, quotas);
    })
}
