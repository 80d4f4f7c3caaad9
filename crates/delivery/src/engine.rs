//! The scheduler: claims due recipients under a lease, groups them per message and
//! destination into work items, and hands each to its destination's bounded queue,
//! starting connection workers up to the per-destination and global limits. A full
//! queue gives the claim back: the work stays in storage (backpressure, never an
//! unbounded buffer). The queues and the connection slots are `queues`'s.
//!
//! Every lease taken here (or by ingest for a hand-off) is kept alive by the lease
//! keeper (`lease`) while its work waits or is sent, so a slow destination does not
//! lose it while this node lives; a dead node's leases simply run out.
//!
//! Connection limits hold cluster-wide by division: `per_destination_connections` and
//! `max_connections` are divided among the live nodes (`set_live_nodes`, at least one
//! connection each), as counted when a worker starts. During a takeover (a node died
//! and is still counted, or one just joined and the others have not yet seen it) the sum
//! can briefly exceed the limit by one node's share.

use crate::config::DeliveryConfig;
use crate::lease::{Held, LeaseKeeper};
use crate::route::destination_key;
use crate::store::DeliveryStore;
use mailroom_dns::Resolver;
use mailroom_model::{MessageId, now_millis};
use mailroom_store::DueRecipient;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod queues;
pub(crate) use queues::Destination;

/// The recipients of one message bound for one destination. With VERP (a
/// return-path domain) they go as one transaction each, pipelined on one
/// connection (`send`).
#[derive(Debug)]
pub struct Work {
    pub domain: String,
    pub recipients: Vec<DueRecipient>,
    /// The message, when it came in memory from ingest (else loaded from the store).
    pub body: Option<Arc<Vec<u8>>>,
    /// The lease these recipients were claimed under, renewed while the node lives;
    /// once it is about to run out the work is stale and must not be sent. Holding it
    /// keeps the lease renewed: it goes with the outcome until that is written.
    pub(crate) lease: Arc<Held>,
}

impl Work {
    pub fn message_id(&self) -> &MessageId {
        &self.recipients[0].message_id
    }
    pub fn keys(&self) -> Vec<(MessageId, i64)> {
        self.recipients
            .iter()
            .map(|r| (r.message_id.clone(), r.idx))
            .collect()
    }
}

pub struct Engine {
    pub(crate) cfg: Arc<DeliveryConfig>,
    /// `cfg` with the static routes in force: replaced by a configuration reload
    /// (`set_routes`); read where a route is chosen (dispatch, planning a connection).
    routing: std::sync::RwLock<Arc<DeliveryConfig>>,
    pub(crate) store: Arc<dyn DeliveryStore>,
    pub(crate) resolver: Arc<dyn Resolver>,
    /// MTA-STS and TLS-RPT (set once at start; unset: opportunistic, nothing counted).
    pub(crate) tls: std::sync::OnceLock<Arc<crate::tls_policy::TransportSecurity>>,
    destinations: std::sync::Mutex<HashMap<String, Arc<Destination>>>,
    /// Connection workers running, over all destinations (bounded by this node's share
    /// of `max_connections`).
    connections: AtomicUsize,
    /// Nodes sharing the queue (published by the node's heartbeat loop; 1 alone).
    live_nodes: std::sync::Mutex<Arc<AtomicUsize>>,
    /// The leases this node holds, renewed while their work is in progress.
    pub(crate) leases: Arc<LeaseKeeper>,
    /// Woken when new work may be due (a message was accepted, a retry requested).
    wake: Arc<Notify>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Outcomes go to the recorder task, which writes them in batches.
    pub(crate) recorder: mpsc::Sender<crate::recorder::Recording>,
    /// Outcomes not recorded because another node had taken over the lease.
    lost_leases: AtomicUsize,
    /// Set while the recorder holds outcomes the storage refused (full, read-only):
    /// nothing new is claimed until they are written (`recorder::run_recorder`).
    recording_held: std::sync::atomic::AtomicBool,
    recorder_rx: std::sync::Mutex<Option<mpsc::Receiver<crate::recorder::Recording>>>,
    /// Traffic shaping (sites, profiles, feedback, rules, egress), when enabled.
    pub(crate) shaper: std::sync::OnceLock<Arc<crate::shaper::Shaper>>,
}

impl Engine {
    /// `store` is any store with the queue, message and directory roles behind an
    /// `Arc` (`Arc<dyn Store>` included), or anything implementing [`DeliveryStore`].
    pub fn new(
        cfg: DeliveryConfig,
        store: impl DeliveryStore,
        resolver: Arc<dyn Resolver>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (recorder, recorder_rx) = mpsc::channel(10_000);
        Arc::new(Self {
            recorder,
            lost_leases: AtomicUsize::new(0),
            recording_held: Default::default(),
            recorder_rx: std::sync::Mutex::new(Some(recorder_rx)),
            connections: AtomicUsize::new(0),
            live_nodes: std::sync::Mutex::new(Arc::new(AtomicUsize::new(1))),
            leases: Arc::new(LeaseKeeper::new(&cfg.node_id, cfg.lease)),
            routing: std::sync::RwLock::new(Arc::new(cfg.clone())),
            cfg: Arc::new(cfg),
            store: Arc::new(store),
            resolver,
            tls: std::sync::OnceLock::new(),
            destinations: Default::default(),
            wake,
            shutdown,
            tracker: TaskTracker::new(),
            shaper: std::sync::OnceLock::new(),
        })
    }

    /// The configuration with the static routes in force now.
    pub(crate) fn routing(&self) -> Arc<DeliveryConfig> {
        self.routing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the static routes (a configuration reload). Work dispatched from now
    /// on, and every connection planned from now on, follows the new routes.
    pub fn set_routes(&self, routes: Vec<crate::StaticRoute>) {
        let mut next = (*self.routing()).clone();
        next.routes = routes;
        *self
            .routing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }

    /// Turns on MTA-STS and TLS-RPT counting (once, before work starts).
    pub fn set_transport_security(&self, ts: crate::tls_policy::TransportSecurity) {
        let _ = self.tls.set(Arc::new(ts));
    }

    /// Turns traffic shaping on (once, before `run`): site limits, feedback, rules
    /// and egress pools apply from then on.
    pub fn set_shaper(&self, shaper: Arc<crate::shaper::Shaper>) {
        let _ = self.shaper.set(shaper);
    }

    /// The shaper, if shaping is on.
    pub fn shaper(&self) -> Option<&Arc<crate::shaper::Shaper>> {
        self.shaper.get()
    }

    /// The destination (queue, and the shaper's key) a recipient domain goes to:
    /// the domain itself, or a static route's `route:host:port` (`…/domain` for a
    /// domain with shaping limits of its own).
    pub fn destination_of(&self, domain: &str) -> String {
        let own = (self.shaper.get()).is_some_and(|s| s.has_domain_override(domain));
        destination_key(&self.routing(), domain, own)
    }

    pub(crate) fn note_lost_leases(&self, n: usize) {
        self.lost_leases.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("mailroom_delivery_lost_leases_total").increment(n as u64);
    }

    pub(crate) fn set_recording_held(&self, held: bool) {
        self.recording_held.store(held, Ordering::Release);
    }

    /// Whether outcomes the storage refused are waiting to be written (no new work is
    /// claimed meanwhile).
    pub fn recording_held(&self) -> bool {
        self.recording_held.load(Ordering::Acquire)
    }

    /// Outcomes this node did not record because its lease had been taken over.
    pub fn lost_leases(&self) -> usize {
        self.lost_leases.load(Ordering::Relaxed)
    }

    /// Fencing tokens this node holds now (claims or hand-offs with work waiting, in
    /// flight, or an outcome not yet written).
    pub fn held_leases(&self) -> usize {
        self.leases.tokens().len()
    }

    /// Shares the count of live nodes (kept up to date by the caller, e.g. from
    /// heartbeats): connection limits are divided by it when workers start. Without
    /// it the engine counts itself alone.
    pub fn set_live_nodes(&self, nodes: Arc<AtomicUsize>) {
        *self.live_nodes.lock().expect("live nodes lock") = nodes;
    }

    /// Runs the scheduler until shutdown, then waits for workers to finish the
    /// message they are sending and gives queued work back to storage.
    pub async fn run(self: Arc<Self>) {
        let recorder = self
            .recorder_rx
            .lock()
            .expect("recorder lock")
            .take()
            .map(|rx| tokio::spawn(crate::recorder::run_recorder(self.clone(), rx)));
        // Renewal lasts as long as this call: when it returns, or is dropped (the task
        // aborted), the keeper stops and this node's leases run out by themselves.
        let keeper_stop = CancellationToken::new();
        let keeper_guard = keeper_stop.clone().drop_guard();
        let keeper = {
            let (keeper, store) = (self.leases.clone(), self.store.clone());
            tokio::spawn(async move { keeper.run(store, keeper_stop).await })
        };
        // Leases this node left when it last stopped (a crash) must not hold those
        // recipients back until they expire. Other nodes' leases are theirs.
        match self.store.release_node(&self.cfg.node_id).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(recipients = n, "released leases left by the previous run"),
            Err(e) => {
                tracing::warn!(error = %e, "releasing old leases failed; they expire by themselves")
            }
        }
        self.leases.set_started();
        loop {
            let claimed = if self.shutdown.is_cancelled() {
                0
            } else {
                self.round().await
            };
            if self.shutdown.is_cancelled() {
                break;
            }
            // A full round means more may be due right away.
            if claimed >= self.cfg.claim_batch {
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        }
        // Queued work goes back first: a worker stuck on a slow exchanger must not keep
        // it claimed. Workers take nothing new once shutdown is asked for.
        self.release_queued().await;
        self.tracker.close();
        self.tracker.wait().await;
        self.release_queued().await;
        // Everything the workers reported is written before returning.
        let (done, wait) = tokio::sync::oneshot::channel();
        if self
            .recorder
            .send(crate::recorder::Recording::Flush(done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
        if let Some(r) = recorder {
            r.abort();
        }
        if let Some(s) = self.shaper.get() {
            s.flush().await;
        }
        // Nothing is renewed once this returns.
        keeper_guard.disarm().cancel();
        let _ = keeper.await;
    }

    async fn round(self: &Arc<Self>) -> usize {
        if self.recording_held() {
            // More deliveries would only add outcomes that cannot be written; and the
            // held ones must be written before their recipients could be claimed again.
            return 0;
        }
        let now = now_millis();
        let lease_until = now + self.leases.lease_ms();
        let lease = mailroom_store::Lease::new(&self.cfg.node_id, lease_until);
        let due = match self
            .store
            .claim_due(&lease, now, self.cfg.claim_batch)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "claiming due recipients failed");
                return 0;
            }
        };
        let claimed = due.len();
        if claimed == 0 {
            return 0;
        }
        let held = self.leases.hold(lease.token, lease_until);
        let mut groups: HashMap<(MessageId, String), Vec<DueRecipient>> = HashMap::new();
        for r in due {
            groups
                .entry((r.message_id.clone(), r.domain.clone()))
                .or_default()
                .push(r);
        }
        let mut give_back = Vec::new();
        for ((_, domain), recipients) in groups {
            if let Err(w) = self.dispatch(Work {
                domain,
                recipients,
                body: None,
                lease: held.clone(),
            }) {
                give_back.extend(w.keys());
            }
        }
        let dispatched = claimed - give_back.len();
        if !give_back.is_empty() {
            tracing::debug!(
                count = give_back.len(),
                "destination queues full; work stays queued"
            );
            if let Err(e) = self.store.release(&self.cfg.node_id, give_back).await {
                tracing::warn!(error = %e, "releasing claims failed; they expire with their lease");
            }
        }
        dispatched
    }

    /// Wakes the scheduler (new work in storage, e.g. a bounce report).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The engine as the `Handoff` of ingest: fresh messages go straight into the
/// destination queues. Until the engine has released what this node's previous run
/// left (the start of `run`), hand-offs are refused and ingest gives them back to the
/// store: that release may already have cleared their leases, and the scheduler would
/// deliver them a second time.
pub struct EngineHandoff(pub Arc<Engine>);

impl mailroom_store::Handoff for EngineHandoff {
    fn offer(&self, recipients: Vec<DueRecipient>, body: Arc<Vec<u8>>) -> Vec<(MessageId, i64)> {
        let engine = &self.0;
        if engine.shutdown.is_cancelled()
            || recipients.is_empty()
            || !engine.leases.may_take(recipients[0].lease_token)
        {
            return recipients
                .iter()
                .map(|r| (r.message_id.clone(), r.idx))
                .collect();
        }
        // Ingest stored them with a lease that started a moment ago (`new_lease`, then
        // the commit); count it from a little earlier. The keeper renews it from here.
        let lease_ms = engine.leases.lease_ms();
        let until = mailroom_model::now_millis() + lease_ms - (lease_ms / 10).min(1000);
        let held = engine.leases.hold(recipients[0].lease_token, until);
        let mut by_domain: HashMap<String, Vec<DueRecipient>> = HashMap::new();
        for r in recipients {
            by_domain.entry(r.domain.clone()).or_default().push(r);
        }
        let mut refused = Vec::new();
        for (domain, recipients) in by_domain {
            if let Err(w) = engine.dispatch(Work {
                domain,
                recipients,
                body: Some(body.clone()),
                lease: held.clone(),
            }) {
                refused.extend(w.keys());
            }
        }
        refused
    }

    fn new_lease(&self) -> mailroom_store::Lease {
        let cfg = &self.0.cfg;
        let until = mailroom_model::now_millis() + cfg.lease.as_millis() as i64;
        let lease = mailroom_store::Lease::new(&cfg.node_id, until);
        self.0.leases.issued(lease.token);
        lease
    }
}
