//! What the shaper tells people about what it did on its own: every automatic
//! action (a response rule's throttle, suspension or bounce, the concurrency window
//! falling, warm-up overflowing to a warmed address or capping a pool) becomes a
//! `shaping.action` event (tenant-level when one tenant's traffic was concerned,
//! else operator-only), a log line, and a metric per provider or egress address.
//! Writing the event must not stop delivery: a failure is logged and dropped.

use crate::shaper::{Shaper, SiteState};
use mailroom_model::{ShapingDetail, ShapingWarmupDetail, ShapingWindowDetail, TenantId};
use std::sync::Arc;

impl Shaper {
    /// Records one automatic action as an event (the caller logs it).
    pub(crate) async fn announce(&self, tenant: Option<&str>, detail: ShapingDetail) {
        let tenant = tenant.and_then(TenantId::parse);
        if let Err(e) = self
            .store
            .record_shaping_event(tenant.as_ref(), detail)
            .await
        {
            tracing::warn!(error = %e, "recording a shaping event failed");
        }
    }

    /// The site's connection window moved from `before` to `after` (feedback): a fall
    /// is an automatic action (event, log line); the window is a gauge per site.
    pub(crate) async fn window_changed(
        &self,
        state: &Arc<SiteState>,
        before: usize,
        after: usize,
        cause: &str,
    ) {
        let provider = state.site.provider.clone().unwrap_or_default();
        metrics::gauge!("mailroom_shaping_window", "site" => state.site.key.clone(),
            "provider" => provider.clone())
        .set(after as f64);
        if after >= before {
            return;
        }
        metrics::counter!("mailroom_shaping_actions_total", "provider" => provider.clone(),
            "action" => "concurrency_drop")
        .increment(1);
        tracing::warn!(
            site = %state.site.key,
            provider,
            from = before,
            to = after,
            cause,
            "shaping: connection window lowered"
        );
        self.announce(
            None,
            ShapingDetail::Window(ShapingWindowDetail {
                action: "concurrency_drop".into(),
                cause: cause.to_string(),
                kind: "concurrency_drop".into(),
                previous: before as u64,
                provider: state.site.provider.clone(),
                site: state.site.key.clone(),
                value: after as u64,
            }),
        )
        .await;
    }

    /// Warm-up moved messages off a capped warming address (`warmup_overflow`,
    /// operator-only: the address is the pool's, not one tenant's) or found every
    /// address of the pool capped, deferring `tenant`'s mail (`warmup_capped`,
    /// tenant-level): once per kind, address, provider, tenant and day.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn warmup_event(
        &self,
        kind: &'static str,
        tenant: Option<&str>,
        pool: &str,
        address: &str,
        provider: &str,
        day: i64,
    ) {
        let key = (
            kind,
            format!("{address}|{}", tenant.unwrap_or("")),
            provider.to_string(),
            day,
        );
        if !self.announced.lock().expect("announced").insert(key) {
            return;
        }
        metrics::counter!("mailroom_shaping_actions_total", "provider" => provider.to_string(),
            "action" => kind)
        .increment(1);
        metrics::counter!("mailroom_egress_warmup_events_total", "address" => address.to_string(),
            "provider" => provider.to_string(), "kind" => kind)
        .increment(1);
        tracing::warn!(
            pool,
            address,
            provider,
            tenant = tenant.unwrap_or(""),
            kind,
            "shaping: warm-up cap reached for today"
        );
        self.announce(
            tenant,
            ShapingDetail::Warmup(ShapingWarmupDetail {
                action: kind.into(),
                address: address.into(),
                day,
                kind: kind.into(),
                pool: pool.into(),
                provider: provider.into(),
            }),
        )
        .await;
    }
}
