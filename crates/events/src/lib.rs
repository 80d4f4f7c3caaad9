//! Events out of Mailroom: the webhook dispatcher (durable, signed, retried, at least
//! once, deduplicable by `Mailroom-Event-Id`), the SSRF guard for webhook URLs, the
//! signature scheme and event retention. It reads only what ingest and delivery
//! committed to the store, so it can never slow them down.

mod dispatcher;
pub mod payload;
pub mod retention;
pub mod retry;
mod sender;
pub mod signature;
pub mod ssrf;
mod worker;

pub use dispatcher::Dispatcher;
pub use retry::RetryPolicy;
pub use sender::{AttemptResult, WebhookClient};

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    pub retry: RetryPolicy,
    /// Per request (connect included); then the attempt counts as failed.
    pub timeout: Duration,
    /// Attempts in flight per webhook.
    pub concurrency_per_webhook: usize,
    /// How often idle workers and the fan-out look for new work.
    pub poll_interval: Duration,
    /// Events fanned out per transaction.
    pub fan_out_batch: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            concurrency_per_webhook: 4,
            poll_interval: Duration::from_millis(500),
            fan_out_batch: 500,
        }
    }
}
