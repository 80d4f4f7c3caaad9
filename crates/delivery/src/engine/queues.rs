//! Per-destination ready queues and connection slots: each destination (its key is
//! `Engine::destination_of`'s) has a bounded queue of work items and a count of
//! connection workers; a worker starts only while this node's share of the
//! per-destination and global connection limits (divided among the live nodes) and
//! the shaper's per-site share allow. A full queue refuses the work, which then stays
//! in storage (backpressure). What is claimed and when is the scheduler's business
//! (`engine`); what a worker does with a connection is `worker`'s.

use super::{Engine, Work};
use crate::worker;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Mutex, mpsc};

/// One destination's bounded queue and its running workers.
pub(crate) struct Destination {
    pub key: String,
    pub tx: mpsc::Sender<Work>,
    pub rx: Mutex<mpsc::Receiver<Work>>,
    /// Connection workers running for this destination.
    pub active: AtomicUsize,
}

impl Engine {
    /// This node's share of a cluster-wide connection limit: at least one.
    fn share(&self, limit: usize) -> usize {
        let nodes = self
            .live_nodes
            .lock()
            .expect("live nodes lock")
            .load(Ordering::Relaxed)
            .max(1);
        (limit / nodes).max(1)
    }

    /// Queues one work item; gives it back when its destination's queue is full.
    pub(super) fn dispatch(self: &Arc<Self>, work: Work) -> Result<(), Work> {
        let dest = self.destination(&self.destination_of(&work.domain));
        match dest.tx.try_send(work) {
            Ok(()) => {
                self.maybe_spawn(&dest);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w)) => {
                Err(w)
            }
        }
    }

    /// The destination `key`, created (with an empty queue) on first use.
    fn destination(&self, key: &str) -> Arc<Destination> {
        let mut map = self.destinations.lock().expect("destinations lock");
        map.entry(key.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(self.cfg.destination_queue);
                Arc::new(Destination {
                    key: key.to_string(),
                    tx,
                    rx: Mutex::new(rx),
                    active: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Starts another connection worker if work is waiting and this node's shares of
    /// the per-destination and global limits allow.
    fn maybe_spawn(self: &Arc<Self>, dest: &Arc<Destination>) {
        let waiting = dest.tx.max_capacity() - dest.tx.capacity();
        let active = dest.active.load(Ordering::Acquire);
        if active > 0 && waiting <= active {
            return;
        }
        if !take_slot(
            &dest.active,
            self.share(self.cfg.per_destination_connections),
        ) {
            return;
        }
        if !take_slot(&self.connections, self.share(self.cfg.max_connections)) {
            dest.active.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        // The site's share (all domains at one provider together), once it is known.
        let site = match self.shaper.get().and_then(|s| s.take_connection(&dest.key)) {
            Some((_, false)) => {
                dest.active.fetch_sub(1, Ordering::AcqRel);
                self.connections.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            Some((site, true)) => Some(site),
            None => None,
        };
        let engine = self.clone();
        let dest = dest.clone();
        self.tracker.spawn(async move {
            worker::run(&engine, &dest).await;
            if let Some(site) = site {
                site.active.fetch_sub(1, Ordering::AcqRel);
            }
            dest.active.fetch_sub(1, Ordering::AcqRel);
            engine.connections.fetch_sub(1, Ordering::AcqRel);
            // Its connection slot is free now: work waiting anywhere (here, or at a
            // destination that found no free slot) may start.
            if !engine.shutdown.is_cancelled() {
                engine.spawn_waiting();
            }
        });
    }

    /// The destinations known now (the lock is not held while they are worked on).
    fn destination_list(&self) -> Vec<Arc<Destination>> {
        self.destinations
            .lock()
            .expect("destinations lock")
            .values()
            .cloned()
            .collect()
    }

    /// Starts workers for every destination that has work waiting.
    fn spawn_waiting(self: &Arc<Self>) {
        let dests = self.destination_list();
        for d in dests {
            if d.tx.max_capacity() > d.tx.capacity() {
                self.maybe_spawn(&d);
            }
        }
    }

    pub(super) async fn release_queued(&self) {
        let dests = self.destination_list();
        let mut keys = Vec::new();
        for d in dests {
            let mut rx = d.rx.lock().await;
            while let Ok(w) = rx.try_recv() {
                keys.extend(w.keys());
            }
        }
        if !keys.is_empty() {
            tracing::info!(
                count = keys.len(),
                "releasing queued deliveries for the next start"
            );
            let _ = self.store.release(&self.cfg.node_id, keys).await;
        }
    }
}

/// Takes one of `limit` slots counted by `count`; false when all are taken.
fn take_slot(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}
