//! The dispatcher: follows the events table from its durable cursor, fans each event
//! out into pending delivery rows (same transaction as the cursor move, so a crash
//! neither loses nor doubles a fan-out), and keeps one worker task per enabled
//! webhook. It never touches ingest or delivery: it only reads what they committed,
//! through the events role of the store (`EventStore`) and nothing else.

use crate::worker::Worker;
use crate::{DispatcherConfig, WebhookClient};
use mailroom_model::{WebhookId, now_millis};
use mailroom_secrets::Keyring;
use mailroom_store::EventStore;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Dispatcher {
    store: Arc<dyn EventStore>,
    client: WebhookClient,
    cfg: Arc<DispatcherConfig>,
    keyring: Arc<Keyring>,
    shutdown: CancellationToken,
}

struct Running {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    /// `store`: anything with the events role (`Arc<dyn Store>` upcasts to it).
    pub fn new(
        store: Arc<dyn EventStore>,
        client: WebhookClient,
        cfg: DispatcherConfig,
        keyring: Arc<Keyring>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            client,
            cfg: Arc::new(cfg),
            keyring,
            shutdown,
        }
    }

    /// Runs until shutdown, then waits (bounded) for the workers.
    pub async fn run(self) {
        let mut workers: HashMap<WebhookId, Running> = HashMap::new();
        loop {
            let mut busy = false;
            match self
                .store
                .fan_out_events(self.cfg.fan_out_batch, now_millis())
                .await
            {
                Ok(f) => {
                    busy = f.events as usize >= self.cfg.fan_out_batch;
                    if f.deliveries > 0 {
                        for w in workers.values() {
                            w.wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook fan-out failed; retrying"),
            }
            self.supervise(&mut workers).await;
            if busy {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        for (_, w) in workers {
            let _ = w.task.await;
        }
    }

    /// Starts a worker for each enabled webhook that has none (or whose worker ended).
    async fn supervise(&self, workers: &mut HashMap<WebhookId, Running>) {
        workers.retain(|_, w| !w.task.is_finished());
        let webhooks = match self.store.list_webhooks(None).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list webhooks");
                return;
            }
        };
        for w in webhooks.into_iter().filter(|w| w.enabled) {
            if workers.contains_key(&w.id) {
                continue;
            }
            let wake = Arc::new(Notify::new());
            let worker = Worker {
                store: self.store.clone(),
                client: self.client.clone(),
                cfg: self.cfg.clone(),
                keyring: self.keyring.clone(),
                id: w.id.clone(),
                wake: wake.clone(),
                shutdown: self.shutdown.clone(),
            };
            let task = tokio::spawn(worker.run());
            workers.insert(w.id, Running { wake, task });
        }
    }
}
