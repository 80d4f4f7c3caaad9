//! The worker's shaping hooks, kept out of `worker` so it stays one loop: before a
//! message goes out (suspension, message rate, egress source under warm-up) and
//! after (feedback and response rules on the remote replies; a `bounce` rule turns
//! the replies it matched into a permanent failure). Deferrals made here are
//! Mailroom's own and are never fed back to the rules.

use crate::engine::{Engine, Work};
use crate::outcome::{Attempt, record};
use crate::shaper::{Gate, Source};
use crate::shaper_conn::AddressSlot;
use crate::shaper_egress::Pick;
use crate::shaping::RuleAction;
use mailroom_proto::Reply;
use std::sync::Arc;
use std::time::Duration;

/// What to do with the work in hand.
pub(crate) enum Before {
    /// Send, from this source (`None`: the system's); with the address's connection
    /// slot when a new connection is to be opened from it.
    Send(Option<Source>, Option<AddressSlot>),
    /// Deferred and recorded here; take the next work.
    Done,
}

/// Longest single wait for the message rate before deferring instead.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn before_send(
    engine: &Engine,
    dest_key: &str,
    work: &Work,
    body: &Arc<Vec<u8>>,
    current: Option<&Source>,
) -> Before {
    let Some(shaper) = engine.shaper.get() else {
        return Before::Send(None, None);
    };
    let tenant = work.recipients[0].tenant_id.as_str();
    // The site (and so the provider the limits and warm-up counts go by) must be known
    // before the first message: learn it from the route once per destination.
    if shaper.site_of(dest_key).is_none()
        && let Ok(plan) =
            crate::route::plan(&engine.cfg, engine.resolver.as_ref(), &work.domain).await
    {
        let hosts: Vec<String> = plan.targets.iter().map(|t| t.host.clone()).collect();
        shaper.learn(dest_key, &hosts);
    }
    let mut waited = Duration::ZERO;
    loop {
        match shaper.gate(dest_key, tenant).await {
            Gate::Go => break,
            Gate::Wait(d) if waited + d <= MAX_WAIT => {
                waited += d;
                tokio::select! {
                    _ = engine.shutdown.cancelled() => {
                        let _ = engine.store.release(&engine.cfg.node_id, work.keys()).await;
                        return Before::Done;
                    }
                    _ = tokio::time::sleep(d) => {}
                }
            }
            Gate::Wait(_) => {
                defer(
                    engine,
                    work,
                    body,
                    "message rate limit of the destination reached",
                )
                .await;
                return Before::Done;
            }
            Gate::Defer(text) => {
                defer(engine, work, body, &text).await;
                return Before::Done;
            }
        }
    }
    let mut waited = Duration::ZERO;
    loop {
        match shaper.pick_source(dest_key, tenant, current).await {
            Pick::Send(src, slot) => return Before::Send(src, slot),
            Pick::Capped(text) => {
                defer(engine, work, body, &text).await;
                return Before::Done;
            }
            Pick::Busy if waited < MAX_WAIT => {
                waited += BUSY_POLL;
                if !pause(engine, BUSY_POLL).await {
                    let _ = engine.store.release(&engine.cfg.node_id, work.keys()).await;
                    return Before::Done;
                }
            }
            Pick::Busy => {
                let text = "every address of the egress pool is at its connection limit";
                defer(engine, work, body, text).await;
                return Before::Done;
            }
        }
    }
}

/// How often a worker asks again for a busy egress address.
const BUSY_POLL: Duration = Duration::from_millis(50);

/// Sleeps unless shutdown comes first (then false).
async fn pause(engine: &Engine, d: Duration) -> bool {
    tokio::select! {
        _ = engine.shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Waits for the site's connection rate before a new connection is opened; false
/// when shutdown came first.
pub(crate) async fn before_connect(engine: &Engine, dest_key: &str) -> bool {
    let Some(shaper) = engine.shaper.get() else {
        return true;
    };
    while let Some(d) = shaper.connect_wait(dest_key) {
        metrics::counter!("mailroom_shaping_connect_waits_total").increment(1);
        if !pause(engine, d).await {
            return false;
        }
    }
    true
}

async fn defer(engine: &Engine, work: &Work, body: &Arc<Vec<u8>>, text: &str) {
    tracing::info!(destination = %work.domain, message_id = %work.message_id(), "{text}");
    metrics::counter!("mailroom_shaping_deferrals_total").increment(1);
    let attempt = Attempt::Temporary {
        code: (4, 7, 0),
        text: text.to_string(),
        remote: None,
    };
    record(engine, work, body, &attempt, None).await;
}

/// Feeds the outcome to the shaper; may replace the attempt (a `bounce` rule). With
/// VERP each recipient's transaction is its own attempt: each is fed in turn.
pub(crate) async fn after_send(
    engine: &Engine,
    dest_key: &str,
    work: &Work,
    attempt: Attempt,
) -> Attempt {
    match attempt {
        Attempt::Each(each) => {
            let mut out = Vec::with_capacity(each.len());
            for a in each {
                out.push(after_one(engine, dest_key, work, a).await);
            }
            Attempt::Each(out)
        }
        other => after_one(engine, dest_key, work, other).await,
    }
}

async fn after_one(engine: &Engine, dest_key: &str, work: &Work, attempt: Attempt) -> Attempt {
    let Some(shaper) = engine.shaper.get() else {
        return attempt;
    };
    let tenant = work.recipients[0].tenant_id.as_str();
    let replies: Vec<&Reply> = match &attempt {
        Attempt::Replies { replies, .. } => replies.iter().collect(),
        Attempt::Reply {
            remote: Some(_),
            reply,
        } => vec![reply],
        // Connection failures and timeouts toward a remote host shrink the window.
        Attempt::Temporary {
            remote: Some(_),
            code: (4, 4, _),
            ..
        } => {
            shaper.connection_failed(dest_key).await;
            return attempt;
        }
        _ => return attempt,
    };
    let fired = shaper.observe(dest_key, tenant, &replies).await;
    // A recipient already accepted in the same transaction must keep its fate.
    if fired != Some(RuleAction::Bounce) || replies.iter().any(|r| r.code < 400) {
        return attempt;
    }
    let text = match &attempt {
        Attempt::Replies { replies, .. } => replies
            .iter()
            .find(|r| r.code >= 400)
            .map(crate::worker::reply_text)
            .unwrap_or_default(),
        Attempt::Reply { reply, .. } => crate::worker::reply_text(reply),
        _ => String::new(),
    };
    let remote = match &attempt {
        Attempt::Replies { remote, .. } => Some(remote.clone()),
        Attempt::Reply { remote, .. } => remote.clone(),
        _ => None,
    };
    Attempt::Permanent {
        code: (5, 7, 0),
        text: format!("bounced by shaping rule: {text}"),
        remote,
    }
}
