//! Sender health: a tenant's rolling hard-bounce and complaint rates against the
//! configured thresholds (SES-like defaults: warn at 5 % bounces / 0.1 % complaints,
//! pause at 10 % / 0.5 %). `assess` is pure: counts in, an assessment out; `view`
//! reads a tenant's counts and stored level for display, through [`HealthReader`]
//! (two methods of the intake role). Acting on the level (events,
//! the pause) is the intake crate's `health` monitor.

use mailroom_model::{TenantId, now_millis};
use mailroom_store::{HealthCounts, HealthLevel, IntakeStore, SenderHealth, StoreError};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HealthThresholds {
    /// Hard bounces / recipients with a final delivery outcome.
    pub bounce_warn: f64,
    pub bounce_pause: f64,
    /// Complaints / delivered recipients.
    pub complaint_warn: f64,
    pub complaint_pause: f64,
    /// Recipients with a final outcome needed in the window before anything is done,
    /// so one bounce out of two messages pauses nobody.
    pub min_sample: i64,
    /// Length of the rolling window, in seconds.
    pub window_secs: u64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            bounce_warn: 0.05,
            bounce_pause: 0.10,
            complaint_warn: 0.001,
            complaint_pause: 0.005,
            min_sample: 100,
            window_secs: 86_400,
        }
    }
}

/// The rates and the level they call for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HealthAssessment {
    pub counts: HealthCounts,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
    /// Whether the window holds enough recipients for the level to count.
    pub enough_sample: bool,
    /// `Ok` whenever the sample is too small.
    pub level: HealthLevel,
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part.max(0) as f64 / whole as f64
    }
}

impl HealthThresholds {
    pub fn assess(&self, counts: HealthCounts) -> HealthAssessment {
        let bounce_rate = ratio(counts.hard_bounces, counts.sent());
        let complaint_rate = ratio(counts.complaints, counts.delivered);
        let enough_sample = counts.sent() >= self.min_sample.max(1);
        let level = if !enough_sample {
            HealthLevel::Ok
        } else if bounce_rate >= self.bounce_pause || complaint_rate >= self.complaint_pause {
            HealthLevel::Paused
        } else if bounce_rate >= self.bounce_warn || complaint_rate >= self.complaint_warn {
            HealthLevel::Warning
        } else {
            HealthLevel::Ok
        };
        HealthAssessment {
            counts,
            bounce_rate,
            complaint_rate,
            enough_sample,
            level,
        }
    }
}

/// A tenant's health as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct HealthView {
    /// The level last acted on (`paused` stays until the next check after a resume).
    pub level: HealthLevel,
    /// Outcomes before this (ms) are not counted.
    pub window_start: i64,
    #[serde(flatten)]
    pub assessment: HealthAssessment,
    pub thresholds: HealthThresholds,
}

/// What reading a tenant's health needs of the store (`IntakeStore`'s methods of the
/// same name). Any `Arc` of a store with the intake role is one.
#[async_trait::async_trait]
pub trait HealthReader: Send + Sync {
    async fn get_sender_health(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError>;

    async fn health_counts(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<HealthCounts, StoreError>;
}

#[async_trait::async_trait]
impl<T> HealthReader for Arc<T>
where
    T: IntakeStore + ?Sized,
{
    async fn get_sender_health(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError> {
        IntakeStore::get_sender_health(&**self, tenant).await
    }

    async fn health_counts(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<HealthCounts, StoreError> {
        IntakeStore::health_counts(&**self, tenant, since).await
    }
}

/// The stored level, or `ok` with the window open since ever.
pub async fn stored(
    store: &dyn HealthReader,
    tenant: &TenantId,
) -> Result<SenderHealth, StoreError> {
    Ok(store
        .get_sender_health(tenant)
        .await?
        .unwrap_or(SenderHealth {
            tenant_id: tenant.clone(),
            level: HealthLevel::Ok,
            window_start: 0,
            updated_at: 0,
        }))
}

/// Counts the tenant's outcomes since the later of the window's start and
/// `window_start`, and assesses them.
pub async fn assess(
    store: &dyn HealthReader,
    t: HealthThresholds,
    tenant: &TenantId,
    window_start: i64,
    now: i64,
) -> Result<HealthAssessment, StoreError> {
    let window_ms = i64::try_from(t.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window_ms).max(window_start);
    Ok(t.assess(store.health_counts(tenant, since).await?))
}

/// The current rates and stored level of a tenant.
pub async fn view(
    store: &dyn HealthReader,
    t: HealthThresholds,
    tenant: &TenantId,
) -> Result<HealthView, StoreError> {
    let health = stored(store, tenant).await?;
    let assessment = assess(store, t, tenant, health.window_start, now_millis()).await?;
    Ok(HealthView {
        level: health.level,
        window_start: health.window_start,
        assessment,
        thresholds: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(delivered: i64, bounced: i64, hard: i64, complaints: i64) -> HealthCounts {
        HealthCounts {
            delivered,
            bounced_at_delivery: bounced,
            hard_bounces: hard,
            complaints,
        }
    }

    #[test]
    fn levels_follow_the_thresholds_above_the_minimum_sample() {
        let t = HealthThresholds {
            min_sample: 10,
            ..Default::default()
        };
        let cases = [
            // (delivered, bounced at delivery, hard, complaints, level)
            (1, 1, 1, 0, HealthLevel::Ok), // 50 %, but 2 < min sample
            (100, 0, 0, 0, HealthLevel::Ok),
            (96, 4, 4, 0, HealthLevel::Ok),
            (95, 5, 5, 0, HealthLevel::Warning),
            (90, 10, 10, 0, HealthLevel::Paused),
            // async hard bounces count, the recipients were delivered first
            (100, 0, 10, 0, HealthLevel::Paused),
            (1000, 0, 0, 1, HealthLevel::Warning),
            (1000, 0, 0, 5, HealthLevel::Paused),
            (1000, 0, 0, 0, HealthLevel::Ok),
        ];
        for (d, b, h, c, want) in cases {
            let a = t.assess(counts(d, b, h, c));
            assert_eq!(a.level, want, "{d} {b} {h} {c}: {a:?}");
        }
        assert_eq!(t.assess(HealthCounts::default()).bounce_rate, 0.0);
    }
}
