//! The transaction(s) for one work item on the worker's open connection: one
//! transaction for all recipients, or, for a message with a return-path domain
//! (VERP, see `verp`), one transaction per recipient, pipelined on the same
//! connection (`Connection::send_batch`: no RSET between transactions that went
//! well, N + 1 round trips for N recipients). A pooled connection the server
//! closed while idle is reopened once and the work sent again. Returns the attempt
//! (per recipient for VERP) and whether the connection can carry more.

use crate::engine::{Engine, Work};
use crate::outcome::Attempt;
use crate::worker::{Open, Remote, open};
use mailroom_proto::Reply;
use mailroom_smtp_client::{ClientError, Envelope, Rcpt};
use mailroom_store::DueRecipient;
use std::sync::Arc;

/// Sends `work` on `conn` (which must be open) and says whether to keep `conn`.
/// `conn` is left `None` when reopening it failed.
pub(crate) async fn send_work(
    engine: &Engine,
    dest: &str,
    conn: &mut Option<Open>,
    work: &Work,
    body: &Arc<Vec<u8>>,
    source: Option<&crate::shaper::Source>,
) -> (Attempt, bool) {
    let verp = work.recipients[0].return_path.is_some();
    let Some((c, _, _)) = conn.as_mut() else {
        return (not_open(), false);
    };
    let reused = c.messages_sent() > 0;
    let mut sent = attempt_on(conn, work, body, verp).await;
    if reused && sent.closed_while_idle {
        // A pooled connection the server closed while it sat idle: that says nothing
        // about this message, so reconnect once and send it again right away.
        tracing::debug!(destination = %dest, "pooled connection was closed; reconnecting");
        *conn = None;
        match open(engine, dest, &work.domain, source).await {
            Ok(fresh) => {
                *conn = Some(fresh);
                sent = attempt_on(conn, work, body, verp).await;
            }
            Err(attempt) => return (attempt, false),
        }
    }
    (sent.attempt, sent.reuse)
}

struct Sent {
    attempt: Attempt,
    reuse: bool,
    /// The first transaction failed with an I/O error before any reply.
    closed_while_idle: bool,
}

fn not_open() -> Attempt {
    Attempt::Temporary {
        code: (4, 4, 1),
        text: "no connection".into(),
        remote: None,
    }
}

async fn attempt_on(conn: &mut Option<Open>, work: &Work, body: &Arc<Vec<u8>>, verp: bool) -> Sent {
    let Some((c, host, decision)) = conn.as_mut() else {
        return Sent {
            attempt: not_open(),
            reuse: false,
            closed_while_idle: false,
        };
    };
    let remote = Remote {
        host: host.clone(),
        ip: c.peer().ip().to_string(),
        tls: c.tls_version().map(str::to_string),
        decision: decision.clone(),
        dsn: c.extensions().dsn,
        tls_fallback: c.tls_fallback().map(str::to_string),
    };
    let first = &work.recipients[0];
    if first.require_tls
        && let Some(text) = requiretls_refusal(decision.as_ref(), c.extensions().require_tls)
    {
        return Sent {
            attempt: Attempt::Permanent {
                code: (5, 7, 30),
                text,
                remote: Some(remote),
            },
            // Nothing was said on the connection: other messages may use it.
            reuse: c.is_usable(),
            closed_while_idle: false,
        };
    }
    let rcpts: Vec<Rcpt<'_>> = work
        .recipients
        .iter()
        .map(|r| Rcpt {
            address: &r.address,
            notify: r.dsn_notify.as_deref(),
            orcpt: r.dsn_orcpt.as_deref(),
        })
        .collect();
    if let (true, Some(rp)) = (verp, first.return_path.as_deref()) {
        let froms: Vec<String> = work
            .recipients
            .iter()
            .map(|r| crate::verp::verp_address(rp, &r.message_id, r.idx))
            .collect();
        let envs: Vec<Envelope<'_>> = froms
            .iter()
            .zip(&rcpts)
            .map(|(from, rcpt)| envelope(first, body, from, std::slice::from_ref(rcpt)))
            .collect();
        let results = c.send_batch(&envs).await;
        let closed_while_idle = matches!(results.first(), Some(Err(ClientError::Io(_))));
        let reuse = c.is_usable();
        let each = results
            .into_iter()
            .map(|r| to_attempt(r, &remote))
            .collect();
        return Sent {
            attempt: Attempt::Each(each),
            reuse,
            closed_while_idle,
        };
    }
    let result = c
        .send(&envelope(first, body, &first.mail_from, &rcpts))
        .await;
    let closed_while_idle = matches!(result, Err(ClientError::Io(_)));
    let reuse = match &result {
        // A 421 in the middle leaves the transaction done but the connection closed.
        Ok(_) => c.is_usable(),
        Err(ClientError::Mail(_)) => c.reset().await.is_ok(),
        Err(_) => false,
    };
    Sent {
        attempt: to_attempt(result, &remote),
        reuse,
        closed_while_idle,
    }
}

/// The message for `recipients` with `mail_from`; DSN parameters and SMTPUTF8 are
/// the message's (the same on every recipient row).
fn envelope<'a>(
    first: &'a DueRecipient,
    body: &'a [u8],
    mail_from: &'a str,
    recipients: &'a [Rcpt<'a>],
) -> Envelope<'a> {
    Envelope {
        mail_from,
        recipients,
        body,
        smtputf8: first.smtputf8,
        eight_bit: !body.is_ascii(),
        dsn_ret: first.dsn_ret.as_deref(),
        dsn_envid: first.dsn_envid.as_deref(),
        require_tls: first.require_tls,
    }
}

/// RFC 8689 §5: a REQUIRETLS message goes only over TLS whose certificate DANE or
/// MTA-STS validated, to a server that offers REQUIRETLS. `None`: it may go; else
/// why not — a permanent 5.7.30 failure (bounce with a DSN), nothing was sent.
pub(crate) fn requiretls_refusal(
    decision: Option<&crate::tls_policy::TlsDecision>,
    offered: bool,
) -> Option<String> {
    let validated = decision.is_some_and(|d| {
        d.certificate_verified && d.version.is_some() && matches!(d.policy, "dane" | "mta-sts")
    });
    if !validated {
        let how = decision.map_or("no TLS decision".to_string(), |d| {
            format!(
                "policy {}, certificate {}",
                d.policy,
                if d.certificate_verified {
                    "verified"
                } else {
                    "not verified"
                }
            )
        });
        return Some(format!(
            "REQUIRETLS: the exchanger's TLS was not validated by MTA-STS or DANE ({how})"
        ));
    }
    if !offered {
        return Some("REQUIRETLS: the exchanger does not offer REQUIRETLS".into());
    }
    None
}

fn to_attempt(result: Result<Vec<Reply>, ClientError>, remote: &Remote) -> Attempt {
    match result {
        Ok(replies) => Attempt::Replies {
            remote: remote.clone(),
            replies,
        },
        Err(e) => Attempt::from_error(&e, Some(remote.clone())),
    }
}
