//! One webhook's worker: claims that webhook's due deliveries (at most
//! `concurrency` in flight), posts each, and records delivered / retry later /
//! failed. Workers share nothing but the store and the HTTP client, so a slow or dead
//! endpoint only ever holds up its own deliveries; the rest wait as pending rows.

use crate::{DispatcherConfig, WebhookClient, payload};
use mailroom_model::{WebhookId, now_millis};
use mailroom_secrets::{Keyring, webhook_context};
use mailroom_store::{DeliveryState, DeliveryUpdate, DueDelivery, EventStore, WebhookRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) struct Worker {
    pub store: Arc<dyn EventStore>,
    pub client: WebhookClient,
    pub cfg: Arc<DispatcherConfig>,
    /// Opens the webhook's sealed secret (the KEK never leaves it).
    pub keyring: Arc<Keyring>,
    pub id: WebhookId,
    /// Rung by the dispatcher when new deliveries were fanned out.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

impl Worker {
    /// Runs until the webhook is removed or disabled, or shutdown.
    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency_per_webhook.max(1)));
        let mut in_flight = JoinSet::new();
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let webhook = match self.store.get_webhook(&self.id).await {
                Ok(Some(w)) if w.enabled => Some(Arc::new(w)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(webhook = %self.id, error = %e, "webhook worker cannot read its webhook");
                    self.pause(&mut in_flight).await;
                    continue;
                }
            };
            let Some(webhook) = webhook else { break };
            let context = webhook_context(webhook.id.as_str());
            let secret = match self.keyring.open_str(&context, &webhook.secret) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::error!(webhook = %self.id, error = %e, "webhook secret does not open with the configured key (secrets.key_file / secrets.key); its deliveries wait");
                    self.pause(&mut in_flight).await;
                    continue;
                }
            };
            let free = slots.available_permits();
            if free > 0 {
                let now = now_millis();
                let lease = now + lease_millis(self.cfg.timeout);
                match self
                    .store
                    .claim_deliveries(&self.id, now, lease, free)
                    .await
                {
                    Ok(due) => {
                        for d in due {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let attempt = self.attempt(webhook.clone(), secret.clone(), d);
                            in_flight.spawn(async move {
                                attempt.await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(webhook = %self.id, error = %e, "cannot claim webhook deliveries");
                    }
                }
            }
            self.pause(&mut in_flight).await;
        }
        // Attempts in flight finish (bounded by the request timeout); unfinished
        // claims come due again when their lease ends.
        let grace = self.cfg.timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    }

    /// Waits for a finished attempt, new work, the poll interval or shutdown.
    async fn pause(&self, in_flight: &mut JoinSet<()>) {
        tokio::select! {
            _ = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    fn attempt(
        &self,
        webhook: Arc<WebhookRecord>,
        secret: Arc<String>,
        d: DueDelivery,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let store = self.store.clone();
        let client = self.client.clone();
        let cfg = self.cfg.clone();
        async move {
            let body = payload::body(&[&d.event]);
            let result = client
                .post(&webhook.url, &secret, d.event.event.id.as_str(), body)
                .await;
            let now = now_millis();
            let attempts = d.attempts + 1;
            let (state, next) = if result.delivered() {
                (DeliveryState::Delivered, None)
            } else {
                match cfg.retry.next_attempt(d.created_at, now, attempts) {
                    Some(at) => (DeliveryState::Pending, Some(at)),
                    None => (DeliveryState::Failed, None),
                }
            };
            tracing::debug!(
                webhook = %webhook.id, event_id = %d.event.event.id, attempt = attempts,
                status = result.status, error = result.error.as_deref(), state = %state,
                "webhook attempt"
            );
            let outcome = match state {
                DeliveryState::Delivered => "delivered",
                DeliveryState::Pending => "retry",
                DeliveryState::Failed => "failed",
            };
            metrics::counter!("mailroom_webhook_attempts_total", "result" => outcome).increment(1);
            if state == DeliveryState::Failed {
                tracing::warn!(webhook = %webhook.id, event_id = %d.event.event.id,
                    attempts, error = result.error.as_deref(), "webhook delivery failed for good");
            }
            let update = DeliveryUpdate {
                webhook_id: webhook.id.clone(),
                seq: d.seq,
                state,
                attempts,
                next_attempt_at: next,
                last_status: result.status,
                last_error: result.error,
                at: now,
            };
            if let Err(e) = store.record_delivery(update).await {
                // The claim's lease runs out and the event is sent again (at least once).
                tracing::warn!(webhook = %webhook.id, error = %e, "cannot record webhook attempt");
            }
        }
    }
}

/// How long a claimed delivery stays claimed: the request timeout and a margin.
fn lease_millis(timeout: Duration) -> i64 {
    i64::try_from((timeout + Duration::from_secs(30)).as_millis()).unwrap_or(i64::MAX / 2)
}
