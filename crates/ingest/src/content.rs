//! The content step of the pipeline, run after the trace headers and before the body
//! is final (DKIM signing must come after it, as the last change to the body):
//!
//! 1. the opt-out header `X-Mailroom-Track` is removed (it never leaves Mailroom);
//! 2. tracking: HTML parts are rewritten for clicks and opens when the tenant enables
//!    them and the message does not opt out, and `List-Unsubscribe` /
//!    `List-Unsubscribe-Post` (RFC 8058) are added when the tenant asks for them and the
//!    message has one recipient (one body serves all recipients, so only then can the
//!    link name who unsubscribes);
//! 3. content rules on the rewritten message (links are unwrapped back to their
//!    targets), then clamd on each attachment;
//! 4. a verdict: the strongest action of the rules that fired (reject > quarantine >
//!    tag). Tagging adds `X-Mailroom-Content:`; every outcome is reported in the
//!    `accepted` event's `content` field.
//!
//! `X-Mailroom-Track` takes `none`, or a comma-separated list of what stays on
//! (`opens`, `clicks`); a message can only narrow what its tenant enables.

use crate::IngestError;
use mailroom_content::clamd::{Clamd, Scan};
use mailroom_content::tracking::{self, Plan};
use mailroom_content::{Key, RuleSet, rules};
use mailroom_model::{FilteredDetail, MessageId, RuleFinding};
use mailroom_store::TenantRecord;
use serde_json::{Value, json};

pub const TRACK_HEADER: &str = "X-Mailroom-Track";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Tag,
    Quarantine,
    Reject,
}

impl Action {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tag" => Some(Action::Tag),
            "quarantine" => Some(Action::Quarantine),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }
}

/// The action taken when each rule fires.
#[derive(Clone, Debug)]
pub struct Actions {
    pub url_blocklist: Action,
    pub attachment: Action,
    pub heuristics: Action,
    pub malware: Action,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            url_blocklist: Action::Reject,
            attachment: Action::Reject,
            heuristics: Action::Quarantine,
            malware: Action::Reject,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrackingConfig {
    pub key: Key,
    /// Scheme, host and port of the public tracking endpoints, no trailing slash.
    pub base_url: String,
}

#[derive(Clone, Debug)]
pub struct ContentConfig {
    pub tracking: Option<TrackingConfig>,
    pub rules: RuleSet,
    pub actions: Actions,
    /// Heuristics score threshold when the tenant sets none.
    pub score_threshold: u32,
    pub clamd: Option<Clamd>,
    /// Accept (and note) messages when clamd cannot be reached, instead of `451`.
    pub clamd_fail_open: bool,
}

/// What the content step decided.
pub(crate) struct Outcome {
    pub body: Vec<u8>,
    /// Set when the message is held: the `filtered` event detail.
    pub quarantine: Option<FilteredDetail>,
    /// For the `accepted` event (`AcceptedDetail::content`).
    pub detail: Value,
}

/// Which tracking the message itself allows (from `X-Mailroom-Track`).
fn message_opt_in(values: &[String]) -> (bool, bool) {
    if values.is_empty() {
        return (true, true);
    }
    let words: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(',').map(|w| w.trim().to_ascii_lowercase()))
        .collect();
    (
        words.iter().any(|w| w == "opens"),
        words.iter().any(|w| w == "clicks"),
    )
}

/// Prepends header lines to the message.
fn prepend(body: Vec<u8>, lines: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + lines.len());
    out.extend_from_slice(lines.as_bytes());
    out.extend_from_slice(&body);
    out
}

pub(crate) async fn apply(
    cfg: Option<&ContentConfig>,
    tenant: Option<&TenantRecord>,
    id: &MessageId,
    recipients: usize,
    body: Vec<u8>,
) -> Result<Outcome, IngestError> {
    let (mut body, track_values) = tracking::take_header(&body, TRACK_HEADER);
    let Some(cfg) = cfg else {
        return Ok(Outcome {
            body,
            quarantine: None,
            detail: Value::Null,
        });
    };
    let (msg_opens, msg_clicks) = message_opt_in(&track_values);
    let recipient = (recipients == 1).then_some(0u16);
    let mut detail = serde_json::Map::new();
    let plan = cfg.tracking.as_ref().map(|t| Plan {
        key: &t.key,
        base_url: &t.base_url,
        message_id: id.as_str(),
        recipient,
        opens: msg_opens && tenant.is_some_and(|t| t.track_opens),
        clicks: msg_clicks && tenant.is_some_and(|t| t.track_clicks),
    });
    if let Some(plan) = &plan {
        if plan.opens || plan.clicks {
            let r = tracking::rewrite_message(&body, plan);
            body = r.body;
            detail.insert(
                "tracking".into(),
                json!({ "opens": plan.opens, "clicks": plan.clicks, "links": r.links, "skipped_parts": r.skipped }),
            );
        }
        if tenant.is_some_and(|t| t.list_unsubscribe)
            && recipient.is_some()
            && let Some(url) = plan.unsubscribe_url()
        {
            body = prepend(
                body,
                &format!(
                    "List-Unsubscribe: <{url}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                ),
            );
            detail.insert("list_unsubscribe".into(), json!(true));
        }
    }
    let unwrap = |u: &str| plan.as_ref().and_then(|p| p.unwrap_click(u));
    let inspection = rules::inspect(&body, &cfg.rules, &unwrap);
    let threshold = tenant
        .and_then(|t| t.content_score_threshold)
        .map(|t| t.max(0) as u32)
        .unwrap_or(cfg.score_threshold);
    // (rule, action, details) for each rule that fired.
    let mut fired: Vec<(&'static str, Action, Vec<String>)> = Vec::new();
    for (rule, action) in [
        ("url_blocklist", cfg.actions.url_blocklist),
        ("attachment", cfg.actions.attachment),
    ] {
        let hits: Vec<String> = inspection
            .blocked(rule)
            .iter()
            .map(|f| f.detail.clone())
            .collect();
        if !hits.is_empty() {
            fired.push((rule, action, hits));
        }
    }
    if inspection.score > 0 {
        detail.insert(
            "score".into(),
            json!({ "score": inspection.score, "threshold": threshold, "rules": inspection.heuristics().collect::<Vec<_>>() }),
        );
    }
    if inspection.score >= threshold && inspection.score > 0 {
        let hits = inspection
            .heuristics()
            .map(|f| format!("{} ({})", f.detail, f.rule))
            .collect();
        fired.push(("heuristics", cfg.actions.heuristics, hits));
    }
    if let Some(clamd) = &cfg.clamd {
        for a in &inspection.attachments {
            match clamd.scan(&a.data).await {
                Ok(Scan::Clean) => {}
                Ok(Scan::Infected(sig)) => {
                    let name = a.name.clone().unwrap_or_else(|| "attachment".into());
                    fired.push((
                        "malware",
                        cfg.actions.malware,
                        vec![format!("{name}: {sig}")],
                    ));
                    break;
                }
                Err(e) if cfg.clamd_fail_open => {
                    tracing::warn!(error = %e, message_id = %id, "clamd unavailable; accepting unscanned (fail-open)");
                    detail.insert("malware_scan".into(), json!("unavailable"));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, message_id = %id, "clamd unavailable; refusing (fail-closed)");
                    return Err(IngestError::ScanUnavailable);
                }
            }
        }
    }
    let verdict = fired.iter().map(|(_, a, _)| *a).max();
    let summary: Vec<RuleFinding> = fired
        .iter()
        .map(|(rule, action, hits)| RuleFinding {
            action: action.as_str().into(),
            findings: hits.clone(),
            rule: rule.to_string(),
        })
        .collect();
    if !fired.is_empty() {
        detail.insert("verdict".into(), json!(verdict.map(Action::as_str)));
        detail.insert("rules".into(), json!(summary));
    }
    let mut quarantine = None;
    match verdict {
        None => {}
        Some(Action::Reject) => {
            let (rule, _, hits) = fired
                .iter()
                .find(|(_, a, _)| *a == Action::Reject)
                .cloned()
                .unwrap_or(("content", Action::Reject, Vec::new()));
            metrics::counter!("mailroom_content_verdicts_total", "rule" => rule, "action" => "reject").increment(1);
            return Err(IngestError::ContentRejected {
                rule,
                detail: hits.first().cloned().unwrap_or_default(),
            });
        }
        Some(Action::Quarantine) => {
            quarantine = Some(FilteredDetail {
                reason: "content".into(),
                rules: summary,
            });
        }
        Some(Action::Tag) => {
            let names: Vec<&str> = fired.iter().map(|(r, _, _)| *r).collect();
            body = prepend(
                body,
                &format!(
                    "X-Mailroom-Content: tagged; rules={}; score={}\r\n",
                    names.join(","),
                    inspection.score
                ),
            );
        }
    }
    for (rule, action, _) in &fired {
        metrics::counter!("mailroom_content_verdicts_total", "rule" => *rule, "action" => action.as_str()).increment(1);
    }
    Ok(Outcome {
        body,
        quarantine,
        detail: if detail.is_empty() {
            Value::Null
        } else {
            Value::Object(detail)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_header_values() {
        assert_eq!(message_opt_in(&[]), (true, true));
        assert_eq!(message_opt_in(&["none".into()]), (false, false));
        assert_eq!(message_opt_in(&["Clicks".into()]), (false, true));
        assert_eq!(message_opt_in(&["opens, clicks".into()]), (true, true));
    }

    #[test]
    fn strongest_action_wins() {
        assert!(Action::Reject > Action::Quarantine && Action::Quarantine > Action::Tag);
        for a in [Action::Tag, Action::Quarantine, Action::Reject] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }
}
