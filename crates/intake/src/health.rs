//! Sender health in action: reads a tenant's counts over the rolling window, assesses
//! them against the thresholds (`mailroom_policy::health`), and on a crossing writes
//! the new level with its event — `sender_health.warning`, or `sender_health.paused`
//! together with the tenant's status `paused` — then reloads the policy so the pause
//! refuses mail at once. Checked after every recorded bounce or complaint (at most
//! once per `DEBOUNCE` per tenant) and periodically for every tenant (bounces recorded
//! at delivery time are seen there).
//!
//! Resuming: an operator sets the tenant `active` again; the next check sees a
//! tenant that is active but recorded as paused, and restarts its window at that
//! moment, so the old sample does not pause it again at once.

use mailroom_model::{
    EventType, HealthCountsDetail, HealthThresholdsDetail, SenderHealthDetail, TenantId,
    TenantStatus, now_millis,
};
use mailroom_policy::Policy;
use mailroom_policy::health::{HealthReader, HealthThresholds, HealthView, assess, stored, view};
use mailroom_store::{
    DirectoryStore, HealthChange, HealthLevel, IntakeStore, StoreError, TenantRecord,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Checks of one tenant triggered by intake are at most this frequent.
const DEBOUNCE: Duration = Duration::from_secs(2);
/// Tenants remembered for the debounce before the map is cleared.
const MAX_REMEMBERED: usize = 10_000;

/// What the monitor needs of the store: the health reads ([`HealthReader`]), writing
/// a new level (`IntakeStore::set_sender_health`) and the tenants (two
/// `DirectoryStore` reads). Any `Arc` of a store with the intake and directory roles
/// is one (`Arc<dyn Store>` included); a test double may implement these alone.
#[async_trait::async_trait]
pub trait HealthStore: HealthReader + 'static {
    async fn set_sender_health(&self, change: HealthChange) -> Result<bool, StoreError>;

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;
}

#[async_trait::async_trait]
impl<T> HealthStore for Arc<T>
where
    T: IntakeStore + DirectoryStore + ?Sized,
{
    async fn set_sender_health(&self, change: HealthChange) -> Result<bool, StoreError> {
        IntakeStore::set_sender_health(&**self, change).await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        DirectoryStore::get_tenant(&**self, id).await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        DirectoryStore::list_tenants(&**self).await
    }
}

pub struct HealthMonitor {
    store: Arc<dyn HealthStore>,
    policy: Arc<Policy>,
    enabled: bool,
    last: Mutex<HashMap<TenantId, Instant>>,
}

impl HealthMonitor {
    /// `store`: any `Arc` of a store with the intake and directory roles, or anything
    /// implementing [`HealthStore`].
    pub fn new(store: impl HealthStore, policy: Arc<Policy>, enabled: bool) -> Self {
        Self {
            store: Arc::new(store),
            policy,
            enabled,
            last: Mutex::new(HashMap::new()),
        }
    }

    fn thresholds(&self) -> HealthThresholds {
        self.policy.health_thresholds()
    }

    /// The current rates and level, without acting on them.
    pub async fn view(&self, tenant: &TenantId) -> Result<HealthView, StoreError> {
        view(self.store.as_ref(), self.thresholds(), tenant).await
    }

    /// A check after a recorded bounce or complaint (debounced per tenant).
    pub async fn check(&self, tenant: &TenantId) -> Result<(), StoreError> {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last
                .get(tenant)
                .is_some_and(|t| now.duration_since(*t) < DEBOUNCE)
            {
                return Ok(());
            }
            if last.len() >= MAX_REMEMBERED {
                last.clear();
            }
            last.insert(tenant.clone(), now);
        }
        self.check_now(tenant).await.map(|_| ())
    }

    /// Assesses the tenant and acts on a crossing; returns the level it is at now.
    pub async fn check_now(&self, tenant: &TenantId) -> Result<HealthLevel, StoreError> {
        let Some(record) = self.store.get_tenant(tenant).await? else {
            return Ok(HealthLevel::Ok);
        };
        let now = now_millis();
        let mut health = stored(self.store.as_ref(), tenant).await?;
        if health.level == HealthLevel::Paused && record.status == TenantStatus::Active {
            // Resumed by an operator: count afresh from now.
            self.store
                .set_sender_health(change(tenant, HealthLevel::Ok, now, now, false, None))
                .await?;
            health.level = HealthLevel::Ok;
            health.window_start = now;
        }
        if !self.enabled || record.status != TenantStatus::Active {
            return Ok(health.level);
        }
        let t = self.thresholds();
        let a = assess(self.store.as_ref(), t, tenant, health.window_start, now).await?;
        let detail = || SenderHealthDetail {
            bounce_rate: a.bounce_rate,
            complaint_rate: a.complaint_rate,
            counts: HealthCountsDetail {
                bounced_at_delivery: a.counts.bounced_at_delivery,
                complaints: a.counts.complaints,
                delivered: a.counts.delivered,
                hard_bounces: a.counts.hard_bounces,
            },
            sent: a.counts.sent(),
            thresholds: HealthThresholdsDetail {
                bounce_pause: t.bounce_pause,
                bounce_warn: t.bounce_warn,
                complaint_pause: t.complaint_pause,
                complaint_warn: t.complaint_warn,
                min_sample: t.min_sample,
                window_secs: t.window_secs,
            },
        };
        let next = match (health.level, a.level) {
            (HealthLevel::Paused, _) => return Ok(HealthLevel::Paused),
            (_, HealthLevel::Paused) => Some(change(
                tenant,
                HealthLevel::Paused,
                health.window_start,
                now,
                true,
                Some((EventType::SenderHealthPaused, detail())),
            )),
            (HealthLevel::Ok, HealthLevel::Warning) => Some(change(
                tenant,
                HealthLevel::Warning,
                health.window_start,
                now,
                false,
                Some((EventType::SenderHealthWarning, detail())),
            )),
            (HealthLevel::Warning, HealthLevel::Ok) => Some(change(
                tenant,
                HealthLevel::Ok,
                health.window_start,
                now,
                false,
                None,
            )),
            _ => None,
        };
        let Some(next) = next else {
            return Ok(health.level);
        };
        let level = next.level;
        let paused = self.store.set_sender_health(next).await?;
        if paused {
            tracing::warn!(
                tenant = %tenant, bounce_rate = a.bounce_rate, complaint_rate = a.complaint_rate,
                "tenant paused: sender health over the pause threshold"
            );
            self.policy.reload().await?;
        } else if level == HealthLevel::Warning {
            tracing::warn!(
                tenant = %tenant, bounce_rate = a.bounce_rate, complaint_rate = a.complaint_rate,
                "sender health warning"
            );
        }
        Ok(level)
    }

    /// Checks every tenant.
    pub async fn check_all(&self) -> Result<(), StoreError> {
        for t in self.store.list_tenants().await? {
            if let Err(e) = self.check_now(&t.id).await {
                tracing::warn!(tenant = %t.id, error = %e, "sender health check failed");
            }
        }
        Ok(())
    }

    /// Checks every tenant every `interval` until shutdown.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.check_all().await {
                tracing::warn!(error = %e, "sender health round failed");
            }
        }
    }
}

fn change(
    tenant: &TenantId,
    level: HealthLevel,
    window_start: i64,
    at: i64,
    pause: bool,
    event: Option<(EventType, SenderHealthDetail)>,
) -> HealthChange {
    HealthChange {
        tenant_id: tenant.clone(),
        level,
        window_start,
        at,
        pause,
        event,
    }
}
