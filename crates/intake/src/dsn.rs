//! RFC 3464 delivery status notifications: the `message/delivery-status` part's
//! per-message fields (Reporting-MTA) and one group per recipient (Final-Recipient,
//! Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code).

use crate::diagnostic::{enhanced_code, parse_enhanced, smtp_code};
use crate::fields::{Group, address_value, groups};
use crate::parse::ParseError;
use crate::report::{Action, BounceFormat, BounceReport, OriginalRef, ReportedRecipient};

/// Recipients read from one report.
const MAX_RECIPIENTS: usize = 100;

/// `dns; mx.example.net` → `mx.example.net`.
fn typed_value(v: &str) -> String {
    match v.split_once(';') {
        Some((_, rest)) => rest.trim().to_string(),
        None => v.trim().to_string(),
    }
}

fn recipient(g: &Group) -> Option<ReportedRecipient> {
    let action = Action::parse(g.get("action")?)?;
    let address = g
        .get("final-recipient")
        .and_then(address_value)
        .or_else(|| g.get("original-recipient").and_then(address_value));
    let diagnostic = g
        .get("diagnostic-code")
        .map(typed_value)
        .unwrap_or_default();
    let status = g
        .get("status")
        .and_then(|s| parse_enhanced(s.split_whitespace().next().unwrap_or("")))
        .or_else(|| enhanced_code(&diagnostic));
    Some(ReportedRecipient {
        address,
        action,
        status,
        code: smtp_code(&diagnostic),
        diagnostic,
        remote_mta: g.get("remote-mta").map(typed_value),
    })
}

pub fn parse(status: &str, original: OriginalRef) -> Result<BounceReport, ParseError> {
    let groups = groups(status);
    let Some(first) = groups.first() else {
        return Err(ParseError::Malformed("empty delivery-status part"));
    };
    let reporting_mta = first.get("reporting-mta").map(typed_value);
    // Per-recipient groups are those with an Action; a report that forgot the blank
    // line after the per-message fields still has its recipient read.
    let recipients: Vec<ReportedRecipient> = groups
        .iter()
        .filter_map(recipient)
        .take(MAX_RECIPIENTS)
        .collect();
    if recipients.is_empty() {
        return Err(ParseError::Malformed("no recipient with an Action"));
    }
    Ok(BounceReport {
        format: BounceFormat::Dsn,
        reporting_mta,
        recipients,
        original,
    })
}
