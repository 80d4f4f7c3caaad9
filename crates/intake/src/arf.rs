//! RFC 5965 feedback reports (ARF): the `message/feedback-report` part's fields
//! (Feedback-Type, User-Agent, Version, Original-Mail-From, Original-Rcpt-To,
//! Arrival-Date, Reporting-MTA, Source-IP) and the original message beside it.

use crate::fields::{address_value, groups};
use crate::parse::ParseError;
use crate::report::{ComplaintReport, OriginalRef};

pub fn parse(feedback: &str, original: OriginalRef) -> Result<ComplaintReport, ParseError> {
    let g = groups(feedback).into_iter().next().unwrap_or_default();
    let feedback_type = g
        .get("feedback-type")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t.len() <= 64)
        .ok_or(ParseError::Malformed(
            "feedback report without Feedback-Type",
        ))?;
    let text = |name: &str| {
        g.get(name)
            .map(|v| v.chars().take(256).collect::<String>())
            .filter(|v| !v.is_empty())
    };
    Ok(ComplaintReport {
        feedback_type,
        user_agent: text("user-agent"),
        reporting_mta: text("reporting-mta").map(|v| match v.split_once(';') {
            Some((_, h)) => h.trim().to_string(),
            None => v,
        }),
        source_ip: text("source-ip"),
        arrival_date: text("arrival-date").or_else(|| text("received-date")),
        original_mail_from: g.get("original-mail-from").and_then(address_value),
        original_rcpt_to: g.get("original-rcpt-to").and_then(address_value),
        original,
    })
}
