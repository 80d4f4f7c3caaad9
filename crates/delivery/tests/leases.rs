//! Leases across engines (nodes) on one real SQLite store: renewal while work (claimed
//! or handed off by ingest) waits in a slow destination, takeover of a dead node's work, fencing of a late outcome, renewal
//! ending with the engine, connection limits divided among live nodes, and outcomes the
//! store refuses (disk full) held until it takes writes again.
//!
//! Leases here are short (1.5 s, renewed every 500 ms) so that every scenario runs
//! several lease periods in a few seconds, with room for a loaded machine. Every wait is a poll with a deadline. The
//! engines see the store through `common::spy::SpyStore`, which records each claim
//! (owner, token, when, until) and each renewal.

mod common;

use common::messages;
use common::sink::{self, Sink};
use common::spy::SpyStore;
use mailroom_delivery::schedule::RetrySchedule;
use mailroom_delivery::{DeliveryConfig, Engine, EngineHandoff, StaticRoute, Timeouts, TlsMode};
use mailroom_dns::StaticResolver;
use mailroom_model::{EventType, MessageId, RecipientState, TenantId, now_millis};
use mailroom_store::{DueRecipient, DynStore, Handoff, Lease, MessageView, NewMessage, Outcome};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);
const LEASE: Duration = Duration::from_millis(1500);
const LEASE_MS: i64 = 1500;

// ---------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------

struct Harness {
    store: DynStore,
    tenant: TenantId,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let (store, tenant, dir) = common::store_with_tenant().await;
        Self {
            store,
            tenant,
            _dir: dir,
        }
    }

    /// A message to one recipient.
    fn message(&self, address: &str) -> NewMessage {
        let m = messages::new_message(
            &self.tenant,
            "app@sender.test",
            vec![messages::recipient(address)],
        );
        let id = &m.id;
        NewMessage {
            body: format!(
                "From: app@sender.test\r\nTo: {address}\r\nSubject: {id}\r\n\r\nHello {id}\r\n"
            )
            .into_bytes(),
            source: "api",
            ..m
        }
    }

    /// Enqueues `n` messages, one recipient each; returns their ids and bodies.
    async fn send_many(&self, n: usize, address: &str) -> Vec<(MessageId, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let m = self.message(address);
            out.push((m.id.clone(), m.body.clone()));
            self.store.enqueue(m).await.expect("enqueue");
        }
        out
    }

    async fn view(&self, id: &MessageId) -> MessageView {
        self.store
            .get_message(id)
            .await
            .expect("read message")
            .expect("message exists")
    }

    /// Waits until every recipient of every message is delivered.
    async fn wait_delivered(&self, sent: &[(MessageId, Vec<u8>)]) {
        for (id, _) in sent {
            eventually(&format!("{id} delivered"), async || {
                let v = self.view(id).await;
                (v.recipients[0].state == RecipientState::Delivered).then_some(())
            })
            .await;
        }
    }

    /// Each message reached the sink exactly once and has exactly one `delivered` event.
    async fn assert_delivered_once(&self, sink: &Sink, sent: &[(MessageId, Vec<u8>)]) {
        for (id, body) in sent {
            let copies = sink.messages().iter().filter(|m| &m.body == body).count();
            assert_eq!(copies, 1, "{id} reached the sink {copies} times");
            let v = self.view(id).await;
            let kinds: Vec<EventType> = v.recipients[0].events.iter().map(|e| e.kind).collect();
            assert_eq!(kinds, [EventType::Accepted, EventType::Delivered], "{id}");
        }
    }
}

/// Test settings: one node id, a short lease, fast polling, every domain to `addr`.
fn node(id: &str, addr: SocketAddr) -> DeliveryConfig {
    DeliveryConfig {
        helo_name: "relay.mailroom.test".into(),
        mx_tls: TlsMode::Opportunistic,
        allow_private: true,
        idle_timeout: Duration::from_secs(2),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            greeting: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data_end: Duration::from_secs(10),
        },
        retry: RetrySchedule {
            steps: vec![Duration::from_millis(200)],
            jitter: 0.0,
            lifetime: Duration::from_secs(3600),
        },
        poll_interval: Duration::from_millis(50),
        lease: LEASE,
        node_id: id.into(),
        per_destination_connections: 1,
        routes: vec![StaticRoute {
            domains: vec!["*".into()],
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: TlsMode::None,
            auth: None,
        }],
        ..DeliveryConfig::default()
    }
}

struct Running {
    engine: Arc<Engine>,
    token: CancellationToken,
    handle: JoinHandle<()>,
}

impl Running {
    fn start(cfg: DeliveryConfig, store: SpyStore) -> Self {
        let token = CancellationToken::new();
        let engine = Engine::new(
            cfg,
            store,
            Arc::new(StaticResolver::new()),
            Arc::new(Notify::new()),
            token.clone(),
        );
        let handle = tokio::spawn(engine.clone().run());
        Self {
            engine,
            token,
            handle,
        }
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("engine.run() returns within 10 s of shutdown")
            .expect("engine task did not panic");
    }
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sleep_ms(ms: i64) {
    tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
}

/// What another node could claim right now (and so takes, under a throw-away lease
/// that runs out at once).
async fn claimable(store: &DynStore) -> usize {
    let now = now_millis();
    let lease = Lease::new("probe", now + 1);
    store
        .claim_due(&lease, now, 100)
        .await
        .expect("claim")
        .len()
}

// ---------------------------------------------------------------------------------
// (a) Renewal while work waits in a slow destination
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_waiting_longer_than_the_lease_keeps_it_and_is_delivered_once() {
    let (addr, sink) = sink::spawn().await;
    // Each message takes 300 ms at the exchanger and there is one connection: the
    // last waits about 3.3 s in the destination queue, more than two leases.
    sink.data_delay_ms.store(300, Ordering::SeqCst);
    let h = Harness::new().await;
    let sent = h.send_many(12, "ok@slow.test").await;
    let spy = SpyStore::new(h.store.clone());
    let started = Instant::now();
    let a = Running::start(node("node-a", addr), spy.clone());
    h.wait_delivered(&sent).await;
    let took = started.elapsed();
    assert!(
        took > LEASE * 2,
        "the scenario must outlast two leases (took {took:?})"
    );
    h.assert_delivered_once(&sink, &sent).await;
    // Renewed, not re-claimed: every recipient was claimed once, by one claim.
    for (id, _) in &sent {
        assert_eq!(spy.spied.times_claimed(id, 0), 1, "{id} claimed again");
    }
    let renewals = spy.spied.renewals.load(Ordering::SeqCst);
    assert!(renewals >= 3, "{renewals} renewals in {took:?}");
    assert_eq!(spy.spied.failed_renewals.load(Ordering::SeqCst), 0);
    assert_eq!(a.engine.lost_leases(), 0);
    // Everything is recorded: the keeper lets go of the token and renews no more.
    eventually("the keeper to hold no lease", async || {
        (a.engine.held_leases() == 0).then_some(())
    })
    .await;
    let after = spy.spied.renewals.load(Ordering::SeqCst);
    sleep_ms(LEASE_MS).await;
    assert_eq!(
        spy.spied.renewals.load(Ordering::SeqCst),
        after,
        "renewals go on with nothing held"
    );
    a.stop().await;
}

/// Enqueues a message to `ok@slow.test` under a hand-off lease and offers it, as
/// ingest does; returns the message and what the engine refused.
async fn hand_off(h: &Harness, handoff: &EngineHandoff) -> ((MessageId, Vec<u8>), usize) {
    let mut m = h.message("ok@slow.test");
    let lease = handoff.new_lease();
    assert_eq!(lease.owner, "node-a");
    let due = vec![DueRecipient {
        message_id: m.id.clone(),
        idx: 0,
        address: "ok@slow.test".into(),
        domain: "slow.test".into(),
        attempts: 0,
        dsn_notify: None,
        dsn_orcpt: None,
        tenant_id: m.tenant_id.clone(),
        mail_from: m.mail_from.clone(),
        received_at: m.received_at,
        dsn_ret: None,
        dsn_envid: None,
        smtputf8: false,
        require_tls: false,
        return_path: None,
        lease_token: lease.token,
        last_attempt_at: m.received_at,
    }];
    m.lease = Some(lease);
    let body = Arc::new(m.body.clone());
    let sent = (m.id.clone(), m.body.clone());
    h.store.enqueue(m).await.expect("enqueue");
    let refused = handoff.offer(due, body);
    if !refused.is_empty() {
        h.store
            .release("node-a", refused.clone())
            .await
            .expect("release");
    }
    (sent, refused.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handed_off_work_keeps_its_lease_while_it_waits() {
    let (addr, sink) = sink::spawn().await;
    sink.data_delay_ms.store(300, Ordering::SeqCst);
    let h = Harness::new().await;
    let spy = SpyStore::new(h.store.clone());
    let token = CancellationToken::new();
    let engine = Engine::new(
        node("node-a", addr),
        spy.clone(),
        Arc::new(StaticResolver::new()),
        Arc::new(Notify::new()),
        token.clone(),
    );
    let handoff = EngineHandoff(engine.clone());
    // Before the engine has released this node's old leases, a hand-off is refused
    // (that release could clear its lease and the scheduler would send it again).
    let (early, refused) = hand_off(&h, &handoff).await;
    assert_eq!(refused, 1, "hand-off taken before start");
    let handle = tokio::spawn(engine.clone().run());
    eventually("the first scheduler round", async || {
        (spy.spied.claims.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // Then they are taken, each under its own lease, and wait behind each other.
    let mut sent = Vec::new();
    for _ in 0..12 {
        let (m, refused) = hand_off(&h, &handoff).await;
        assert_eq!(refused, 0, "hand-off refused");
        sent.push(m);
    }
    h.wait_delivered(&sent).await;
    h.wait_delivered(std::slice::from_ref(&early)).await;
    h.assert_delivered_once(&sink, &sent).await;
    h.assert_delivered_once(&sink, std::slice::from_ref(&early))
        .await;
    assert_eq!(spy.spied.times_claimed(&early.0, 0), 1);
    // Never claimed from storage: the hand-offs' leases were renewed, not lost.
    for (id, _) in &sent {
        assert_eq!(spy.spied.times_claimed(id, 0), 0, "{id} was claimed");
    }
    assert!(spy.spied.renewals.load(Ordering::SeqCst) >= 3);
    assert_eq!(engine.lost_leases(), 0);
    token.cancel();
    handle.await.expect("engine task");
}

// ---------------------------------------------------------------------------------
// (b) A dead node's work is taken over; its late outcome is fenced
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_work_is_taken_over_and_its_late_outcome_is_lost() {
    let (tarpit, accepted) = sink::spawn_tarpit().await;
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let sent = h.send_many(4, "ok@dest.test").await;

    // Node A runs on a runtime of its own, so that killing it stops every task it has
    // (scheduler, workers, recorder, lease keeper), as a `kill -9` would. Its exchanger
    // never answers: it claims everything and records nothing.
    let spy_a = SpyStore::new(h.store.clone());
    let cfg_a = DeliveryConfig {
        timeouts: Timeouts::default(),
        ..node("node-a", tarpit)
    };
    let rt_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime for node A");
    let engine_a = Engine::new(
        cfg_a,
        spy_a.clone(),
        Arc::new(StaticResolver::new()),
        Arc::new(Notify::new()),
        CancellationToken::new(),
    );
    rt_a.spawn(engine_a.clone().run());
    eventually("node A to claim everything and connect", async || {
        let claimed = spy_a.spied.claimed.lock().unwrap().len();
        (claimed == sent.len() && accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;

    // While A lives, its leases are renewed: nothing is claimable after three leases.
    sleep_ms(3 * LEASE_MS).await;
    assert_eq!(
        claimable(&h.store).await,
        0,
        "A's live leases were claimable"
    );
    assert!(spy_a.spied.renewals.load(Ordering::SeqCst) >= 3);

    // A dies. Its leases run out by themselves; node B takes everything over.
    rt_a.shutdown_background();
    let killed = Instant::now();
    let a_until = spy_a.spied.last_renewed_until.load(Ordering::SeqCst);
    assert!(a_until > 0, "A renewed at least once");
    let spy_b = SpyStore::new(h.store.clone());
    let b = Running::start(node("node-b", addr), spy_b.clone());
    h.wait_delivered(&sent).await;
    let takeover = killed.elapsed();
    println!(
        "takeover: all {} delivered {takeover:?} after A died (lease {LEASE:?})",
        sent.len()
    );
    assert!(
        takeover < LEASE * 2 + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    h.assert_delivered_once(&sink, &sent).await;
    for (id, _) in &sent {
        let claims = spy_b.spied.claims_of(id, 0);
        assert_eq!(claims.len(), 1, "{id}: B claimed it {} times", claims.len());
        assert!(
            claims[0].at >= a_until,
            "{id}: B claimed at {} while A's lease ran until {a_until}",
            claims[0].at
        );
    }

    // A's outcome arrives late (recorded by hand under A's token): it is reported
    // lost, changes nothing and adds no event.
    let (id, _) = &sent[0];
    let a_claim = &spy_a.spied.claims_of(id, 0)[0];
    assert_eq!(a_claim.owner, "node-a");
    let before = h.view(id).await;
    let late = Outcome {
        message_id: id.clone(),
        idx: 0,
        recipient: "ok@dest.test".into(),
        tenant_id: h.tenant.clone(),
        state: RecipientState::Bounced,
        attempted: true,
        next_attempt_at: None,
        last_reply: Some("550 5.1.1 late answer from the dead node".into()),
        last_mx: None,
        event: EventType::Bounced,
        detail: mailroom_model::AttemptDetail {
            attempt: 1,
            ..Default::default()
        },
        at: now_millis(),
        suppress: true,
        lease_token: a_claim.token,
    };
    let lost = h.store.record_outcomes(vec![late]).await.expect("record");
    assert_eq!(lost, vec![(id.clone(), 0)]);
    let after = h.view(id).await;
    assert_eq!(after.recipients[0].state, RecipientState::Delivered);
    assert_eq!(after.recipients[0].attempts, before.recipients[0].attempts);
    assert_eq!(
        after.recipients[0].events.len(),
        before.recipients[0].events.len(),
        "the lost outcome added an event"
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------
// Fencing inside the engine: a node whose lease was lost mid-send records nothing
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_lease_mid_send_records_nothing_and_counts_it() {
    let (addr_a, sink_a) = sink::spawn().await;
    let (addr_b, sink_b) = sink::spawn().await;
    sink_a.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let sent = h.send_many(1, "ok@dest.test").await;
    let (id, _) = &sent[0];

    // A sends; the exchanger keeps the reply back. Meanwhile A cannot renew (its
    // database link is down) and takes no new work.
    let spy_a = SpyStore::new(h.store.clone());
    let a = Running::start(node("node-a", addr_a), spy_a.clone());
    eventually("A's message in flight", async || {
        (sink_a.holding.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    spy_a.spied.fail_renewals.store(true, Ordering::SeqCst);
    spy_a.spied.pause_claims.store(true, Ordering::SeqCst);

    // B takes the recipient over once A's lease ran out, and delivers it.
    let spy_b = SpyStore::new(h.store.clone());
    let b = Running::start(node("node-b", addr_b), spy_b.clone());
    h.wait_delivered(&sent).await;
    assert_eq!(sink_b.delivered_to("ok@dest.test"), 1);
    // Not before A's lease (as last written) ran out.
    let a_claim = spy_a.spied.claims_of(id, 0)[0].clone();
    let a_until = a_claim
        .until
        .max(spy_a.spied.last_renewed_until.load(Ordering::SeqCst));
    let b_claim = spy_b.spied.claims_of(id, 0)[0].clone();
    assert!(
        b_claim.at >= a_until,
        "B claimed at {} < {a_until}",
        b_claim.at
    );
    assert!(spy_a.spied.failed_renewals.load(Ordering::SeqCst) >= 1);

    // A's exchanger answers now: A's outcome is fenced off and counted, not recorded.
    sink_a.hold_data.store(false, Ordering::SeqCst);
    eventually("A to count the lost lease", async || {
        (a.engine.lost_leases() == 1).then_some(())
    })
    .await;
    let v = h.view(id).await;
    let kinds: Vec<EventType> = v.recipients[0].events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::Accepted, EventType::Delivered]);
    assert_eq!(v.recipients[0].attempts, 1, "A's attempt was counted");
    // The duplicate is real (both exchangers got it) and counted, not hidden.
    assert_eq!(sink_a.delivered_to("ok@dest.test"), 1);
    assert_eq!(b.engine.lost_leases(), 0);
    a.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------
// Renewal failing: waiting work is not sent once its lease runs out
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_whose_lease_ran_out_unrenewed_is_not_sent() {
    let (addr, sink) = sink::spawn().await;
    sink.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let sent = h.send_many(2, "ok@dest.test").await;
    let spy = SpyStore::new(h.store.clone());
    let a = Running::start(node("node-a", addr), spy.clone());
    eventually("a message in flight, the other waiting", async || {
        (sink.holding.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // The database is gone for renewals (and this node claims nothing new) until the
    // lease of the waiting message has run out.
    spy.spied.fail_renewals.store(true, Ordering::SeqCst);
    spy.spied.pause_claims.store(true, Ordering::SeqCst);
    // (One claim took both; a renewal in flight may still land, so allow for one more
    // renewal interval.)
    let claim = spy.spied.claims_of(&sent[1].0, 0)[0].clone();
    let until = claim
        .until
        .max(spy.spied.last_renewed_until.load(Ordering::SeqCst));
    sleep_ms(until - now_millis() + LEASE_MS / 3 + 100).await;
    sink.hold_data.store(false, Ordering::SeqCst);

    // The message in flight is finished; the waiting one is dropped unsent.
    let done = eventually("the message in flight to be recorded", async || {
        for (i, (id, _)) in sent.iter().enumerate() {
            if h.view(id).await.recipients[0].state == RecipientState::Delivered {
                return Some(i);
            }
        }
        None
    })
    .await;
    sleep_ms(500).await;
    let (waiting, body) = &sent[1 - done];
    assert!(
        !sink.messages().iter().any(|m| &m.body == body),
        "sent after its lease ran out"
    );
    let v = h.view(waiting).await;
    assert_eq!(v.recipients[0].attempts, 0);
    assert_eq!(v.recipients[0].events.len(), 1, "only `accepted`");

    // The database is back: it is claimed again and delivered once.
    spy.spied.fail_renewals.store(false, Ordering::SeqCst);
    spy.spied.pause_claims.store(false, Ordering::SeqCst);
    h.wait_delivered(&sent).await;
    h.assert_delivered_once(&sink, &sent).await;
    assert_eq!(spy.spied.times_claimed(waiting, 0), 2);
    a.stop().await;
}

// ---------------------------------------------------------------------------------
// The store refusing outcome writes (disk full): held, then written
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_the_store_refuses_are_held_and_written_once_it_takes_writes() {
    let (addr, sink) = sink::spawn().await;
    sink.data_delay_ms.store(50, Ordering::SeqCst);
    let h = Harness::new().await;
    let sent = h.send_many(5, "ok@dest.test").await;
    let spy = SpyStore::new(h.store.clone());
    spy.spied.refuse_outcomes.store(true, Ordering::SeqCst);
    let a = Running::start(node("node-a", addr), spy.clone());
    // Every message is delivered (one connection, one after the other); each outcome
    // is refused.
    eventually("every message at the sink, outcomes held", async || {
        (sink.messages().len() >= sent.len() && a.engine.recording_held()).then_some(())
    })
    .await;
    // Renewals fail too now (the disk is full for them as well) and the leases run
    // out; nothing is claimed while outcomes are held, though the recipients of the
    // given-up batch have come due.
    spy.spied.fail_renewals.store(true, Ordering::SeqCst);
    let claims = spy.spied.claims.load(Ordering::SeqCst);
    sleep_ms(LEASE_MS * 2).await;
    assert_eq!(
        spy.spied.claims.load(Ordering::SeqCst),
        claims,
        "claimed while outcomes were held"
    );
    assert!(a.engine.recording_held());
    let refused = spy.spied.refused.lock().unwrap().clone();
    assert!(refused.len() >= 2, "retried with a pause: {refused:?}");
    // The first refused batch went without a copy: given up, delivered again later.
    let given_up = refused[0].clone();
    assert!(!given_up.is_empty());

    // Space returns.
    spy.spied.refuse_outcomes.store(false, Ordering::SeqCst);
    spy.spied.fail_renewals.store(false, Ordering::SeqCst);
    h.wait_delivered(&sent).await;
    eventually("the given-up recipients delivered again", async || {
        let copies = sink.messages().len();
        (copies >= sent.len() + given_up.len()).then_some(())
    })
    .await;
    assert!(!a.engine.recording_held());
    for (id, body) in &sent {
        let copies = sink.messages().iter().filter(|m| &m.body == body).count();
        let again = given_up.iter().any(|(g, _)| g == id);
        assert_eq!(copies, 1 + usize::from(again), "{id}: {copies} copies");
        let v = h.view(id).await;
        let kinds: Vec<EventType> = v.recipients[0].events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventType::Accepted, EventType::Delivered], "{id}");
        assert_eq!(
            spy.spied.times_claimed(id, 0),
            1 + usize::from(again),
            "{id}"
        );
    }
    assert_eq!(a.engine.lost_leases(), 0);
    a.stop().await;
}

// ---------------------------------------------------------------------------------
// (c) Renewal stops when the engine stops
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_stops_when_the_engine_stops() {
    let (tarpit, accepted) = sink::spawn_tarpit().await;
    let h = Harness::new().await;

    // Stopped in order: the stuck attempt times out (greeting, 1.5 s, longer than the
    // lease), is recorded as deferred, and nothing is renewed afterwards.
    let sent = h.send_many(2, "ok@stuck.test").await;
    let spy = SpyStore::new(h.store.clone());
    let mut cfg = node("node-a", tarpit);
    cfg.timeouts.greeting = Duration::from_millis(1500);
    let a = Running::start(cfg, spy.clone());
    eventually("a connection stuck waiting for the greeting", async || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    eventually("a renewal while the connection is stuck", async || {
        (spy.spied.renewals.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let engine = a.engine.clone();
    a.stop().await;
    assert_eq!(engine.held_leases(), 0, "leases held after run() returned");
    let n = spy.spied.renewals.load(Ordering::SeqCst);
    sleep_ms(3 * LEASE_MS).await;
    assert_eq!(
        spy.spied.renewals.load(Ordering::SeqCst),
        n,
        "renewed after stop"
    );
    for (id, _) in &sent {
        let v = h.view(id).await;
        assert!(
            matches!(
                v.recipients[0].state,
                RecipientState::Queued | RecipientState::Deferred
            ),
            "{id}: {}",
            v.recipients[0].state
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_stops_when_the_engine_task_is_dropped() {
    let (tarpit, accepted) = sink::spawn_tarpit().await;
    let h = Harness::new().await;
    let sent = h.send_many(2, "ok@stuck.test").await;
    let spy = SpyStore::new(h.store.clone());
    let a = Running::start(
        DeliveryConfig {
            timeouts: Timeouts::default(),
            ..node("node-a", tarpit)
        },
        spy.clone(),
    );
    eventually("a connection stuck waiting for the greeting", async || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    sleep_ms(2 * LEASE_MS).await;
    assert_eq!(
        claimable(&h.store).await,
        0,
        "leases not renewed while running"
    );
    // The engine's task is aborted (its worker, stuck for minutes, lives on): the
    // keeper stops with it, so the leases run out and another node can claim.
    // (A renewal in flight at that moment may still land: any lease now ends within
    // one lease period.)
    a.handle.abort();
    let _ = a.handle.await;
    sleep_ms(100).await;
    let n = spy.spied.renewals.load(Ordering::SeqCst);
    sleep_ms(LEASE_MS + 100).await;
    assert_eq!(
        spy.spied.renewals.load(Ordering::SeqCst),
        n,
        "renewed after abort"
    );
    assert_eq!(claimable(&h.store).await, sent.len());
    a.token.cancel();
}

// ---------------------------------------------------------------------------------
// Connection limits divided among live nodes
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_limits_are_divided_among_live_nodes() {
    let (addr, sink) = sink::spawn().await;
    sink.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let sent = h.send_many(8, "ok@dest.test").await;
    let cfg = DeliveryConfig {
        per_destination_connections: 4,
        max_connections: 6,
        ..node("node-a", addr)
    };
    // Three live nodes: 4 / 3 → 1 per destination here.
    let live = Arc::new(AtomicUsize::new(3));
    let token = CancellationToken::new();
    let engine = Engine::new(
        cfg,
        SpyStore::new(h.store.clone()),
        Arc::new(StaticResolver::new()),
        Arc::new(Notify::new()),
        token.clone(),
    );
    engine.set_live_nodes(live.clone());
    let handle = tokio::spawn(engine.clone().run());
    eventually("a message in flight", async || {
        (sink.holding.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    sleep_ms(300).await;
    assert_eq!(sink.holding.load(Ordering::SeqCst), 1, "4 / 3 nodes");
    // Alone again, the next dispatch may open up to four.
    live.store(1, Ordering::SeqCst);
    let more = h.send_many(4, "ok@dest.test").await;
    eventually("four messages in flight", async || {
        (sink.holding.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    sleep_ms(300).await;
    assert_eq!(sink.holding.load(Ordering::SeqCst), 4, "never more than 4");
    sink.hold_data.store(false, Ordering::SeqCst);
    h.wait_delivered(&sent).await;
    h.wait_delivered(&more).await;
    token.cancel();
    handle.await.expect("engine task");
}
