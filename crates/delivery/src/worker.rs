//! A connection worker for one destination: takes work items from the destination's
//! queue, keeps one SMTP connection open across messages (up to a count and an idle
//! time), sends, and records each recipient's outcome. A failure to connect applies to
//! the work in hand and to whatever is waiting for the same destination. Work whose
//! lease is about to run out (renewal failed) is dropped unsent, checked when it is
//! taken and again right before the message goes out.

use crate::engine::{Destination, Engine};
use crate::outcome::{Attempt, record};
use crate::route::{Plan, RouteError, plan};
use crate::shaper::Source;
use crate::tls_policy::{self, TlsDecision};
use crate::worker_shaping::{Before, after_send, before_send};
use mailroom_proto::Reply;
use mailroom_smtp_client::{ClientConfig, ClientError, Connection};

pub(crate) async fn run(engine: &Engine, dest: &Destination) {
    tracing::debug!(destination = %dest.key, "delivery worker started");
    let mut conn: Option<Open> = None;
    // The egress source the open connection was made from (shaping pools), and its
    // slot under the address's connection limit (released with the connection).
    let mut conn_source: Option<Source> = None;
    let mut conn_slot: Option<crate::shaper_conn::AddressSlot> = None;
    loop {
        let next = {
            let mut rx = dest.rx.lock().await;
            tokio::select! {
                // Shutdown first: no new message is started once it is asked for.
                biased;
                _ = engine.shutdown.cancelled() => None,
                w = rx.recv() => w,
                _ = tokio::time::sleep(engine.cfg.idle_timeout) => None,
            }
        };
        let Some(work) = next else { break };
        if stale(&work) {
            continue;
        }
        let body = match &work.body {
            Some(b) => b.clone(),
            None => match engine.store.load_body(work.message_id()).await {
                Ok(Some(b)) => std::sync::Arc::new(b),
                Ok(None) | Err(_) => {
                    let _ = engine.store.release(&engine.cfg.node_id, work.keys()).await;
                    continue;
                }
            },
        };
        if conn.is_none() {
            conn_slot = None;
        }
        let current = conn.as_ref().and(conn_source.as_ref());
        let (source, slot) = match before_send(engine, &dest.key, &work, &body, current).await {
            Before::Send(source, slot) => (source, slot),
            Before::Done => continue,
        };
        if conn.is_some() && source != conn_source {
            // Another tenant's pool, or warm-up moved on: this message leaves from
            // another address.
            if let Some((c, _, _)) = conn.take() {
                c.quit().await;
            }
        }
        // The attempt's duration: from here (connecting included when this message
        // opens the connection) to the last reply.
        let started = std::time::Instant::now();
        if conn.is_none() {
            conn_source = source.clone();
            conn_slot = slot;
            if !crate::worker_shaping::before_connect(engine, &dest.key).await {
                let _ = engine.store.release(&engine.cfg.node_id, work.keys()).await;
                break;
            }
            match open(engine, &dest.key, &work.domain, source.as_ref()).await {
                Ok(c) => conn = Some(c),
                Err(attempt) => {
                    let attempt = after_send(engine, &dest.key, &work, attempt).await;
                    let took = Some(elapsed_ms(started));
                    record(engine, &work, &body, &attempt, took).await;
                    // The destination is unreachable now: the same answer for the waiting work.
                    let mut rx = dest.rx.lock().await;
                    while let Ok(w) = rx.try_recv() {
                        if stale(&w) {
                            continue;
                        }
                        let body = match &w.body {
                            Some(b) => b.clone(),
                            None => std::sync::Arc::new(
                                engine
                                    .store
                                    .load_body(w.message_id())
                                    .await
                                    .ok()
                                    .flatten()
                                    .unwrap_or_default(),
                            ),
                        };
                        record(engine, &w, &body, &attempt, took).await;
                    }
                    break;
                }
            }
        }
        // Connecting may have taken long: check the lease again right before sending.
        if stale(&work) {
            continue;
        }
        let (attempt, reuse) =
            crate::send::send_work(engine, &dest.key, &mut conn, &work, &body, source.as_ref())
                .await;
        let took = Some(elapsed_ms(started));
        let attempt = after_send(engine, &dest.key, &work, attempt).await;
        record(engine, &work, &body, &attempt, took).await;
        let done = conn
            .as_ref()
            .is_some_and(|(c, _, _)| c.messages_sent() >= max_per_connection(engine, &dest.key));
        if (!reuse || done)
            && let Some((c, _, _)) = conn.take()
            && reuse
        {
            c.quit().await;
        }
        if conn.is_none() {
            conn_slot = None;
        }
    }
    drop(conn_slot);
    if let Some((c, _, _)) = conn.take() {
        c.quit().await;
    }
}

/// Milliseconds since `started`, for an attempt's `duration_ms`.
fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The global limit, narrowed by the site's profile when shaping is on.
fn max_per_connection(engine: &Engine, dest_key: &str) -> u32 {
    let global = engine.cfg.max_messages_per_connection;
    engine
        .shaper
        .get()
        .and_then(|s| s.messages_per_connection(dest_key))
        .map_or(global, |p| p.min(global))
}

/// Whether the work's lease is (nearly) gone: renewal failed long enough that
/// another node may claim these recipients, so this copy must not be sent. Dropping
/// the work also stops its renewal; the recipients come due again when the lease runs
/// out.
fn stale(work: &crate::engine::Work) -> bool {
    let stale = !work.lease.usable(mailroom_model::now_millis());
    if stale {
        tracing::warn!(
            message_id = %work.message_id(),
            lease_until = work.lease.until(),
            "dropping work whose lease is running out (renewal failed)"
        );
    }
    stale
}

/// Who answered, for outcomes and events.
#[derive(Clone, Debug)]
pub struct Remote {
    pub host: String,
    pub ip: String,
    pub tls: Option<String>,
    /// The TLS policy applied and what came of it.
    pub decision: Option<TlsDecision>,
    /// The peer offered DSN (RFC 3461): it was handed NOTIFY and reports successes.
    pub dsn: bool,
    /// Opportunistic TLS failed (this says why) and the message went in plain text.
    pub tls_fallback: Option<String>,
}

/// An open connection: the connection, the exchanger's name and the TLS decision.
pub(crate) type Open = (Connection, String, Option<TlsDecision>);

/// Plans the route, applies the TLS policy (MTA-STS) and connects to the first target
/// that answers.
pub(crate) async fn open(
    engine: &Engine,
    dest_key: &str,
    domain: &str,
    source: Option<&Source>,
) -> Result<Open, Attempt> {
    let routing = engine.routing();
    let Plan { targets, tls, auth } = plan(&routing, engine.resolver.as_ref(), domain)
        .await
        .map_err(|e| match e {
            RouteError::Permanent(code, text) => Attempt::Permanent {
                code,
                text,
                remote: None,
            },
            RouteError::Temporary(code, text) => Attempt::Temporary {
                code,
                text,
                remote: None,
            },
        })?;
    if let Some(shaper) = engine.shaper.get() {
        let hosts: Vec<String> = targets.iter().map(|t| t.host.clone()).collect();
        shaper.learn(dest_key, &hosts);
    }
    let is_route = crate::route::static_route(&routing, domain).is_some();
    let mut secured = tls_policy::prepare(engine.tls.get(), domain, is_route, targets, tls)
        .await
        .map_err(|(text, host)| Attempt::Temporary {
            code: (4, 7, 5),
            text,
            remote: host.map(|host| Remote {
                host,
                ip: String::new(),
                tls: None,
                decision: None,
                dsn: false,
                tls_fallback: None,
            }),
        })?;
    if let Some(shaper) = engine.shaper.get() {
        // The site's TLS floor (provider profile or domain override).
        secured.tls = shaper.tls_mode(dest_key, secured.tls);
    }
    let mut cfg = ClientConfig {
        helo_name: source.map_or_else(|| engine.cfg.helo_name.clone(), |s| s.ehlo.clone()),
        tls: secured.tls,
        auth,
        timeouts: engine.cfg.timeouts,
        extra_root: secured.extra_root.clone(),
        source: source.map(|s| s.ip),
        dane: None,
    };
    let mut last = None;
    for t in std::mem::take(&mut secured.targets) {
        let remote = |decision| Remote {
            host: t.host.clone(),
            ip: t.addr.ip().to_string(),
            tls: None,
            decision: Some(decision),
            dsn: false,
            tls_fallback: None,
        };
        if let Err(text) = secured.apply(&t.host, &mut cfg).await {
            // DANE: the TLSA answer is bogus or could not be had; this host waits.
            tracing::info!(domain, host = %t.host, %text, "not connecting");
            last = Some(Attempt::Temporary {
                code: (4, 7, 5),
                remote: Some(remote(secured.failed(&t.host, &text))),
                text,
            });
            continue;
        }
        let mut result = Connection::open(t.addr, &t.host, &cfg).await;
        if let Err(e) = &result
            && let Some(mode) = secured.retry_mode(&t.host, e).await
        {
            // MTA-STS testing: verified TLS failed (counted); deliver as usual.
            let mut relaxed = cfg.clone();
            relaxed.tls = mode;
            result = Connection::open(t.addr, &t.host, &relaxed).await;
        }
        match result {
            Ok(c) => {
                let decision = secured.connected(&t.host, &c).await;
                tracing::debug!(domain, host = %t.host, policy = decision.policy,
                    tls = ?decision.version, verified = decision.certificate_verified,
                    reason = ?decision.reason, "connected");
                return Ok((c, t.host.clone(), Some(decision)));
            }
            Err(e) => {
                tracing::info!(domain, host = %t.host, addr = %t.addr, error = %e, "connection failed");
                let remote = remote(secured.failed(&t.host, &e));
                let attempt = match secured.failure_text(&t.host, &e) {
                    Some(text) => Attempt::Temporary {
                        code: (4, 7, 5),
                        text,
                        remote: Some(remote),
                    },
                    None => Attempt::from_error(&e, Some(remote)),
                };
                // A 5xx greeting is a permanent answer from this host only; try the next.
                last = Some(attempt);
            }
        }
    }
    Err(last.unwrap_or(Attempt::Temporary {
        code: (4, 4, 1),
        text: format!("no reachable exchanger for {domain}"),
        remote: None,
    }))
}

impl Attempt {
    pub(crate) fn from_error(e: &ClientError, remote: Option<Remote>) -> Attempt {
        match e {
            ClientError::Greeting(r)
            | ClientError::Ehlo(r)
            | ClientError::Auth(r)
            | ClientError::Mail(r) => Attempt::Reply {
                remote,
                reply: r.clone(),
            },
            ClientError::Connect(_) | ClientError::Io(_) => Attempt::Temporary {
                code: (4, 4, 1),
                text: format!("connection failed: {e}"),
                remote,
            },
            ClientError::Timeout(_) => Attempt::Temporary {
                code: (4, 4, 2),
                text: format!("{e}"),
                remote,
            },
            ClientError::TlsUnavailable | ClientError::Tls(_) => Attempt::Temporary {
                code: (4, 7, 5),
                text: format!("TLS: {e}"),
                remote,
            },
            ClientError::Protocol(_) => Attempt::Temporary {
                code: (4, 5, 0),
                text: format!("{e}"),
                remote,
            },
            // The exchanger cannot take this message as it is (RFC 6531: no SMTPUTF8).
            // RFC 8689: the message may only go to servers that take REQUIRETLS.
            ClientError::Unsupported(what) if what.contains("REQUIRETLS") => Attempt::Permanent {
                code: (5, 7, 30),
                text: format!("REQUIRETLS: {e}"),
                remote,
            },
            ClientError::Unsupported(what) if what.contains("SMTPUTF8") => Attempt::Permanent {
                code: (5, 6, 7),
                text: format!("{e}"),
                remote,
            },
            // A route that needs an AUTH mechanism the server lacks: configuration, retry.
            ClientError::Unsupported(_) => Attempt::Temporary {
                code: (4, 3, 5),
                text: format!("{e}"),
                remote,
            },
            // RFC 3463 5.3.4: the peer announced a SIZE limit below this message's
            // size; nothing was transferred and a retry cannot change that.
            ClientError::TooLarge { .. } => Attempt::Permanent {
                code: (5, 3, 4),
                text: format!("{e}"),
                remote,
            },
            // Nothing was sent: the envelope cannot be put on the wire.
            ClientError::InvalidInput(_) => Attempt::Permanent {
                code: (5, 1, 3),
                text: format!("{e}"),
                remote,
            },
        }
    }
}

pub(crate) fn reply_text(r: &Reply) -> String {
    r.to_string()
}
