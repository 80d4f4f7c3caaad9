//! The delivery engine's shaping state handed to the API (`GET
//! /v1/queue/destinations`): the API crate knows no engine, so the binary maps the
//! shaper's snapshot into the API's view types and installs it as an extension.

use mailroom_api::{LimitsLive, ShapingView, SiteLive, WarmupLive};
use mailroom_delivery::Engine;
use mailroom_delivery::shaper::Shaper;
use std::sync::Arc;

pub struct View {
    pub engine: Arc<Engine>,
    pub shaper: Arc<Shaper>,
}

#[async_trait::async_trait]
impl ShapingView for View {
    async fn sites(&self) -> Vec<SiteLive> {
        self.shaper
            .snapshot()
            .await
            .into_iter()
            .map(|s| SiteLive {
                key: s.key,
                provider: s.provider,
                destinations: s.destinations,
                connections_in_use: s.connections_in_use,
                connections_by_address: s.by_address.into_iter().collect(),
                limits: LimitsLive {
                    connections: s.limits.connections,
                    window: s.window,
                    messages_per_connection: s.limits.messages_per_connection,
                    messages_per_minute: s.limits.messages_per_minute,
                    connections_per_minute: s.connections_per_minute,
                    tls: s.tls.to_string(),
                    suspended_until: s.limits.suspended_until,
                },
            })
            .collect()
    }

    async fn warmup(&self) -> Vec<WarmupLive> {
        self.shaper
            .warmup_snapshot()
            .await
            .into_iter()
            .map(|w| WarmupLive {
                address: w.address,
                pool: w.pool,
                provider: w.provider,
                day: w.day,
                allowance: w.allowance,
                sent_today: w.sent_today,
            })
            .collect()
    }

    fn destination_of(&self, domain: &str) -> String {
        self.engine.destination_of(domain)
    }
}
