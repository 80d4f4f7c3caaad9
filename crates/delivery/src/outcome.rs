//! Turning an attempt into per-recipient outcomes (with their events) and, for
//! recipients that failed for good, an RFC 3464 bounce to the sender.

use crate::classify::{BounceClass, Verdict, classify};
use crate::dsn::{self, Action, DsnInput, DsnRecipient};
use crate::engine::{Engine, Work};
use crate::lease::Held;
use crate::worker::{Remote, reply_text};
use mailroom_model::{EventType, MessageId, RecipientState, now_millis};
use mailroom_smtp_client::SmtpReply;
use mailroom_store::{DueRecipient, NewMessage, NewRecipient, Outcome};
use serde_json::json;
use std::sync::Arc;

/// What one attempt produced.
#[derive(Clone, Debug)]
pub(crate) enum Attempt {
    /// The transaction ran: one reply per recipient, in order.
    Replies {
        remote: Remote,
        replies: Vec<SmtpReply>,
    },
    /// One reply for every recipient (greeting, MAIL refused, ...).
    Reply {
        remote: Option<Remote>,
        reply: SmtpReply,
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
            let r = replies.get(i).cloned().unwrap_or(SmtpReply {
                code: 451,
                enhanced: Some((4, 5, 0)),
                text: "no reply for this recipient".into(),
            });
            reply_one(&r, Some(remote.clone()))
        }
        Attempt::Reply { remote, reply } => reply_one(reply, remote.clone()),
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

fn reply_one(r: &SmtpReply, remote: Option<Remote>) -> One {
    let fallback = match r.code / 100 {
        2 => (2, 0, 0),
        5 => (5, 0, 0),
        _ => (4, 0, 0),
    };
    One {
        verdict: classify(r.code, r.enhanced, &r.text),
        code: r.code,
        enhanced: r.enhanced.unwrap_or(fallback),
        text: reply_text(r),
        remote,
    }
}

/// A bounce report to send once the outcomes are written: the original message, the
/// recipients that failed, and when.
pub(crate) type PendingBounce = (Arc<Vec<u8>>, Vec<(DueRecipient, One, Action)>, i64);

/// Work for the recorder task: outcomes to write, and a bounce report to send once
/// they are written.
pub(crate) enum Recording {
    Outcomes {
        outcomes: Vec<Outcome>,
        bounce: Option<PendingBounce>,
        /// The lease the outcomes were reached under: renewed until they are written.
        lease: Arc<Held>,
    },
    /// Answers once everything sent before it is written (shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes outcomes for all connections in batches: whatever has queued up while the
/// previous batch was being committed goes into one transaction. Connections never
/// wait for the disk; an outcome lost to a crash means the recipient is delivered
/// again (at least once).
pub(crate) async fn run_recorder(
    engine: Arc<Engine>,
    mut rx: tokio::sync::mpsc::Receiver<Recording>,
) {
    while let Some(first) = rx.recv().await {
        let mut outcomes = Vec::new();
        let mut bounces = Vec::new();
        let mut flushes = Vec::new();
        // Dropped once the batch is written (or failed): their leases stop renewing.
        let mut leases = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Recording::Outcomes {
                    outcomes: o,
                    bounce,
                    lease,
                } => {
                    outcomes.extend(o);
                    bounces.extend(bounce);
                    leases.push(lease);
                }
                Recording::Flush(done) => flushes.push(done),
            }
            next = if outcomes.len() < 2000 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let count = outcomes.len();
        match engine.store.record_outcomes(outcomes).await {
            Ok(lost) => {
                if !lost.is_empty() {
                    // Another node holds these now: it records their outcome.
                    engine.note_lost_leases(lost.len());
                    tracing::warn!(
                        count = lost.len(),
                        "outcomes not recorded: the lease was lost to another node"
                    );
                }
                let lost: std::collections::HashSet<_> = lost.into_iter().collect();
                for (body, mut failed, now) in bounces {
                    failed.retain(|(r, _, _)| !lost.contains(&(r.message_id.clone(), r.idx)));
                    if !failed.is_empty() {
                        bounce(&engine, &body, failed, now).await;
                    }
                }
            }
            // The leases expire and the recipients are tried again: at least once.
            Err(e) => tracing::error!(error = %e, count, "recording outcomes failed"),
        }
        drop(leases);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

pub(crate) async fn record(engine: &Engine, work: &Work, body: &Arc<Vec<u8>>, attempt: &Attempt) {
    let now = now_millis();
    let mut outcomes = Vec::with_capacity(work.recipients.len());
    let mut failed: Vec<(DueRecipient, One, Action)> = Vec::new();
    for (i, r) in work.recipients.iter().enumerate() {
        let one = per_recipient(attempt, i);
        let attempts = r.attempts + 1;
        let (a, b, c) = one.enhanced;
        let mut detail = json!({
            "attempt": attempts,
            "reply": { "code": one.code, "enhanced": format!("{a}.{b}.{c}"), "text": one.text },
            "remote_mx": one.remote.as_ref().map(|x| x.host.clone()),
            "remote_ip": one.remote.as_ref().map(|x| x.ip.clone()),
            "tls": one.remote.as_ref().and_then(|x| x.tls.clone()),
        });
        // Hard bounces put the address on the tenant's suppression list.
        let suppress = matches!(one.verdict, Verdict::Bounced(BounceClass::Hard, _));
        let (state, event, next) = match one.verdict {
            Verdict::Delivered => (RecipientState::Delivered, EventType::Delivered, None),
            Verdict::Bounced(class, category) => {
                detail["bounce_class"] = json!(class);
                detail["bounce_category"] = json!(category);
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
                        detail["next_attempt_at"] = json!(at);
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
            "delivery attempt"
        );
        match state {
            RecipientState::Bounced => failed.push((r.clone(), one_clone(&one), Action::Failed)),
            RecipientState::Expired => failed.push((r.clone(), one_clone(&one), Action::Failed)),
            RecipientState::Queued
            | RecipientState::Deferred
            | RecipientState::Delivered
            | RecipientState::Cancelled
            | RecipientState::Suppressed
            // Delivery never produces it (quarantine happens at ingest).
            | RecipientState::Quarantined => {}
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
        .send(Recording::Outcomes {
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

/// Queues a bounce report to the envelope sender, unless it is the null sender or the
/// recipients asked not to be told (NOTIFY without FAILURE).
async fn bounce(engine: &Engine, body: &[u8], failed: Vec<(DueRecipient, One, Action)>, now: i64) {
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
        .filter(|(r, _, _)| {
            r.dsn_notify
                .as_deref()
                .is_none_or(|n| n.contains("FAILURE"))
        })
        .map(|(r, one, action)| DsnRecipient {
            address: r.address.clone(),
            orcpt: r.dsn_orcpt.clone(),
            action: *action,
            status: if one.enhanced.0 == 4 {
                (5, one.enhanced.1, one.enhanced.2)
            } else {
                one.enhanced
            },
            remote_mta: one.remote.as_ref().map(|x| x.host.clone()),
            diagnostic: one.text.clone(),
            last_attempt: now,
        })
        .collect();
    if recipients.is_empty() {
        return;
    }
    let id = MessageId::generate();
    let report = dsn::build(&DsnInput {
        reporting_mta: &engine.cfg.helo_name,
        envid: first.dsn_envid.as_deref(),
        arrival: first.received_at,
        to: &first.mail_from,
        recipients,
        original: body,
        headers_only: first.dsn_ret.as_deref() == Some("HDRS"),
        token: &id.as_str().to_ascii_lowercase(),
        now,
    });
    let domain = first
        .mail_from
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let message = NewMessage {
        id: id.clone(),
        tenant_id: first.tenant_id.clone(),
        mail_from: String::new(),
        rfc_message_id: Some(format!(
            "dsn.{}@{}",
            id.as_str().to_ascii_lowercase(),
            engine.cfg.helo_name
        )),
        received_at: now,
        source: "dsn",
        client_ip: None,
        dsn_ret: None,
        dsn_envid: None,
        smtputf8: first.smtputf8,
        body: report,
        recipients: vec![NewRecipient {
            address: first.mail_from.clone(),
            domain,
            dsn_notify: Some("NEVER".into()),
            dsn_orcpt: None,
            suppressed: None,
        }],
        accepted_detail: json!({ "source": "dsn", "original_message_id": first.message_id }),
        lease: None,
        idempotency: None,
        meta: None,
        return_path: None,
        quarantine: None,
    };
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
