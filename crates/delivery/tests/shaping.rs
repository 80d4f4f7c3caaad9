//! Shaping through the real engine: a SQLite store on a temporary file, the engine's
//! workers, the scripted sink on loopback (`common::sink`) behind a static route (one
//! site, `mx:127.0.0.1`), and a `Shaper` on the same store. Response rules fire on the
//! sink's provider texts and leave throttles in the store; a suspension defers the
//! site's work with Mailroom's own text (which never fires a rule) and ends with the
//! rule's duration; a tenant-scoped block holds only that tenant; an egress pool binds
//! 127.0.0.2/127.0.0.3 with their EHLO names and caps the warming address per day.

mod common;

use common::sink::{self, Sink};
use common::{messages, stores};
use mailroom_delivery::schedule::RetrySchedule;
use mailroom_delivery::shaper::{EgressAddress, EgressPool, Shaper, ShapingSettings};
use mailroom_delivery::shaping::{Rule, RuleAction, RuleScope, Schedule};
use mailroom_delivery::{DeliveryConfig, Engine, StaticRoute, Timeouts, TlsMode};
use mailroom_dns::StaticResolver;
use mailroom_model::{MessageId, RecipientState, TenantId, now_millis};
use mailroom_store::{DynStore, MessageView, NewMessage, ShapingStore};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

fn config(addr: SocketAddr) -> DeliveryConfig {
    DeliveryConfig {
        helo_name: "relay.mailroom.test".into(),
        allow_private: true,
        idle_timeout: Duration::from_millis(500),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            greeting: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data_end: Duration::from_secs(5),
        },
        retry: RetrySchedule {
            steps: vec![Duration::from_millis(200)],
            jitter: 0.0,
            lifetime: Duration::from_secs(3600),
        },
        poll_interval: Duration::from_millis(50),
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

struct H {
    store: DynStore,
    tenant: TenantId,
    _dir: tempfile::TempDir,
    sink: Arc<Sink>,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl H {
    async fn start(settings: ShapingSettings) -> H {
        Self::start_with(settings, |_| {}).await
    }

    async fn start_with(settings: ShapingSettings, tune: impl FnOnce(&mut DeliveryConfig)) -> H {
        let (store, tenant, dir) = common::store_with_tenant().await;
        let (addr, sink) = sink::spawn().await;
        let token = CancellationToken::new();
        let mut cfg = config(addr);
        tune(&mut cfg);
        let engine = Engine::new(
            cfg,
            store.clone(),
            Arc::new(StaticResolver::new()),
            Arc::new(Notify::new()),
            token.clone(),
        );
        let shaping: Arc<dyn ShapingStore> = store.clone();
        engine.set_shaper(Shaper::new(settings, shaping));
        let handle = tokio::spawn(engine.run());
        H {
            store,
            tenant,
            _dir: dir,
            sink,
            token,
            handle,
        }
    }

    async fn tenant(&self, name: &str) -> TenantId {
        stores::tenant(&self.store, name).await
    }

    async fn send(&self, tenant: &TenantId, rcpt: &str) -> MessageId {
        let m = messages::new_message(tenant, "app@sender.test", vec![messages::recipient(rcpt)]);
        let id = m.id.clone();
        self.store
            .enqueue(NewMessage {
                body: format!("From: <app@sender.test>\r\nSubject: {id}\r\n\r\nhi\r\n")
                    .into_bytes(),
                source: "api",
                ..m
            })
            .await
            .expect("enqueue");
        id
    }

    async fn wait(
        &self,
        id: &MessageId,
        what: &str,
        pred: impl Fn(&MessageView) -> bool,
    ) -> MessageView {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let v = self
                .store
                .get_message(id)
                .await
                .expect("read")
                .expect("exists");
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {v:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn delivered(&self, id: &MessageId) -> MessageView {
        self.wait(id, "delivered", |v| {
            v.recipients[0].state == RecipientState::Delivered
        })
        .await
    }

    async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

fn replies(v: &MessageView) -> Vec<String> {
    v.recipients[0]
        .events
        .iter()
        .filter_map(|e| e.detail["reply"]["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_rate_text_throttles_the_site_with_its_cause_in_the_store() {
    let h = H::start(ShapingSettings::default()).await;
    let id = h.send(&h.tenant.clone(), "rate1@gmail.test").await;
    h.wait(&id, "deferred", |v| v.recipients[0].attempts >= 1)
        .await;
    let t = h
        .store
        .active_throttles(now_millis())
        .await
        .expect("throttles");
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0].site.as_str(), t[0].action.as_str(), t[0].value),
        ("mx:127.0.0.1", "throttle", Some(60))
    );
    assert_eq!(t[0].rule, "gmail-rate");
    assert!(t[0].cause.contains("4.7.28"), "{}", t[0].cause);
    assert_eq!(t[0].tenant, None);
    assert!(t[0].expires_at > now_millis() + 14 * 60_000);
    // The automatic action is an operator-level event with the matched reply.
    let ev = shaping_events(&h.store, None).await;
    let rule: Vec<_> = ev.iter().filter(|e| e.detail["kind"] == "rule").collect();
    assert_eq!(rule.len(), 1, "{ev:?}");
    assert_eq!(rule[0].tenant_id, None);
    assert_eq!(rule[0].detail["action"], "throttle");
    assert_eq!(rule[0].detail["rule"], "gmail-rate");
    assert!(
        rule[0].detail["cause"]
            .as_str()
            .unwrap_or("")
            .contains("4.7.28")
    );
    h.stop().await;
}

async fn shaping_events(store: &DynStore, tenant: Option<&TenantId>) -> Vec<mailroom_model::Event> {
    store
        .list_events(&mailroom_store::EventQuery {
            after: 0,
            tenant: tenant.cloned(),
            kinds: vec![mailroom_model::EventType::ShapingAction],
            recipient: None,
            message_id: None,
            limit: 100,
        })
        .await
        .expect("events")
        .events
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_class_reply_suspends_the_site_for_the_rule_duration_then_resumes() {
    let mut settings = ShapingSettings::default();
    settings.rules.upsert(
        Rule::new(
            "suspend-class",
            None,
            r"(?i)temporarily suspended",
            RuleAction::Suspend,
            RuleScope::Site,
            2_000,
            1,
        )
        .expect("rule"),
    );
    let h = H::start(settings).await;
    let tenant = h.tenant.clone();
    let first = h.send(&tenant, "susp1@example.test").await;
    h.wait(&first, "suspend reply", |v| v.recipients[0].attempts >= 1)
        .await;
    let suspended_at = Instant::now();
    let t = h
        .store
        .active_throttles(now_millis())
        .await
        .expect("throttles");
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].action, "suspend");
    let second = h.send(&tenant, "ok1@example.test").await;
    let v = h.delivered(&second).await;
    // It waited out the suspension, deferred with Mailroom's own text meanwhile.
    assert!(
        suspended_at.elapsed() >= Duration::from_millis(1_500),
        "{:?}",
        suspended_at.elapsed()
    );
    assert!(
        replies(&v).iter().any(|r| r.contains("suspended for")),
        "{:?}",
        replies(&v)
    );
    h.delivered(&first).await;
    // Own deferrals fired nothing: still the one row, from the remote text.
    let all = h.store.active_throttles(0).await.expect("throttles");
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].cause.contains("4.7.1"), "{}", all[0].cause);
    assert_eq!(h.sink.delivered_to("ok1@example.test"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_scoped_block_holds_only_that_tenant() {
    let h = H::start(ShapingSettings::default()).await;
    let a = h.tenant.clone();
    let b = h.tenant("other").await;
    let blocked = h.send(&a, "ts02x@yahoo.test").await;
    h.wait(&blocked, "TS02 reply", |v| v.recipients[0].attempts >= 1)
        .await;
    let t = h
        .store
        .active_throttles(now_millis())
        .await
        .expect("throttles");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].tenant.as_deref(), Some(a.as_str()));
    let a_ok = h.send(&a, "ok-a@yahoo.test").await;
    let b_ok = h.send(&b, "ok-b@yahoo.test").await;
    h.delivered(&b_ok).await;
    let v = h
        .wait(&a_ok, "tenant A deferred", |v| {
            v.recipients[0].attempts >= 2
        })
        .await;
    assert_eq!(v.recipients[0].state, RecipientState::Deferred);
    assert!(
        replies(&v).iter().all(|r| r.contains("suspended for")),
        "{:?}",
        replies(&v)
    );
    assert_eq!(h.sink.delivered_to("ok-a@yahoo.test"), 0);
    // Tenant A sees the event under its own id; B sees none.
    let mine = shaping_events(&h.store, Some(&a)).await;
    assert!(
        mine.iter().any(|e| e.detail["rule"] == "yahoo-ts02"),
        "{mine:?}"
    );
    assert!(shaping_events(&h.store, Some(&b)).await.is_empty());
    // The operator clears it: tenant A's mail flows again.
    assert_eq!(
        h.store
            .clear_throttles(None, now_millis())
            .await
            .expect("clear"),
        1
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_pool_binds_sources_and_caps_the_warming_address() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let settings = ShapingSettings {
        pools: vec![EgressPool {
            name: "p1".into(),
            addresses: vec![
                EgressAddress {
                    ip: ip("127.0.0.2"),
                    ehlo: "out2.mailroom.test".into(),
                    warmup: true,
                    connections: 0,
                },
                EgressAddress {
                    ip: ip("127.0.0.3"),
                    ehlo: "out3.mailroom.test".into(),
                    warmup: false,
                    connections: 0,
                },
            ],
        }],
        warmup: mailroom_delivery::shaping::WarmupSchedule {
            default: Some(Schedule {
                steps: vec![(1, 3), (2, 10)],
            }),
            ..Default::default()
        },
        ..ShapingSettings::default()
    };
    let h = H::start(settings).await;
    let pooled = h.tenant.clone();
    let plain = h.tenant("plain").await;
    let shaping: &dyn ShapingStore = &*h.store;
    assert!(
        shaping
            .set_tenant_pool(&pooled, Some("p1"))
            .await
            .expect("pool")
    );
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(h.send(&pooled, &format!("ok{i}@pool.test")).await);
    }
    let other = h.send(&plain, "ok-plain@pool.test").await;
    for id in &ids {
        h.delivered(id).await;
    }
    h.delivered(&other).await;
    let msgs = h.sink.messages();
    let from = |a: &str| {
        msgs.iter()
            .filter(|m| {
                m.peer == ip(a)
                    && m.rcpts[0].starts_with("ok")
                    && m.rcpts[0] != "ok-plain@pool.test"
            })
            .count()
    };
    assert_eq!(from("127.0.0.2"), 3, "warming address capped at day 1's 3");
    assert_eq!(from("127.0.0.3"), 5, "overflow to the warmed address");
    for m in &msgs {
        match m.peer.to_string().as_str() {
            "127.0.0.2" => assert_eq!(m.ehlo, "out2.mailroom.test"),
            "127.0.0.3" => assert_eq!(m.ehlo, "out3.mailroom.test"),
            _ => {
                assert_eq!(m.rcpts, vec!["ok-plain@pool.test".to_string()]);
                assert_eq!(m.ehlo, "relay.mailroom.test");
            }
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_floor_required_never_sends_in_plain_text() {
    let mut settings = ShapingSettings::default();
    settings.profiles.default.tls = mailroom_delivery::shaping::profile::TlsFloor::Required;
    // The route says plain text; the sink offers no STARTTLS.
    let h = H::start(settings).await;
    let id = h.send(&h.tenant.clone(), "ok-tls@floor.test").await;
    let v = h
        .wait(&id, "deferred by the TLS floor", |v| {
            v.recipients[0].attempts >= 1
        })
        .await;
    assert_eq!(v.recipients[0].state, RecipientState::Deferred);
    let last = v.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.contains("TLS"), "{last}");
    assert_eq!(h.sink.delivered_to("ok-tls@floor.test"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_rate_spaces_new_connections() {
    let mut settings = ShapingSettings::default();
    // One new connection a second (burst one); one message per connection.
    settings.profiles.default.connections_per_minute = 60;
    let h = H::start_with(settings, |c| c.max_messages_per_connection = 1).await;
    let tenant = h.tenant.clone();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(h.send(&tenant, &format!("ok-rate{i}@rate.test")).await);
    }
    for id in &ids {
        h.delivered(id).await;
    }
    let took = started.elapsed();
    // The first connection learns the site; the next three wait for a token each.
    assert!(took >= Duration::from_millis(1_900), "{took:?}");
    assert_eq!(h.sink.messages().len(), 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_connection_limit_holds_and_a_busy_address_is_skipped() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let settings = ShapingSettings {
        pools: vec![EgressPool {
            name: "p1".into(),
            addresses: vec![
                EgressAddress {
                    ip: ip("127.0.0.2"),
                    ehlo: "out2.mailroom.test".into(),
                    warmup: false,
                    connections: 1,
                },
                EgressAddress {
                    ip: ip("127.0.0.3"),
                    ehlo: "out3.mailroom.test".into(),
                    warmup: false,
                    connections: 1,
                },
            ],
        }],
        default_pool: Some("p1".into()),
        initial_connections: 4,
        ..ShapingSettings::default()
    };
    let h = H::start_with(settings, |c| c.max_messages_per_connection = 3).await;
    let tenant = h.tenant.clone();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(h.send(&tenant, &format!("ok-addr{i}@addr.test")).await);
    }
    for id in &ids {
        h.delivered(id).await;
    }
    let msgs = h.sink.messages();
    let from = |a: &str| msgs.iter().filter(|m| m.peer == ip(a)).count();
    // Both addresses were used (each busy one skipped for the other), nothing else.
    assert!(from("127.0.0.2") >= 1 && from("127.0.0.3") >= 1, "{msgs:?}");
    assert_eq!(from("127.0.0.2") + from("127.0.0.3"), 12);
    h.stop().await;
}

/// Per-domain overrides hold for a domain reached through a static route (the route
/// `*` here): the domain gets a queue of its own on the route, where its TLS floor,
/// message rate and messages per connection apply, while the route's other domains
/// keep the site's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_overrides_apply_through_a_static_route() {
    use mailroom_delivery::shaping::profile::{ProfileOverride, TlsFloor};
    let mut settings = ShapingSettings::default();
    settings.profiles.domains.insert(
        "secure.example".into(),
        ProfileOverride {
            tls: Some(TlsFloor::Required),
            ..Default::default()
        },
    );
    settings.profiles.domains.insert(
        "slow.example".into(),
        ProfileOverride {
            messages_per_minute: Some(60),
            messages_per_connection: Some(1),
            ..Default::default()
        },
    );
    let h = H::start(settings).await;
    let t = h.tenant.clone();

    // The route says `tls = none` and the sink offers no STARTTLS: the domain's TLS
    // floor keeps its mail from going out in plain text; the route's other mail goes.
    let secure = h.send(&t, "ok-s@secure.example").await;
    let other = h.send(&t, "ok-o@other.example").await;
    h.delivered(&other).await;
    let v = h
        .wait(&secure, "secure.example deferred", |v| {
            v.recipients[0].attempts >= 1
        })
        .await;
    assert_eq!(v.recipients[0].state, RecipientState::Deferred, "{v:#?}");
    let events = serde_json::to_string(
        &v.recipients[0]
            .events
            .iter()
            .map(|e| &e.detail)
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(events.contains("TLS"), "{events}");
    assert_eq!(h.sink.delivered_to("ok-s@secure.example"), 0);

    // 60 a minute (one a second, a burst of one) and one message per connection.
    let conns = h.sink.connections.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..3 {
        slow.push(h.send(&t, &format!("ok-{i}@slow.example")).await);
    }
    for id in &slow {
        h.delivered(id).await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_900), "{took:?}");
    let opened = h.sink.connections.load(std::sync::atomic::Ordering::SeqCst) - conns;
    assert!(opened >= 3, "{opened} connections for 3 messages");
    h.stop().await;
}
