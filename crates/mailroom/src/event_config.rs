//! The `[events]` and `[webhooks]` configuration sections: event retention and the
//! webhook dispatcher's timeout, retry schedule, per-webhook concurrency, SSRF
//! switch and host allowlist. Declared here, included in `config::Config`.

use anyhow::{Result, bail};
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Events older than this many days are deleted (never ones a webhook still owes).
    pub retention_days: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Run the dispatcher (off: deliveries accumulate as pending rows).
    pub enabled: bool,
    /// Allow webhook URLs on loopback/private/link-local addresses (tests, labs).
    pub allow_private: bool,
    /// When not empty, the only hosts webhook URLs may name (exact host names or IP
    /// literals, checked before DNS, when a webhook is set and at every send).
    pub allowed_hosts: Vec<String>,
    /// Per request, connect included.
    pub timeout_secs: u64,
    /// Delay after the 1st, 2nd, … failed attempt; the last one repeats.
    pub retry_schedule_secs: Vec<u64>,
    /// Then a delivery that never succeeded is marked `failed`.
    pub max_retry_secs: u64,
    /// Requests in flight per webhook.
    pub concurrency_per_webhook: usize,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private: false,
            allowed_hosts: Vec::new(),
            timeout_secs: 10,
            retry_schedule_secs: vec![10, 30, 60, 300, 900, 1800, 3600],
            max_retry_secs: 24 * 3600,
            concurrency_per_webhook: 4,
        }
    }
}

pub fn validate(events: &EventsSection, w: &WebhooksSection) -> Result<()> {
    let checks: [(bool, &str, &str); 5] = [
        (
            events.retention_days == 0 || events.retention_days > 36_500,
            "events.retention_days",
            "must be from 1 to 36500",
        ),
        (
            w.timeout_secs == 0 || w.timeout_secs > 300,
            "webhooks.timeout_secs",
            "must be from 1 to 300",
        ),
        (
            w.retry_schedule_secs.is_empty() || w.retry_schedule_secs.contains(&0),
            "webhooks.retry_schedule_secs",
            "must list at least one delay, each at least 1",
        ),
        (
            w.max_retry_secs == 0,
            "webhooks.max_retry_secs",
            "must be at least 1",
        ),
        (
            w.concurrency_per_webhook == 0 || w.concurrency_per_webhook > 256,
            "webhooks.concurrency_per_webhook",
            "must be from 1 to 256",
        ),
    ];
    for (bad, key, why) in checks {
        if bad {
            bail!("invalid value for key {key}: {why}");
        }
    }
    Ok(())
}

impl WebhooksSection {
    pub fn dispatcher_config(&self) -> mailroom_events::DispatcherConfig {
        mailroom_events::DispatcherConfig {
            retry: mailroom_events::RetryPolicy {
                schedule: self
                    .retry_schedule_secs
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
                give_up_after: Duration::from_secs(self.max_retry_secs),
            },
            timeout: Duration::from_secs(self.timeout_secs),
            concurrency_per_webhook: self.concurrency_per_webhook,
            ..mailroom_events::DispatcherConfig::default()
        }
    }
}

impl EventsSection {
    pub fn retention(&self) -> mailroom_events::retention::RetentionConfig {
        mailroom_events::retention::RetentionConfig {
            keep: Duration::from_secs(self.retention_days.saturating_mul(86_400)),
            interval: Duration::from_secs(3600),
        }
    }
}
