//! Turning an attempt into per-recipient outcomes (with their events), handed to the
//! recorder (`recorder.rs`) and, for recipients whose NOTIFY asks for it, an RFC 3464
//! report to the sender once they are written (failed, delayed or relayed;
//! `report.rs` decides which).

use crate::classify::{BounceClass, Verdict, classify};
use crate::dsn::{Action, DsnRecipient};
use crate::engine::{Engine, Work};
use crate::tls_policy::TlsDecision;
use crate::worker::{Remote, reply_text};
use mailroom_model::{AttemptDetail, EventType, RecipientState, ReplyDetail, now_millis};
use mailroom_proto::Reply;
use mailroom_store::{DueRecipient, Outcome};
use std::sync::Arc;

/// What one attempt produced.
#[derive(Clone, Debug)]
pub(crate) enum Attempt {
    /// The transaction ran: one reply per recipient, in order.
    Replies { remote: Remote, replies: Vec<Reply> },
    /// One reply for every recipient (greeting, MAIL refused, ...).
    Reply {
        remote: Option<Remote>,
        reply: Reply,
    },
    /// No usable reply, try later.
    Temporary {
        code: (u8, u16, u16),
        text: String,
        remote: Option<Remote>,
    },
    /// No usable reply, and never will be (Null MX, NXDOMAIN, refused route).
    Permanent {
        code: (u8, u16, u16),
        text: String,
        remote: Option<Remote>,
    },
    /// One transaction per recipient (VERP): recipient `i` has the `i`-th attempt,
    /// itself about that one recipient.
    Each(Vec<Attempt>),
}

pub(crate) struct One {
    verdict: Verdict,
    code: u16,
    enhanced: (u8, u16, u16),
    text: String,
    remote: Option<Remote>,
}

fn per_recipient(a: &Attempt, i: usize) -> One {
    match a {
        Attempt::Replies { remote, replies } => {
            let r = replies
                .get(i)
                .cloned()
                .unwrap_or_else(|| Reply::new(451, (4, 5, 0), "no reply for this recipient"));
            reply_one(&r, Some(remote.clone()))
        }
        Attempt::Reply { remote, reply } => reply_one(reply, remote.clone()),
        Attempt::Each(each) => match each.get(i) {
            Some(one) => per_recipient(one, 0),
            None => per_recipient(
                &Attempt::Temporary {
                    code: (4, 5, 0),
                    text: "no transaction for this recipient".into(),
                    remote: None,
                },
                0,
            ),
        },
        Attempt::Temporary { code, text, remote } => One {
            verdict: Verdict::Deferred,
            code: 451,
            enhanced: *code,
            text: text.clone(),
            remote: remote.clone(),
        },
        Attempt::Permanent { code, text, remote } => One {
            verdict: classify(550, Some(*code), text),
            code: 550,
            enhanced: *code,
            text: text.clone(),
            remote: remote.clone(),
        },
    }
}

fn reply_one(r: &Reply, remote: Option<Remote>) -> One {
    let fallback = match r.code / 100 {
        2 => (2, 0, 0),
        5 => (5, 0, 0),
        _ => (4, 0, 0),
    };
    One {
        verdict: classify(r.code, r.enhanced, &r.text()),
        code: r.code,
        enhanced: r.enhanced.unwrap_or(fallback),
        text: reply_text(r),
        remote,
    }
}

/// A bounce report to send once the outcomes are written: the original message, the
/// recipients that failed, and when.
pub(crate) type PendingBounce = (Arc<Vec<u8>>, Vec<(DueRecipient, One, Action)>, i64);

/// Records the outcome of `attempt` for each recipient of `work`. `duration_ms`: how
/// long the attempt took (connecting included when it opened the connection); `None`
/// when no remote server was involved (a shaping deferral).
pub(crate) async fn record(
    engine: &Engine,
    work: &Work,
    body: &Arc<Vec<u8>>,
    attempt: &Attempt,
    duration_ms: Option<u64>,
) {
    let now = now_millis();
    let mut outcomes = Vec::with_capacity(work.recipients.len());
    let mut failed: Vec<(DueRecipient, One, Action)> = Vec::new();
    for (i, r) in work.recipients.iter().enumerate() {
        let one = per_recipient(attempt, i);
        let attempts = r.attempts + 1;
        let (a, b, c) = one.enhanced;
        let mut detail = AttemptDetail {
            attempt: attempts,
            bounce_category: None,
            bounce_class: None,
            duration_ms,
            next_attempt_at: None,
            remote_ip: one.remote.as_ref().map(|x| x.ip.clone()),
            remote_mx: one.remote.as_ref().map(|x| x.host.clone()),
            reply: ReplyDetail {
                code: Some(one.code),
                enhanced: Some(format!("{a}.{b}.{c}")),
                text: one.text.clone(),
            },
            tls: one.remote.as_ref().and_then(|x| x.tls.clone()),
            tls_decision: one
                .remote
                .as_ref()
                .and_then(|x| x.decision.as_ref())
                .map(TlsDecision::detail),
            // Opportunistic TLS failed and the attempt went in plain text: on record.
            tls_fallback: one.remote.as_ref().and_then(|x| x.tls_fallback.clone()),
        };
        // Hard bounces put the address on the tenant's suppression list.
        let suppress = matches!(one.verdict, Verdict::Bounced(BounceClass::Hard, _));
        let (state, event, next) = match one.verdict {
            Verdict::Delivered => (RecipientState::Delivered, EventType::Delivered, None),
            Verdict::Bounced(class, category) => {
                detail.bounce_class = Some(class);
                detail.bounce_category = Some(category);
                (RecipientState::Bounced, EventType::Bounced, None)
            }
            Verdict::Deferred => {
                let unit: f64 = rand::random();
                match engine
                    .cfg
                    .retry
                    .next_attempt(r.received_at, now, attempts as u32, unit)
                {
                    Some(at) => {
                        detail.next_attempt_at = Some(at);
                        (RecipientState::Deferred, EventType::Deferred, Some(at))
                    }
                    None => (RecipientState::Expired, EventType::Expired, None),
                }
            }
        };
        observe(r, state, attempts, now);
        tracing::info!(
            message_id = %r.message_id, recipient = %r.address, state = %state,
            reply = %one.text,
            // An Option as a field value: `mx=mx.example.net` when there was one, absent
            // when not (never `mx=Some("…")`).
            mx = one.remote.as_ref().map(|x| tracing::field::display(&x.host)),
            tls_policy = one.remote.as_ref().and_then(|x| x.decision.as_ref()).map(|d| d.policy),
            tls_verified = one.remote.as_ref().and_then(|x| x.decision.as_ref()).map(|d| d.certificate_verified),
            "delivery attempt"
        );
        let peer_dsn = one.remote.as_ref().is_some_and(|x| x.dsn);
        // Only reports the recipient's NOTIFY asks for are collected: most deliveries
        // call for none, and then nothing more is done for them.
        if let Some(action) =
            crate::report::action_for(&engine.cfg.delay_reports, r, state, peer_dsn, now)
                .filter(|a| crate::report::wanted(r.dsn_notify.as_deref(), *a))
        {
            failed.push((r.clone(), one_clone(&one), action));
        }
        outcomes.push(Outcome {
            message_id: r.message_id.clone(),
            idx: r.idx,
            recipient: r.address.clone(),
            tenant_id: r.tenant_id.clone(),
            state,
            attempted: true,
            next_attempt_at: next,
            last_reply: Some(one.text.clone()),
            last_mx: one.remote.as_ref().map(|x| x.host.clone()),
            event,
            detail,
            at: now,
            suppress,
            lease_token: r.lease_token,
        });
    }
    let bounce = (engine.cfg.dsn && !failed.is_empty()).then(|| (body.clone(), failed, now));
    if engine
        .recorder
        .send(crate::recorder::Recording::Outcomes {
            outcomes,
            bounce,
            lease: work.lease.clone(),
        })
        .await
        .is_err()
    {
        tracing::error!(message_id = %work.message_id(), "outcome recorder stopped; the lease will expire");
    }
}

/// Counts the outcome per tenant; for final states, how many attempts it took, and for
/// deliveries how long after acceptance.
fn observe(r: &DueRecipient, state: RecipientState, attempts: i64, now: i64) {
    metrics::counter!(
        "mailroom_recipient_outcomes_total",
        "tenant" => r.tenant_id.to_string(),
        "outcome" => state.as_str()
    )
    .increment(1);
    if state.is_final() {
        metrics::histogram!("mailroom_delivery_attempts", "outcome" => state.as_str())
            .record(attempts as f64);
    }
    if state == RecipientState::Delivered {
        metrics::histogram!("mailroom_delivery_latency_seconds")
            .record((now - r.received_at).max(0) as f64 / 1000.0);
    }
}

fn one_clone(o: &One) -> One {
    One {
        verdict: o.verdict,
        code: o.code,
        enhanced: o.enhanced,
        text: o.text.clone(),
        remote: o.remote.clone(),
    }
}

/// Queues a delivery status report (failed, delayed or relayed recipients; see
/// `report.rs`) to the envelope sender, unless it is the null sender or the
/// recipients asked not to be told (NOTIFY).
pub(crate) async fn bounce(
    engine: &Engine,
    body: &[u8],
    failed: Vec<(DueRecipient, One, Action)>,
    now: i64,
) {
    let first = &failed[0].0;
    if first.mail_from.is_empty() {
        return;
    }
    match engine.store.get_tenant(&first.tenant_id).await {
        Ok(Some(t)) if !t.bounce_reports => return,
        Ok(_) => {}
        // Better a report too many than a silent failure.
        Err(e) => {
            tracing::warn!(error = %e, "reading tenant settings failed; sending the bounce report")
        }
    }
    let recipients: Vec<DsnRecipient> = failed
        .iter()
        .filter(|(r, _, action)| crate::report::wanted(r.dsn_notify.as_deref(), *action))
        .map(|(r, one, action)| DsnRecipient {
            address: r.address.clone(),
            orcpt: r.dsn_orcpt.clone(),
            action: *action,
            status: crate::report::status(*action, one.enhanced),
            remote_mta: one.remote.as_ref().map(|x| x.host.clone()),
            diagnostic: one.text.clone(),
            last_attempt: now,
        })
        .collect();
    if recipients.is_empty() {
        return;
    }
    let message = crate::report::message(
        &engine.cfg.helo_name,
        crate::report::Original {
            message_id: &first.message_id,
            tenant_id: &first.tenant_id,
            mail_from: &first.mail_from,
            received_at: first.received_at,
            dsn_envid: first.dsn_envid.as_deref(),
            dsn_ret: first.dsn_ret.as_deref(),
            smtputf8: first.smtputf8,
            require_tls: first.require_tls,
            body,
        },
        recipients,
        now,
    );
    let id = message.id.clone();
    match engine.store.enqueue(message).await {
        Ok(()) => {
            engine.wake();
            tracing::info!(dsn = %id, original = %first.message_id, to = %first.mail_from, "bounce report queued")
        }
        Err(e) => {
            tracing::error!(error = %e, original = %first.message_id, "queueing bounce report failed")
        }
    }
}
