//! End to end through the delivery engine: a real SQLite store on a temporary file, the
//! engine's scheduler and workers, a scripted SMTP sink on loopback (`common::sink`, which is `mailroom_testkit::smtp_sink`),
//! and DNS from the in-process test server (`mailroom_testkit::spawn_dns`) or a static
//! resolver. Messages are enqueued straight into the store; assertions read the store
//! (states, attempts, events and their details) and what the sink received.
//!
//! Every wait is a poll with a deadline; nothing sleeps and hopes.

mod common;

use common::messages;
use common::sink::{self, Received, Sink};
use common::spy::SpyStore;
use mailroom_delivery::schedule::RetrySchedule;
use mailroom_delivery::{DeliveryConfig, Engine, StaticRoute, Timeouts, TlsMode};
use mailroom_dns::{HickoryResolver, Resolver, StaticResolver};
use mailroom_model::{Event, EventType, MessageId, RecipientState, TenantId, now_millis};
use mailroom_store::{
    DynStore, MessageView, NewMessage, NewRecipient, RecipientView, TenantSettings,
};
use mailroom_testkit::{TestZone, spawn_dns};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any single wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(15);
const SENDER: &str = "app@sender.test";

// ---------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------

/// Short SMTP timeouts, so that nothing in a test can hang for minutes.
fn short_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        greeting: Duration::from_secs(5),
        command: Duration::from_secs(5),
        data_end: Duration::from_secs(5),
    }
}

fn retry(step: Duration, lifetime: Duration) -> RetrySchedule {
    RetrySchedule {
        steps: vec![step],
        jitter: 0.0,
        lifetime,
    }
}

/// Test settings: fast polling, short retries, loopback allowed, no static route.
fn config() -> DeliveryConfig {
    DeliveryConfig {
        helo_name: "relay.mailroom.test".into(),
        mx_tls: TlsMode::Opportunistic,
        allow_private: true,
        idle_timeout: Duration::from_secs(2),
        timeouts: short_timeouts(),
        retry: retry(Duration::from_millis(200), Duration::from_secs(3600)),
        poll_interval: Duration::from_millis(50),
        ..DeliveryConfig::default()
    }
}

fn route(domains: &[&str], addr: SocketAddr) -> StaticRoute {
    StaticRoute {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: TlsMode::None,
        auth: None,
    }
}

/// Test settings with every domain routed to `addr`.
fn via(addr: SocketAddr) -> DeliveryConfig {
    DeliveryConfig {
        routes: vec![route(&["*"], addr)],
        ..config()
    }
}

fn no_dns() -> Arc<dyn Resolver> {
    Arc::new(StaticResolver::new())
}

/// A message body with a From header, CRLF lines, and lines that need dot-stuffing
/// (one starting with ".", one with "..", and one that is a lone ".").
fn body(tag: &str) -> Vec<u8> {
    format!(
        "From: App <{SENDER}>\r\n\
         To: someone@dest.test\r\n\
         Subject: test {tag}\r\n\
         Message-ID: <{tag}@sender.test>\r\n\
         \r\n\
         Hello {tag},\r\n\
         .a line starting with a dot\r\n\
         ..two dots\r\n\
         .\r\n\
         last line\r\n"
    )
    .into_bytes()
}

fn to(address: &str) -> NewRecipient {
    NewRecipient {
        address: address.to_string(),
        domain: address.rsplit_once('@').unwrap().1.to_string(),
        dsn_notify: None,
        dsn_orcpt: None,
        suppressed: None,
    }
}

fn to_notify(address: &str, notify: &str) -> NewRecipient {
    NewRecipient {
        dsn_notify: Some(notify.to_string()),
        ..to(address)
    }
}

/// A running engine and the handles to wake and stop it.
struct Running {
    token: CancellationToken,
    wake: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl Running {
    /// Cancels the engine and waits (bounded) for `run()` to return.
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("engine.run() returns within 10 s of shutdown")
            .expect("engine task did not panic");
    }
}

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

    fn start(&self, cfg: DeliveryConfig, resolver: Arc<dyn Resolver>) -> Running {
        start_on(self.store.clone(), cfg, resolver)
    }

    fn message(&self, from: &str, recipients: Vec<NewRecipient>) -> NewMessage {
        let m = messages::new_message(&self.tenant, from, recipients);
        NewMessage {
            body: body(&m.id.as_str().to_ascii_lowercase()),
            source: "api",
            ..m
        }
    }

    async fn enqueue(&self, m: NewMessage) -> (MessageId, Vec<u8>) {
        let out = (m.id.clone(), m.body.clone());
        self.store.enqueue(m).await.expect("enqueue");
        out
    }

    /// Enqueues a message from `from` to `recipients`; returns its id and body.
    async fn send(&self, from: &str, recipients: Vec<NewRecipient>) -> (MessageId, Vec<u8>) {
        self.enqueue(self.message(from, recipients)).await
    }

    async fn view(&self, id: &MessageId) -> MessageView {
        self.store
            .get_message(id)
            .await
            .expect("read message")
            .expect("message exists")
    }

    /// Polls the message until `pred` holds; panics with the last view at the deadline.
    async fn wait(
        &self,
        id: &MessageId,
        what: &str,
        pred: impl Fn(&MessageView) -> bool,
    ) -> MessageView {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let v = self.view(id).await;
            if pred(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {v:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_final(&self, id: &MessageId) -> MessageView {
        self.wait(id, "every recipient final", |v| {
            v.recipients.iter().all(|r| r.state.is_final())
        })
        .await
    }

    /// Recipients in the store, over all messages (DSNs included).
    async fn recipient_total(&self) -> i64 {
        self.store
            .count_recipients_by_state()
            .await
            .expect("count")
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}

fn start_on(
    store: impl mailroom_delivery::DeliveryStore,
    cfg: DeliveryConfig,
    resolver: Arc<dyn Resolver>,
) -> Running {
    let token = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let engine = Engine::new(cfg, store, resolver, wake.clone(), token.clone());
    Running {
        token,
        wake,
        handle: tokio::spawn(engine.run()),
    }
}

/// Polls `probe` until it gives a value; panics at the deadline.
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

/// Waits until the wall clock passes `at` (Unix ms), bounded by the deadline.
async fn until_after(at: i64) {
    eventually("the clock to pass a point", async || {
        (now_millis() > at).then_some(())
    })
    .await;
}

fn rcpt<'a>(v: &'a MessageView, address: &str) -> &'a RecipientView {
    v.recipients
        .iter()
        .find(|r| r.address == address)
        .unwrap_or_else(|| panic!("no recipient {address} in {v:#?}"))
}

fn kinds(r: &RecipientView) -> Vec<EventType> {
    r.events.iter().map(|e| e.kind).collect()
}

fn last(r: &RecipientView) -> &Event {
    r.events.last().expect("at least one event")
}

fn code(e: &Event) -> u64 {
    e.detail["reply"]["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no reply code in {e:?}"))
}

fn enhanced(e: &Event) -> &str {
    e.detail["reply"]["enhanced"]
        .as_str()
        .unwrap_or_else(|| panic!("no enhanced code in {e:?}"))
}

/// `accepted`, then at least one `deferred`, then `last_kind` — nothing else.
fn assert_deferred_then(r: &RecipientView, last_kind: EventType) {
    let k = kinds(r);
    assert!(k.len() >= 3, "{}: {k:?}", r.address);
    assert_eq!(k[0], EventType::Accepted, "{}: {k:?}", r.address);
    assert_eq!(*k.last().unwrap(), last_kind, "{}: {k:?}", r.address);
    assert!(
        k[1..k.len() - 1].iter().all(|e| *e == EventType::Deferred),
        "{}: {k:?}",
        r.address
    );
    assert_eq!(
        r.attempts as usize,
        k.len() - 1,
        "{}: one attempt per event",
        r.address
    );
}

/// The sink got exactly one transaction for `address`, carrying exactly `body` (the
/// sink un-stuffs dots, so this also checks the dot-stuffing round trip).
fn assert_delivered_once(sink: &Sink, address: &str, body: &[u8]) -> Received {
    let got: Vec<Received> = sink
        .messages()
        .into_iter()
        .filter(|m| m.rcpts.iter().any(|r| r == address))
        .collect();
    let summary: Vec<String> = got
        .iter()
        .map(|m| {
            format!(
                "MAIL FROM:<{}> RCPT {:?}, {} bytes",
                m.mail_from,
                m.rcpts,
                m.body.len()
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        1,
        "{address} delivered exactly once: {summary:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&got[0].body),
        String::from_utf8_lossy(body),
        "body for {address} arrives byte for byte"
    );
    got[0].clone()
}

/// Bounce reports the sink received for `to` (null sender).
fn dsns_to(sink: &Sink, to: &str) -> Vec<Received> {
    sink.messages()
        .into_iter()
        .filter(|m| m.mail_from.is_empty() && m.rcpts.iter().any(|r| r == to))
        .collect()
}

/// A parsed RFC 3464 report: per-recipient field groups of the delivery-status part,
/// keyed by lowercase field name, and the report's own message id in the store.
struct Report {
    recipients: Vec<HashMap<String, String>>,
    per_message: HashMap<String, String>,
    id: MessageId,
    returned_subject: Option<String>,
}

fn fields(group: &str) -> HashMap<String, String> {
    group
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn parse_report(raw: &[u8]) -> Report {
    let m = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("report parses");
    assert!(
        m.is_content_type("multipart", "report"),
        "report is multipart/report: {}",
        String::from_utf8_lossy(raw)
    );
    assert_eq!(
        m.content_type().and_then(|c| c.attribute("report-type")),
        Some("delivery-status")
    );
    assert_eq!(m.subject(), Some("Undelivered Mail Returned to Sender"));
    let status = m
        .parts()
        .find(|p| p.is_content_type("message", "delivery-status"))
        .expect("a message/delivery-status part");
    let text = String::from_utf8_lossy(status.raw_body()).replace("\r\n\r\n\r\n", "\r\n\r\n");
    let mut groups = text
        .split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(fields);
    let per_message = groups.next().expect("per-message fields");
    let recipients: Vec<_> = groups.collect();
    let returned_subject = m
        .parts()
        .find(|p| p.is_content_type("message", "rfc822"))
        .and_then(|p| p.nested())
        .and_then(|n| n.subject().map(str::to_string));
    // Message-ID: <dsn.{lowercase id}@{helo}>
    let mid = m.message_id().expect("report has a Message-ID");
    let token = mid
        .trim_start_matches('<')
        .strip_prefix("dsn.")
        .and_then(|s| s.split('@').next())
        .expect("dsn.<id>@host");
    Report {
        recipients,
        per_message,
        id: MessageId::parse(&token.to_ascii_uppercase()).expect("report id is a message id"),
        returned_subject,
    }
}

fn report_for<'a>(r: &'a Report, address: &str) -> &'a HashMap<String, String> {
    r.recipients
        .iter()
        .find(|g| {
            g.get("final-recipient")
                .is_some_and(|v| v == &format!("rfc822; {address}"))
        })
        .unwrap_or_else(|| panic!("no Final-Recipient {address} in {:?}", r.recipients))
}

// ---------------------------------------------------------------------------------
// 1. Static route: delivered, bounced, and the bounce report
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_route_delivers_bounces_and_reports_to_the_sender() {
    let (addr, sink) = sink::spawn().await;
    // The sink takes 150 ms to answer DATA: the attempt's recorded duration shows it.
    sink.data_delay_ms.store(150, Ordering::SeqCst);
    let h = Harness::new().await;
    let engine = h.start(via(addr), no_dns());

    let (id, body) = h
        .send(
            SENDER,
            vec![
                to("ok@dest.test"),
                to("bad@dest.test"),
                to("block@dest.test"),
            ],
        )
        .await;
    let v = h.wait_final(&id).await;

    let ok = rcpt(&v, "ok@dest.test");
    assert_eq!(ok.state, RecipientState::Delivered);
    assert_eq!(ok.attempts, 1);
    assert_eq!(kinds(ok), [EventType::Accepted, EventType::Delivered]);
    let e = last(ok);
    assert_eq!(code(e), 250);
    assert_eq!(enhanced(e), "2.0.0");
    assert_eq!(e.detail["remote_mx"], "127.0.0.1");
    assert_eq!(e.detail["remote_ip"], "127.0.0.1");
    assert_eq!(e.detail["attempt"], 1);
    assert!(e.detail["tls"].is_null(), "no TLS on a TlsMode::None route");
    let took = e.detail["duration_ms"]
        .as_u64()
        .expect("duration_ms recorded");
    assert!((150..30_000).contains(&took), "duration_ms {took}");
    assert!(ok.last_reply.as_deref().unwrap().contains("queued at sink"));

    let bad = rcpt(&v, "bad@dest.test");
    assert_eq!(bad.state, RecipientState::Bounced);
    assert_eq!(bad.attempts, 1);
    assert_eq!(kinds(bad), [EventType::Accepted, EventType::Bounced]);
    let e = last(bad);
    assert_eq!(code(e), 550);
    assert_eq!(enhanced(e), "5.1.1");
    assert_eq!(e.detail["bounce_class"], "hard");
    assert_eq!(e.detail["bounce_category"], "bad_mailbox");
    assert_eq!(e.detail["remote_mx"], "127.0.0.1");

    let block = rcpt(&v, "block@dest.test");
    assert_eq!(block.state, RecipientState::Bounced);
    let e = last(block);
    assert_eq!(code(e), 554);
    assert_eq!(enhanced(e), "5.7.1");
    assert_eq!(e.detail["bounce_class"], "soft");
    assert_eq!(e.detail["bounce_category"], "policy_block");

    // One transaction: MAIL FROM the sender, only the accepted recipient, exact body.
    let got = assert_delivered_once(&sink, "ok@dest.test", &body);
    assert_eq!(got.mail_from, SENDER);
    assert_eq!(got.rcpts, ["ok@dest.test"]);
    assert_eq!(sink.delivered_to("bad@dest.test"), 0);
    assert_eq!(sink.delivered_to("block@dest.test"), 0);

    // The bounce report goes from the null sender to the original sender, through `*`.
    let dsn = eventually("the bounce report at the sink", async || {
        dsns_to(&sink, SENDER).into_iter().next()
    })
    .await;
    assert_eq!(dsn.rcpts, [SENDER]);
    let report = parse_report(&dsn.body);
    assert_eq!(
        report.per_message.get("reporting-mta").map(String::as_str),
        Some("dns; relay.mailroom.test")
    );
    assert_eq!(report.recipients.len(), 2, "{:?}", report.recipients);
    let b = report_for(&report, "bad@dest.test");
    assert_eq!(b["action"], "failed");
    assert_eq!(b["status"], "5.1.1");
    assert_eq!(b["remote-mta"], "dns; 127.0.0.1");
    assert!(b["diagnostic-code"].contains("no such user"), "{b:?}");
    let k = report_for(&report, "block@dest.test");
    assert_eq!(k["action"], "failed");
    assert_eq!(k["status"], "5.7.1");
    assert!(
        !report
            .recipients
            .iter()
            .any(|g| g["final-recipient"].contains("ok@dest.test")),
        "the delivered recipient is not reported"
    );
    // RET unset: the whole original message comes back.
    let subject = format!("test {}", id.as_str().to_ascii_lowercase());
    assert_eq!(report.returned_subject.as_deref(), Some(subject.as_str()));

    // The report is a message of its own in the store, delivered, and never reported on.
    let r = h.wait_final(&report.id).await;
    assert_eq!(r.mail_from, "");
    assert_eq!(r.source, "dsn");
    assert_eq!(r.recipients.len(), 1);
    assert_eq!(r.recipients[0].address, SENDER);
    assert_eq!(r.recipients[0].state, RecipientState::Delivered);
    assert_eq!(r.recipients[0].dsn_notify.as_deref(), Some("NEVER"));
    assert_eq!(
        dsns_to(&sink, SENDER).len(),
        1,
        "one report for one message"
    );

    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// 2. Temporary failure, then delivery on retry
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greylisted_recipient_is_deferred_then_delivered() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let engine = h.start(via(addr), no_dns());

    let (id, body) = h.send(SENDER, vec![to("later@dest.test")]).await;
    let v = h.wait_final(&id).await;
    let r = rcpt(&v, "later@dest.test");
    assert_eq!(r.state, RecipientState::Delivered);
    assert_eq!(r.attempts, 2);
    assert_eq!(
        kinds(r),
        [
            EventType::Accepted,
            EventType::Deferred,
            EventType::Delivered
        ]
    );
    let deferred = &r.events[1];
    assert_eq!(code(deferred), 451);
    assert_eq!(enhanced(deferred), "4.2.0");
    assert_eq!(deferred.detail["attempt"], 1);
    assert_eq!(deferred.detail["remote_mx"], "127.0.0.1");
    // No jitter: the next attempt is exactly one retry step after the failure.
    let next = deferred.detail["next_attempt_at"]
        .as_i64()
        .expect("deferred event has next_attempt_at");
    assert_eq!(next, deferred.at + 200);
    let delivered = &r.events[2];
    assert_eq!(delivered.detail["attempt"], 2);
    assert!(delivered.at >= next, "not retried before its time");
    assert_eq!(r.next_attempt_at, None);
    assert_delivered_once(&sink, "later@dest.test", &body);
    assert!(
        dsns_to(&sink, SENDER).is_empty(),
        "no report for a delivery"
    );

    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// 3. Expiry, and who gets a report
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_reports_to_the_sender_except_notify_never_and_null_sender() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        retry: retry(Duration::from_millis(200), Duration::from_secs(1)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    let (m1, _) = h
        .send(
            SENDER,
            vec![
                to("full@dest.test"),
                to_notify("full-never@dest.test", "NEVER"),
            ],
        )
        .await;
    let (m2, _) = h.send("", vec![to("full-null@dest.test")]).await;

    let v1 = h.wait_final(&m1).await;
    let v2 = h.wait_final(&m2).await;
    for (v, address) in [
        (&v1, "full@dest.test"),
        (&v1, "full-never@dest.test"),
        (&v2, "full-null@dest.test"),
    ] {
        let r = rcpt(v, address);
        assert_eq!(r.state, RecipientState::Expired, "{address}");
        assert_deferred_then(r, EventType::Expired);
        let deadline = v.received_at + 1000;
        for e in &r.events[1..r.events.len() - 1] {
            assert_eq!(code(e), 452, "{address}: {e:?}");
            let next = e.detail["next_attempt_at"].as_i64().expect("next attempt");
            assert!(next <= deadline, "retries are clamped to the lifetime");
        }
        let expired = last(r);
        assert_eq!(code(expired), 452);
        assert_eq!(enhanced(expired), "4.2.2");
        assert!(
            expired.at >= deadline,
            "expired only once the lifetime is over"
        );
        assert_eq!(sink.delivered_to(address), 0);
    }

    // One report, to the sender, naming only the recipient that did not say NEVER.
    let dsn = eventually("the expiry report at the sink", async || {
        dsns_to(&sink, SENDER).into_iter().next()
    })
    .await;
    let report = parse_report(&dsn.body);
    assert_eq!(report.recipients.len(), 1, "{:?}", report.recipients);
    let f = report_for(&report, "full@dest.test");
    assert_eq!(f["action"], "failed");
    assert_eq!(
        f["status"], "5.2.2",
        "a temporary code is reported as permanent"
    );

    h.wait_final(&report.id).await;
    // Stopping flushes the outcome recorder, which queues reports after it writes the
    // outcomes: whatever report was due is in the store now.
    engine.stop().await;
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|m| m.mail_from.is_empty())
            .count(),
        1,
        "no report for NOTIFY=NEVER, none to the null sender"
    );
    // 3 original recipients + 1 report.
    assert_eq!(h.recipient_total().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_bounce_report_for_a_tenant_that_turned_them_off() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let t = h
        .store
        .update_tenant(
            &h.tenant,
            TenantSettings {
                bounce_reports: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!t.bounce_reports);
    let engine = h.start(via(addr), no_dns());
    let (id, _) = h.send(SENDER, vec![to("bad@dest.test")]).await;
    let v = h.wait_final(&id).await;
    assert_eq!(v.recipients[0].state, RecipientState::Bounced);
    engine.stop().await;
    assert_eq!(h.recipient_total().await, 1, "no report was queued");
    assert!(dsns_to(&sink, SENDER).is_empty());
}

// ---------------------------------------------------------------------------------
// 4. Connection-level trouble: 421 greeting, connection lost during DATA
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greeting_421_defers_everything_until_the_server_recovers() {
    let (addr, sink) = sink::spawn().await;
    sink.greet_421.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        retry: retry(Duration::from_millis(300), Duration::from_secs(3600)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    let (a, body_a) = h
        .send(SENDER, vec![to("ok1@dest.test"), to("ok2@other.test")])
        .await;
    let (b, body_b) = h.send(SENDER, vec![to("ok3@dest.test")]).await;
    for id in [&a, &b] {
        let v = h
            .wait(id, "every recipient deferred", |v| {
                v.recipients
                    .iter()
                    .all(|r| r.events.iter().any(|e| e.kind == EventType::Deferred))
            })
            .await;
        for r in &v.recipients {
            let e = r
                .events
                .iter()
                .find(|e| e.kind == EventType::Deferred)
                .unwrap();
            assert_eq!(code(e), 421, "{}", r.address);
            assert_eq!(enhanced(e), "4.3.2", "{}", r.address);
            assert_eq!(e.detail["remote_mx"], "127.0.0.1");
            assert!(e.detail["next_attempt_at"].is_i64());
        }
    }
    assert!(sink.messages().is_empty());
    assert!(sink.connections.load(Ordering::SeqCst) >= 1);

    sink.greet_421.store(false, Ordering::SeqCst);
    for (id, addresses) in [
        (&a, vec!["ok1@dest.test", "ok2@other.test"]),
        (&b, vec!["ok3@dest.test"]),
    ] {
        let v = h.wait_final(id).await;
        for address in addresses {
            let r = rcpt(&v, address);
            assert_eq!(r.state, RecipientState::Delivered, "{address}");
            assert_deferred_then(r, EventType::Delivered);
        }
    }
    assert_delivered_once(&sink, "ok1@dest.test", &body_a);
    assert_delivered_once(&sink, "ok2@other.test", &body_a);
    assert_delivered_once(&sink, "ok3@dest.test", &body_b);

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_lost_in_data_is_retried_and_delivered_once() {
    let (addr, sink) = sink::spawn().await;
    sink.drop_in_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        retry: retry(Duration::from_millis(300), Duration::from_secs(3600)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    let (id, body) = h.send(SENDER, vec![to("ok@dest.test")]).await;
    let v = h
        .wait(&id, "a deferral", |v| {
            v.recipients[0].state == RecipientState::Deferred
        })
        .await;
    let e = &v.recipients[0].events[1];
    assert_eq!(e.kind, EventType::Deferred);
    assert_eq!(code(e) / 100, 4, "{e:?}");
    assert!(enhanced(e).starts_with("4."), "{e:?}");
    assert!(sink.messages().is_empty());

    sink.drop_in_data.store(false, Ordering::SeqCst);
    let v = h.wait_final(&id).await;
    let r = &v.recipients[0];
    assert_eq!(r.state, RecipientState::Delivered);
    assert_deferred_then(r, EventType::Delivered);
    assert_delivered_once(&sink, "ok@dest.test", &body);

    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// 5, 6. MX routing through real DNS
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mx_routing_through_the_resolver() {
    let (addr, sink) = sink::spawn().await;
    let zone = TestZone::new()
        .mx("mx.test", 10, "mail.mx.test")
        .a("mail.mx.test", Ipv4Addr::LOCALHOST)
        .null_mx("nullmx.test")
        .nxdomain("nx.test")
        .servfail("servfail.test")
        .a("implicit.test", Ipv4Addr::LOCALHOST);
    let (dns_addr, dns) = spawn_dns(zone).await;
    let resolver = HickoryResolver::with_nameservers(&[dns_addr], Duration::from_millis(500))
        .expect("resolver");
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        mx_port: addr.port(),
        ..config()
    };
    let engine = h.start(cfg, Arc::new(resolver));

    // Reports go back to a domain whose MX is the sink.
    let sender = "app@mx.test";
    let (id, body) = h
        .send(
            sender,
            vec![
                to("ok@mx.test"),
                to("ok@nullmx.test"),
                to("ok@nx.test"),
                to("ok@servfail.test"),
                to("ok@implicit.test"),
            ],
        )
        .await;
    let v = h
        .wait(&id, "four final fates and a deferral", |v| {
            v.recipients
                .iter()
                .filter(|r| r.address != "ok@servfail.test")
                .all(|r| r.state.is_final())
                && rcpt(v, "ok@servfail.test").attempts >= 1
        })
        .await;

    let r = rcpt(&v, "ok@mx.test");
    assert_eq!(r.state, RecipientState::Delivered);
    assert_eq!(last(r).detail["remote_mx"], "mail.mx.test");
    assert_eq!(last(r).detail["remote_ip"], "127.0.0.1");

    let r = rcpt(&v, "ok@implicit.test");
    assert_eq!(r.state, RecipientState::Delivered, "implicit MX");
    assert_eq!(last(r).detail["remote_mx"], "implicit.test");

    let r = rcpt(&v, "ok@nullmx.test");
    assert_eq!(r.state, RecipientState::Bounced);
    assert_eq!(r.attempts, 1);
    let e = last(r);
    assert_eq!(enhanced(e), "5.1.10");
    assert_eq!(e.detail["bounce_class"], "hard");
    assert_eq!(e.detail["bounce_category"], "bad_domain");
    assert!(
        e.detail["remote_mx"].is_null(),
        "no exchanger was contacted"
    );

    let r = rcpt(&v, "ok@nx.test");
    assert_eq!(r.state, RecipientState::Bounced);
    let e = last(r);
    assert_eq!(enhanced(e), "5.1.2");
    assert_eq!(e.detail["bounce_class"], "hard");
    assert_eq!(e.detail["bounce_category"], "bad_domain");

    let r = rcpt(&v, "ok@servfail.test");
    assert_eq!(r.state, RecipientState::Deferred);
    assert!(
        r.events[1..].iter().all(|e| e.kind == EventType::Deferred),
        "{:?}",
        kinds(r)
    );
    let e = &r.events[1];
    assert_eq!(enhanced(e), "4.4.3");
    assert!(e.detail["next_attempt_at"].is_i64());

    // Two destinations, two transactions, each recipient once, bytes intact.
    assert_delivered_once(&sink, "ok@mx.test", &body);
    assert_delivered_once(&sink, "ok@implicit.test", &body);
    assert_eq!(sink.delivered_to("ok@servfail.test"), 0);

    // One report per bounced recipient (separate attempts), via the sender's MX.
    let dsns = eventually("two bounce reports", async || {
        let d = dsns_to(&sink, sender);
        (d.len() >= 2).then_some(d)
    })
    .await;
    let reports: Vec<Report> = dsns.iter().map(|d| parse_report(&d.body)).collect();
    let status = |address: &str| {
        reports
            .iter()
            .flat_map(|r| r.recipients.iter())
            .find(|g| g["final-recipient"] == format!("rfc822; {address}"))
            .map(|g| g["status"].clone())
    };
    assert_eq!(status("ok@nullmx.test").as_deref(), Some("5.1.10"));
    assert_eq!(status("ok@nx.test").as_deref(), Some("5.1.2"));

    let asked = dns.queries();
    assert!(asked.iter().any(|q| q == "mx.test. MX"), "{asked:?}");
    assert!(asked.iter().any(|q| q == "implicit.test. A"), "{asked:?}");

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mx_preference_falls_back_to_the_next_exchanger() {
    let (addr, sink) = sink::spawn().await;
    // Precondition: nothing answers on 127.0.0.2 at the sink's port (the sink is bound
    // to 127.0.0.1 only).
    assert!(
        tokio::net::TcpStream::connect((Ipv4Addr::new(127, 0, 0, 2), addr.port()))
            .await
            .is_err(),
        "127.0.0.2:{} must refuse connections for this test",
        addr.port()
    );
    let zone = TestZone::new()
        .mx("pref.test", 10, "mx1.pref.test")
        .mx("pref.test", 20, "mx2.pref.test")
        .a("mx1.pref.test", Ipv4Addr::new(127, 0, 0, 2))
        .a("mx2.pref.test", Ipv4Addr::LOCALHOST);
    let (dns_addr, _dns) = spawn_dns(zone).await;
    let resolver = HickoryResolver::with_nameservers(&[dns_addr], Duration::from_millis(500))
        .expect("resolver");
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        mx_port: addr.port(),
        dsn: false,
        ..config()
    };
    let engine = h.start(cfg, Arc::new(resolver));

    let (id, body) = h.send(SENDER, vec![to("ok@pref.test")]).await;
    let v = h.wait_final(&id).await;
    let r = &v.recipients[0];
    assert_eq!(r.state, RecipientState::Delivered);
    assert_eq!(r.attempts, 1, "the fallback happens within one attempt");
    assert_eq!(kinds(r), [EventType::Accepted, EventType::Delivered]);
    assert_eq!(last(r).detail["remote_mx"], "mx2.pref.test");
    assert_eq!(last(r).detail["remote_ip"], "127.0.0.1");
    assert_delivered_once(&sink, "ok@pref.test", &body);

    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// 7. Loop and SSRF protection
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_private_addresses_unless_allowed() {
    let (addr, sink) = sink::spawn().await;
    let resolver = StaticResolver::new()
        .with_mx("private.test", 10, "mx.private.test")
        .with_ip("mx.private.test", Ipv4Addr::LOCALHOST);
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        mx_port: addr.port(),
        allow_private: false,
        dsn: false,
        ..config()
    };
    let engine = h.start(cfg, Arc::new(resolver));

    let (id, _) = h.send(SENDER, vec![to("ok@private.test")]).await;
    let v = h.wait_final(&id).await;
    let r = &v.recipients[0];
    assert_eq!(r.state, RecipientState::Bounced);
    assert_eq!(kinds(r), [EventType::Accepted, EventType::Bounced]);
    let e = last(r);
    assert_eq!(code(e), 550);
    assert_eq!(enhanced(e), "5.4.4");
    assert!(
        e.detail["reply"]["text"]
            .as_str()
            .unwrap()
            .contains("refused")
    );
    assert_eq!(e.detail["bounce_class"], "hard");
    assert!(e.detail["remote_mx"].is_null());
    assert_eq!(
        sink.connections.load(Ordering::SeqCst),
        0,
        "never dialled the private address"
    );

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_to_deliver_to_its_own_listeners() {
    let (addr, sink) = sink::spawn().await;
    let resolver = StaticResolver::new()
        .with_mx("loop.test", 10, "mx.loop.test")
        .with_ip("mx.loop.test", Ipv4Addr::LOCALHOST);
    let h = Harness::new().await;
    let wildcard: SocketAddr = (Ipv4Addr::UNSPECIFIED, addr.port()).into();
    let cfg = DeliveryConfig {
        mx_port: addr.port(),
        own_listeners: vec![wildcard],
        dsn: false,
        // A static route that points at ourselves is a loop too.
        routes: vec![route(&["routed-loop.test"], addr)],
        ..config()
    };
    let engine = h.start(cfg, Arc::new(resolver));

    let (id, _) = h
        .send(SENDER, vec![to("ok@loop.test"), to("ok@routed-loop.test")])
        .await;
    let v = h.wait_final(&id).await;
    for r in &v.recipients {
        assert_eq!(r.state, RecipientState::Bounced, "{}", r.address);
        let e = last(r);
        assert_eq!(enhanced(e), "5.4.6", "{}", r.address);
        assert!(
            e.detail["reply"]["text"]
                .as_str()
                .unwrap()
                .contains("loops back"),
            "{e:?}"
        );
    }
    assert_eq!(sink.connections.load(Ordering::SeqCst), 0);

    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// 8. Connection reuse
// ---------------------------------------------------------------------------------

/// Enqueues `n` messages to `address`, each with its own body.
async fn send_many(h: &Harness, n: usize, address: &str) -> Vec<(MessageId, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(h.send(SENDER, vec![to(address)]).await);
    }
    out
}

/// Every message was delivered at the first attempt and the sink holds each body once.
async fn assert_all_delivered_once(h: &Harness, sink: &Sink, sent: &[(MessageId, Vec<u8>)]) {
    for (id, _) in sent {
        let v = h.wait_final(id).await;
        assert_eq!(v.recipients[0].state, RecipientState::Delivered);
        assert_eq!(v.recipients[0].attempts, 1);
    }
    let got = sink.messages();
    assert_eq!(got.len(), sent.len(), "one transaction per message");
    for (id, body) in sent {
        assert_eq!(
            got.iter().filter(|m| &m.body == body).count(),
            1,
            "message {id} arrived exactly once, byte for byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_are_reused_across_messages() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let sent = send_many(&h, 20, "ok@reuse.test").await;
    let cfg = DeliveryConfig {
        per_destination_connections: 3,
        max_messages_per_connection: 100,
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());
    assert_all_delivered_once(&h, &sink, &sent).await;
    let connections = sink.connections.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&connections),
        "20 messages over {connections} connections (limit 3)"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_carries_at_most_max_messages() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let sent = send_many(&h, 20, "ok@reuse.test").await;
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        max_messages_per_connection: 5,
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());
    assert_all_delivered_once(&h, &sink, &sent).await;
    assert_eq!(
        sink.connections.load(Ordering::SeqCst),
        4,
        "20 messages, 5 per connection"
    );
    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// 9. Shutdown
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_the_message_in_flight_and_loses_nothing() {
    let (addr, sink) = sink::spawn().await;
    sink.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let sent = send_many(&h, 20, "ok@dest.test").await;
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        ..via(addr)
    };
    let engine = h.start(cfg.clone(), no_dns());

    // One message is in flight (data sent, reply held), the rest wait behind it.
    eventually("a message in flight", async || {
        (sink.holding.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    engine.token.cancel();
    sink.hold_data.store(false, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), engine.handle)
        .await
        .expect("engine.run() returns within 5 s of shutdown")
        .expect("engine task did not panic");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The message in flight was finished and recorded; nothing else was touched.
    let mut remaining = Vec::new();
    for (id, body) in &sent {
        let v = h.view(id).await;
        let r = &v.recipients[0];
        let at_sink = sink.messages().iter().filter(|m| &m.body == body).count();
        match r.state {
            RecipientState::Delivered => {
                assert_eq!(at_sink, 1, "{id}");
                assert_eq!(kinds(r), [EventType::Accepted, EventType::Delivered]);
            }
            RecipientState::Queued => {
                assert_eq!(at_sink, 0, "{id}");
                assert_eq!(r.attempts, 0, "{id}");
                assert_eq!(kinds(r), [EventType::Accepted], "{id}");
                remaining.push(id.clone());
            }
            other => panic!("{id} is {other} after shutdown"),
        }
    }
    assert!(
        !remaining.is_empty() && remaining.len() < sent.len(),
        "{} of {} still queued",
        remaining.len(),
        sent.len()
    );

    // A new engine on the same store delivers the rest promptly: the claims were given
    // back (with the default 60-second lease they would otherwise wait).
    assert_eq!(cfg.lease, Duration::from_secs(60));
    let engine = h.start(cfg, no_dns());
    assert_all_delivered_once(&h, &sink, &sent).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn shutdown_starts_no_new_message() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    send_many(&h, 30, "ok@dest.test").await;
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        ..via(addr)
    };
    // Each round: one message in flight at shutdown, many waiting behind it. Only the
    // one in flight may be delivered. (A coin flip per round when the worker picks
    // between its queue and the shutdown signal: six rounds make a miss unlikely.)
    for round in 0..6 {
        sink.hold_data.store(true, Ordering::SeqCst);
        let before = sink.messages().len();
        let engine = h.start(cfg.clone(), no_dns());
        eventually("a message in flight", async || {
            (sink.holding.load(Ordering::SeqCst) == 1).then_some(())
        })
        .await;
        engine.token.cancel();
        sink.hold_data.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), engine.handle)
            .await
            .expect("engine.run() returns")
            .expect("no panic");
        let delivered = sink.messages().len() - before;
        assert_eq!(
            delivered, 1,
            "round {round}: {delivered} messages delivered after shutdown began"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn shutdown_releases_queued_work_while_a_delivery_is_stuck() {
    let (tarpit, accepted) = sink::spawn_tarpit().await;
    let h = Harness::new().await;
    let sent = send_many(&h, 3, "ok@stuck.test").await;
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        // Production timeouts: the greeting wait is 5 minutes.
        timeouts: Timeouts::default(),
        ..via(tarpit)
    };
    let engine = h.start(cfg, no_dns());
    eventually("a connection stuck waiting for the greeting", async || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    engine.token.cancel();

    // The message in flight may keep its lease; the two that never left the
    // destination queue must be given back promptly, so that the next start (after
    // the binary's grace period) does not wait out a 10-minute lease.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut released = 0;
    while Instant::now() < deadline && released < 2 {
        let now = now_millis();
        let lease = mailroom_store::Lease::new("probe", now + 1);
        let claimed = h.store.claim_due(&lease, now, 100).await.expect("claim");
        released = claimed.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        released,
        sent.len() - 1,
        "queued recipients still leased 5 s after shutdown (run() finished: {})",
        engine.handle.is_finished()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn the_next_start_delivers_what_a_stuck_shutdown_left_claimed() {
    let (tarpit, accepted) = sink::spawn_tarpit().await;
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let sent = send_many(&h, 3, "ok@stuck.test").await;
    let stuck_cfg = DeliveryConfig {
        per_destination_connections: 1,
        timeouts: Timeouts::default(),
        ..via(tarpit)
    };
    let old = h.start(stuck_cfg, no_dns());
    eventually("a connection stuck waiting for the greeting", async || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // The old run cannot finish (it waits for the greeting up to 5 minutes), as when
    // the binary's grace period runs out; the operator starts again with a working
    // route. Every recipient, the one in flight included, is delivered once.
    old.token.cancel();
    let engine = h.start(via(addr), no_dns());
    assert_all_delivered_once(&h, &sink, &sent).await;
    engine.stop().await;
    assert!(!old.handle.is_finished(), "the old run is still stuck");
    old.handle.abort();
}

// ---------------------------------------------------------------------------------
// 10. Queue control: cancel and retry now
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_a_deferred_message_for_good() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        retry: retry(Duration::from_millis(500), Duration::from_secs(3600)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    let (id, _) = h.send(SENDER, vec![to("later-cancel@dest.test")]).await;
    let v = h
        .wait(&id, "a deferral", |v| {
            v.recipients[0].state == RecipientState::Deferred
        })
        .await;
    let next = v.recipients[0].next_attempt_at.expect("next attempt");
    assert_eq!(h.store.cancel(&id, now_millis()).await.unwrap(), 1);
    let v = h.view(&id).await;
    let r = &v.recipients[0];
    assert_eq!(r.state, RecipientState::Cancelled);
    assert_eq!(
        kinds(r),
        [
            EventType::Accepted,
            EventType::Deferred,
            EventType::Cancelled
        ]
    );
    assert_eq!(last(r).detail["state"], "cancelled");
    assert_eq!(
        h.store.cancel(&id, now_millis()).await.unwrap(),
        0,
        "nothing left to cancel"
    );
    assert_eq!(h.store.retry_now(&id, now_millis()).await.unwrap(), 0);

    // Past the time it would have been retried, and after a later message went
    // through the same destination, it is still cancelled and never delivered.
    until_after(next + 200).await;
    let (probe, _) = h.send(SENDER, vec![to("ok@dest.test")]).await;
    h.wait_final(&probe).await;
    let v = h.view(&id).await;
    assert_eq!(v.recipients[0].state, RecipientState::Cancelled);
    assert_eq!(v.recipients[0].events.len(), 3);
    assert_eq!(v.recipients[0].attempts, 1);
    assert_eq!(sink.delivered_to("later-cancel@dest.test"), 0);

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_now_makes_a_deferred_recipient_due_at_once() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        // Far beyond the test's deadline: only retry_now can bring it back in time.
        retry: retry(Duration::from_secs(600), Duration::from_secs(3600)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    let (id, body) = h.send(SENDER, vec![to("later-retry@dest.test")]).await;
    let v = h
        .wait(&id, "a deferral", |v| {
            v.recipients[0].state == RecipientState::Deferred
        })
        .await;
    let next = v.recipients[0].next_attempt_at.expect("next attempt");
    assert!(next >= now_millis() + 500_000, "scheduled ten minutes out");

    assert_eq!(h.store.retry_now(&id, now_millis()).await.unwrap(), 1);
    engine.wake.notify_one();
    let v = h.wait_final(&id).await;
    let r = &v.recipients[0];
    assert_eq!(r.state, RecipientState::Delivered);
    assert_eq!(r.attempts, 2);
    assert_eq!(
        kinds(r),
        [
            EventType::Accepted,
            EventType::Deferred,
            EventType::Delivered
        ]
    );
    assert_delivered_once(&sink, "later-retry@dest.test", &body);
    assert_eq!(
        h.store.retry_now(&id, now_millis()).await.unwrap(),
        0,
        "nothing left to retry"
    );

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_during_an_attempt_keeps_the_recipient_cancelled() {
    let (addr, sink) = sink::spawn().await;
    sink.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        retry: retry(Duration::from_millis(200), Duration::from_secs(3600)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    let (id, _) = h.send(SENDER, vec![to("ok-cancel@dest.test")]).await;
    eventually("the message in flight", async || {
        (sink.holding.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // The operator cancels while the attempt is in flight; the attempt then fails
    // temporarily (connection lost before the reply to the final dot).
    assert_eq!(h.store.cancel(&id, now_millis()).await.unwrap(), 1);
    sink.drop_in_data.store(true, Ordering::SeqCst);
    sink.hold_data.store(false, Ordering::SeqCst);
    eventually("the held session to end", async || {
        (sink.holding.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    sink.drop_in_data.store(false, Ordering::SeqCst);

    // Two probes through the same (single) worker, the second after any retry of the
    // cancelled recipient would have been due.
    let (p1, _) = h.send(SENDER, vec![to("ok-probe1@dest.test")]).await;
    h.wait_final(&p1).await;
    until_after(now_millis() + 500).await;
    let (p2, _) = h.send(SENDER, vec![to("ok-probe2@dest.test")]).await;
    h.wait_final(&p2).await;

    let v = h.view(&id).await;
    let r = &v.recipients[0];
    assert_eq!(
        sink.delivered_to("ok-cancel@dest.test"),
        0,
        "delivered after it was cancelled: {:?}",
        kinds(r)
    );
    assert_eq!(r.state, RecipientState::Cancelled, "{:?}", kinds(r));

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_during_a_successful_attempt_records_the_delivery() {
    let (addr, sink) = sink::spawn().await;
    sink.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let engine = h.start(via(addr), no_dns());

    let (id, body) = h.send(SENDER, vec![to("ok-late-cancel@dest.test")]).await;
    eventually("the message in flight", async || {
        (sink.holding.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(h.store.cancel(&id, now_millis()).await.unwrap(), 1);
    sink.hold_data.store(false, Ordering::SeqCst);

    // The exchanger took it: that is a fact, recorded over the cancel.
    let v = h
        .wait(&id, "the delivery", |v| {
            v.recipients[0].state == RecipientState::Delivered
        })
        .await;
    assert_eq!(
        kinds(&v.recipients[0]),
        [
            EventType::Accepted,
            EventType::Cancelled,
            EventType::Delivered
        ]
    );
    assert_delivered_once(&sink, "ok-late-cancel@dest.test", &body);
    engine.stop().await;
}

// ---------------------------------------------------------------------------------
// Scheduler and worker limits
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn a_connection_closed_with_421_is_not_reused() {
    let (addr, sink) = sink::spawn().await;
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        idle_timeout: Duration::from_secs(10),
        retry: retry(Duration::from_secs(600), Duration::from_secs(3600)),
        ..via(addr)
    };
    let engine = h.start(cfg, no_dns());

    // The server answers RCPT with 421 and closes the connection.
    let (a, _) = h.send(SENDER, vec![to("close@dest.test")]).await;
    let v = h
        .wait(&a, "a deferral", |v| {
            v.recipients[0].state == RecipientState::Deferred
        })
        .await;
    assert_eq!(code(last(&v.recipients[0])), 421);

    // The next message for the same destination, while the worker is still alive.
    let (b, body) = h.send(SENDER, vec![to("ok@dest.test")]).await;
    engine.wake.notify_one();
    let v = h
        .wait(&b, "an attempt", |v| v.recipients[0].attempts >= 1)
        .await;
    let r = &v.recipients[0];
    assert_eq!(
        kinds(r),
        [EventType::Accepted, EventType::Delivered],
        "first attempt on a fresh connection; got {:?}",
        r.events.last().map(|e| &e.detail)
    );
    assert_delivered_once(&sink, "ok@dest.test", &body);

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn global_connection_limit_does_not_strand_other_destinations() {
    let (addr_a, sink_a) = sink::spawn().await;
    let (addr_b, sink_b) = sink::spawn().await;
    let h = Harness::new().await;
    let (a, body_a) = h.send(SENDER, vec![to("ok@a.test")]).await;
    let (b, body_b) = h.send(SENDER, vec![to("ok@b.test")]).await;
    let cfg = DeliveryConfig {
        max_connections: 1,
        idle_timeout: Duration::from_millis(300),
        routes: vec![route(&["a.test"], addr_a), route(&["b.test"], addr_b)],
        ..config()
    };
    let engine = h.start(cfg, no_dns());

    // One destination gets the only connection; the other must get it once it is
    // free again (after the idle timeout), well within the deadline.
    h.wait_final(&a).await;
    h.wait_final(&b).await;
    assert_delivered_once(&sink_a, "ok@a.test", &body_a);
    assert_delivered_once(&sink_b, "ok@b.test", &body_b);

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn queued_work_waiting_longer_than_the_lease_is_delivered_once() {
    let (addr_a, sink_a) = sink::spawn().await;
    let (addr_b, sink_b) = sink::spawn().await;
    let h = Harness::new().await;
    let (a, body_a) = h.send(SENDER, vec![to("ok@a.test")]).await;
    let (b, body_b) = h.send(SENDER, vec![to("ok@b.test")]).await;
    let cfg = DeliveryConfig {
        // One connection in all: one of the two destinations waits in its queue
        // longer than the lease (renewed meanwhile).
        max_connections: 1,
        idle_timeout: Duration::from_millis(300),
        lease: Duration::from_secs(1),
        routes: vec![route(&["a.test"], addr_a), route(&["b.test"], addr_b)],
        ..config()
    };
    let engine = h.start(cfg, no_dns());
    let va = h.wait_final(&a).await;
    let vb = h.wait_final(&b).await;
    // Let any duplicate still queued run (several leases and idle timeouts).
    until_after(now_millis() + 3000).await;
    for (v, address, sink, body) in [
        (va, "ok@a.test", &sink_a, &body_a),
        (vb, "ok@b.test", &sink_b, &body_b),
    ] {
        assert_delivered_once(sink, address, body);
        let v = h.view(&v.id).await;
        assert_eq!(
            kinds(&v.recipients[0]),
            [EventType::Accepted, EventType::Delivered],
            "{address}"
        );
    }
    engine.stop().await;
}

/// Destination `a.test` stuck: one message held in flight by its sink, its one-slot
/// queue full, and more of its work due, all older than anything else. `b.test` is
/// served by a second sink. The scheduler's store (a spy) counts claim rounds.
struct Stuck {
    h: Harness,
    counting: SpyStore,
    engine: Running,
    sink_a: Arc<Sink>,
    sink_b: Arc<Sink>,
}

async fn stuck_destination() -> Stuck {
    let (addr_a, sink_a) = sink::spawn().await;
    let (addr_b, sink_b) = sink::spawn().await;
    sink_a.hold_data.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let old = now_millis() - 60_000;
    for _ in 0..6 {
        let mut m = h.message(SENDER, vec![to("ok@a.test")]);
        m.received_at = old;
        h.enqueue(m).await;
    }
    let counting = SpyStore::new(h.store.clone());
    let cfg = DeliveryConfig {
        per_destination_connections: 1,
        destination_queue: 1,
        claim_batch: 2,
        routes: vec![route(&["a.test"], addr_a), route(&["b.test"], addr_b)],
        ..config()
    };
    let engine = start_on(counting.clone(), cfg, no_dns());
    eventually("a message in flight to a.test", async || {
        (sink_a.holding.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    Stuck {
        h,
        counting,
        engine,
        sink_a,
        sink_b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn a_full_destination_queue_does_not_make_the_scheduler_spin() {
    let s = stuck_destination().await;
    // Scheduler rounds in one second while a.test is stuck: about one per poll
    // interval (50 ms), not a busy loop of claim + release transactions.
    let before = s.counting.spied.claims.load(Ordering::SeqCst);
    until_after(now_millis() + 1000).await;
    let rounds = s.counting.spied.claims.load(Ordering::SeqCst) - before;
    s.sink_a.hold_data.store(false, Ordering::SeqCst);
    assert!(
        rounds <= 100,
        "{rounds} claim rounds in 1 s with poll_interval 50 ms (busy loop)"
    );
    s.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_destination_queue_does_not_starve_other_destinations() {
    let s = stuck_destination().await;
    let (b, body_b) = s.h.send(SENDER, vec![to("ok@b.test")]).await;
    s.engine.wake.notify_one();
    let v = s.h.wait_final(&b).await;
    assert_eq!(v.recipients[0].state, RecipientState::Delivered);
    assert_delivered_once(&s.sink_b, "ok@b.test", &body_b);
    // a.test is still stuck: nothing of it was lost or delivered meanwhile.
    assert!(s.sink_a.messages().is_empty());
    s.sink_a.hold_data.store(false, Ordering::SeqCst);
    s.engine.stop().await;
}

// ---------------------------------------------------------------------------------
// Faults (SECURITY.md "Faults and their outcomes"): each fault's recorded outcome
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_timeout_defers_and_the_reply_names_the_dns_error() {
    let (addr, sink) = sink::spawn().await;
    let (dns_addr, _dns) = spawn_dns(TestZone::new().timeout("slow.test")).await;
    let resolver = HickoryResolver::with_nameserver_options(
        &[dns_addr],
        mailroom_dns::NameserverOptions {
            timeout: Duration::from_millis(300),
            attempts: 1,
        },
    )
    .expect("resolver");
    let h = Harness::new().await;
    let cfg = DeliveryConfig {
        mx_port: addr.port(),
        ..config()
    };
    let engine = h.start(cfg, Arc::new(resolver));
    let (id, _) = h.send(SENDER, vec![to("ok@slow.test")]).await;
    let v = h
        .wait(&id, "a deferral after the DNS timeout", |v| {
            rcpt(v, "ok@slow.test").attempts >= 1
        })
        .await;
    engine.stop().await;
    let r = rcpt(&v, "ok@slow.test");
    assert_eq!(r.state, RecipientState::Deferred);
    let e = last(r);
    assert_eq!(e.kind, EventType::Deferred);
    assert_eq!(enhanced(e), "4.4.3");
    let text = e.detail["reply"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("DNS timeout"), "{text}");
    assert!(e.detail["next_attempt_at"].is_i64(), "{e:?}");
    assert_eq!(sink.connections.load(Ordering::SeqCst), 0);
}

/// A route to the sink with `tls`, for the STARTTLS fault tests.
fn via_tls(addr: SocketAddr, tls: TlsMode) -> DeliveryConfig {
    DeliveryConfig {
        routes: vec![StaticRoute {
            tls,
            ..route(&["*"], addr)
        }],
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn required_tls_handshake_failure_defers_and_never_sends_in_plain_text() {
    let (addr, sink) = sink::spawn().await;
    sink.broken_starttls.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let engine = h.start(via_tls(addr, TlsMode::Required), no_dns());
    let (id, _) = h.send(SENDER, vec![to("ok@dest.test")]).await;
    let v = h
        .wait(&id, "two deferred attempts", |v| {
            rcpt(v, "ok@dest.test").attempts >= 2
        })
        .await;
    engine.stop().await;
    let r = rcpt(&v, "ok@dest.test");
    assert_eq!(r.state, RecipientState::Deferred);
    for e in &r.events[1..] {
        assert_eq!(e.kind, EventType::Deferred, "{e:?}");
        assert_eq!(enhanced(e), "4.7.5", "{e:?}");
        let text = e.detail["reply"]["text"].as_str().unwrap_or_default();
        assert!(text.starts_with("TLS:"), "{text}");
    }
    assert!(sink.starttls_tries.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        sink.mail_commands.load(Ordering::SeqCst),
        0,
        "never a MAIL FROM in plain text"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opportunistic_tls_failure_is_retried_in_plain_text_and_recorded() {
    let (addr, sink) = sink::spawn().await;
    sink.broken_starttls.store(true, Ordering::SeqCst);
    let h = Harness::new().await;
    let engine = h.start(via_tls(addr, TlsMode::Opportunistic), no_dns());
    let (id, body) = h.send(SENDER, vec![to("ok@dest.test")]).await;
    let v = h.wait_final(&id).await;
    engine.stop().await;
    let r = rcpt(&v, "ok@dest.test");
    assert_eq!(r.state, RecipientState::Delivered);
    assert_eq!(
        r.attempts, 1,
        "the plain-text retry is part of the same attempt"
    );
    let e = last(r);
    assert_eq!(e.detail["tls"], serde_json::Value::Null, "{e:?}");
    let why = e.detail["tls_fallback"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "the fallback is on record: {e:?}");
    assert_eq!(sink.starttls_tries.load(Ordering::SeqCst), 1);
    assert_delivered_once(&sink, "ok@dest.test", &body);
}
