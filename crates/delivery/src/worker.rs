//! A connection worker for one destination: takes work items from the destination's
//! queue, keeps one SMTP connection open across messages (up to a count and an idle
//! time), sends, and records each recipient's outcome. A failure to connect applies to
//! the work in hand and to whatever is waiting for the same destination. Work whose
//! lease is about to run out (renewal failed) is dropped unsent, checked when it is
//! taken and again right before the message goes out.

use crate::engine::{Destination, Engine};
use crate::outcome::{Attempt, record};
use crate::route::{Plan, RouteError, plan};
use mailroom_smtp_client::{ClientConfig, ClientError, Connection, Envelope, Rcpt, SmtpReply};

pub(crate) async fn run(engine: &Engine, dest: &Destination) {
    tracing::debug!(destination = %dest.key, "delivery worker started");
    let mut conn: Option<(Connection, String)> = None;
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
            match open(engine, &work.domain).await {
                Ok(c) => conn = Some(c),
                Err(attempt) => {
                    record(engine, &work, &body, &attempt).await;
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
                        record(engine, &w, &body, &attempt).await;
                    }
                    break;
                }
            }
        }
        let (c, host) = conn.as_mut().expect("opened above");
        let rcpts: Vec<Rcpt<'_>> = work
            .recipients
            .iter()
            .map(|r| Rcpt {
                address: &r.address,
                notify: r.dsn_notify.as_deref(),
                orcpt: r.dsn_orcpt.as_deref(),
            })
            .collect();
        let first = &work.recipients[0];
        let mail_from = match (&first.return_path, work.recipients.len()) {
            (Some(rp), 1) => crate::verp::verp_address(rp, &first.message_id, first.idx),
            _ => first.mail_from.clone(),
        };
        let envelope = Envelope {
            mail_from: &mail_from,
            recipients: &rcpts,
            body: &body,
            smtputf8: first.smtputf8,
            eight_bit: !body.is_ascii(),
            dsn_ret: first.dsn_ret.as_deref(),
            dsn_envid: first.dsn_envid.as_deref(),
        };
        let remote = Remote {
            host: host.clone(),
            ip: c.peer().ip().to_string(),
            tls: c.tls_version().map(str::to_string),
        };
        // Connecting may have taken long: check the lease again right before sending.
        if stale(&work) {
            continue;
        }
        let reused = c.messages_sent() > 0;
        let mut result = c.send(&envelope).await;
        if reused && matches!(result, Err(ClientError::Io(_))) {
            // A pooled connection the server closed while it sat idle: that says nothing
            // about this message, so reconnect once and send it again right away.
            tracing::debug!(destination = %dest.key, "pooled connection was closed; reconnecting");
            conn = None;
            match open(engine, &work.domain).await {
                Ok(fresh) => {
                    let (c2, _) = conn.insert(fresh);
                    result = c2.send(&envelope).await;
                }
                Err(attempt) => {
                    record(engine, &work, &body, &attempt).await;
                    continue;
                }
            }
        }
        let Some((c, _)) = conn.as_mut() else {
            continue;
        };
        let reuse = match &result {
            // A 421 in the middle leaves the transaction done but the connection closed.
            Ok(_) => c.is_usable(),
            Err(ClientError::Mail(_)) => c.reset().await.is_ok(),
            Err(_) => false,
        };
        let attempt = match result {
            Ok(replies) => Attempt::Replies { remote, replies },
            Err(e) => Attempt::from_error(&e, Some(remote)),
        };
        record(engine, &work, &body, &attempt).await;
        let done = conn
            .as_ref()
            .is_some_and(|(c, _)| c.messages_sent() >= engine.cfg.max_messages_per_connection);
        if (!reuse || done)
            && let Some((c, _)) = conn.take()
            && reuse
        {
            c.quit().await;
        }
    }
    if let Some((c, _)) = conn.take() {
        c.quit().await;
    }
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
}

/// Plans the route and connects to the first target that answers.
async fn open(engine: &Engine, domain: &str) -> Result<(Connection, String), Attempt> {
    let Plan { targets, tls, auth } = plan(&engine.cfg, engine.resolver.as_ref(), domain)
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
    let cfg = ClientConfig {
        helo_name: engine.cfg.helo_name.clone(),
        tls,
        auth,
        timeouts: engine.cfg.timeouts,
        extra_root: None,
    };
    let mut last = None;
    for t in &targets {
        match Connection::open(t.addr, &t.host, &cfg).await {
            Ok(c) => return Ok((c, t.host.clone())),
            Err(e) => {
                tracing::info!(domain, host = %t.host, addr = %t.addr, error = %e, "connection failed");
                let remote = Remote {
                    host: t.host.clone(),
                    ip: t.addr.ip().to_string(),
                    tls: None,
                };
                let attempt = Attempt::from_error(&e, Some(remote));
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
            // Nothing was sent: the envelope cannot be put on the wire.
            ClientError::InvalidInput(_) => Attempt::Permanent {
                code: (5, 1, 3),
                text: format!("{e}"),
                remote,
            },
        }
    }
}

pub(crate) fn reply_text(r: &SmtpReply) -> String {
    r.to_string()
}
