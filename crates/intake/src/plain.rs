//! Common bounces that are not RFC 3464 reports, read from their text: qmail
//! ("Hi. This is the qmail-send program"), Exim ("This message was created
//! automatically by mail delivery software") and old sendmail ("The following
//! addresses had permanent fatal errors"). Each names the failed addresses and the
//! remote server's words, and most quote the original message after a marker line.

use crate::diagnostic::{enhanced_code, smtp_code};
use crate::fields::address_value;
use crate::original;
use crate::parse::{ParseError, Pieces};
use crate::report::{Action, BounceFormat, BounceReport, ReportedRecipient};

const MAX_RECIPIENTS: usize = 100;
const MAX_DIAGNOSTIC: usize = 2048;

fn recipient(address: String, action: Action) -> ReportedRecipient {
    ReportedRecipient {
        address: Some(address),
        action,
        status: None,
        code: None,
        diagnostic: String::new(),
        remote_mta: None,
    }
}

fn add_words(r: &mut ReportedRecipient, line: &str) {
    let line = line.trim();
    if line.is_empty() || r.diagnostic.len() >= MAX_DIAGNOSTIC {
        return;
    }
    if !r.diagnostic.is_empty() {
        r.diagnostic.push(' ');
    }
    r.diagnostic.extend(line.chars().take(MAX_DIAGNOSTIC));
}

fn finish(mut list: Vec<ReportedRecipient>) -> Vec<ReportedRecipient> {
    list.truncate(MAX_RECIPIENTS);
    for r in &mut list {
        r.code = smtp_code(&r.diagnostic);
        r.status = enhanced_code(&r.diagnostic);
    }
    list
}

/// The text before and after the first line that contains `marker`.
fn split_at_line<'a>(text: &'a str, markers: &[&str]) -> (&'a str, Option<&'a str>) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if markers.iter().any(|m| line.contains(m)) {
            return (&text[..offset], Some(&text[offset + line.len()..]));
        }
        offset += line.len();
    }
    (text, None)
}

/// `<user@example.com>:` starts a recipient; the lines up to a blank line say why.
fn qmail(text: &str) -> (Vec<ReportedRecipient>, Option<&str>) {
    let (report, copy) = split_at_line(
        text,
        &[
            "--- Below this line is a copy of the message",
            "--- Enclosed are the original headers",
        ],
    );
    let mut out: Vec<ReportedRecipient> = Vec::new();
    let mut open = false;
    for line in report.lines() {
        let t = line.trim();
        if t.starts_with('<')
            && t.ends_with(">:")
            && let Some(a) = address_value(&t[..t.len() - 1])
        {
            out.push(recipient(a, Action::Failed));
            open = true;
            continue;
        }
        if t.is_empty() {
            open = false;
        } else if open && let Some(r) = out.last_mut() {
            add_words(r, t);
        }
    }
    (out, copy)
}

/// After "following address(es) failed:", an address indented by two spaces, then
/// its more deeply indented explanation.
fn exim(text: &str) -> (Vec<ReportedRecipient>, Option<&str>) {
    let (report, copy) = split_at_line(text, &["------ This is a copy of the message"]);
    let delayed = report.contains("has not yet been delivered");
    let action = if delayed {
        Action::Delayed
    } else {
        Action::Failed
    };
    let (_, list) = split_at_line(
        report,
        &[
            "address(es) failed",
            "addresses failed",
            "address failed",
            "has not yet been delivered is",
            "have not yet been delivered are",
        ],
    );
    let mut out: Vec<ReportedRecipient> = Vec::new();
    for line in list.unwrap_or("").lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if t.starts_with("------") {
            break;
        }
        if t.is_empty() {
            continue;
        }
        if indent <= 2
            && !t.contains(' ')
            && let Some(a) = address_value(t)
        {
            out.push(recipient(a, action));
            continue;
        }
        if indent > 2
            && let Some(r) = out.last_mut()
        {
            add_words(r, t);
        }
    }
    (out, copy)
}

/// `<user@example.com>` lines after the marker, with `(reason: ...)` lines below.
fn sendmail(text: &str) -> (Vec<ReportedRecipient>, Option<&str>) {
    let (_, rest) = split_at_line(text, &["addresses had permanent fatal errors"]);
    let rest = rest.unwrap_or("");
    let (report, _) = split_at_line(rest, &["-----"]);
    let (_, copy) = split_at_line(
        rest,
        &[
            "Original message follows",
            "Unsent message follows",
            "Returned mail follows",
        ],
    );
    let mut out: Vec<ReportedRecipient> = Vec::new();
    for line in report.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with('<')
            && let Some(a) = address_value(t)
        {
            out.push(recipient(a, Action::Failed));
            continue;
        }
        if let Some(r) = out.last_mut() {
            add_words(r, t.trim_start_matches("(reason:").trim_end_matches(')'));
        }
    }
    (out, copy)
}

pub(crate) fn parse(p: &Pieces) -> Result<BounceReport, ParseError> {
    let text = p.text.as_deref().ok_or(ParseError::NotAReport)?;
    let (format, (recipients, copy)) = if text.contains("This is the qmail-send program") {
        (BounceFormat::Qmail, qmail(text))
    } else if text.contains("created automatically by mail delivery software") {
        (BounceFormat::Exim, exim(text))
    } else if text.contains("addresses had permanent fatal errors") {
        (BounceFormat::Sendmail, sendmail(text))
    } else {
        return Err(ParseError::NotAReport);
    };
    let recipients = finish(recipients);
    if recipients.is_empty() {
        return Err(ParseError::Malformed("bounce names no address"));
    }
    let original = match (&p.original, copy) {
        (Some(o), _) => o.clone(),
        (None, Some(copy)) => original::from_headers(copy.trim_start_matches(['\r', '\n'])),
        (None, None) => Default::default(),
    };
    Ok(BounceReport {
        format,
        reporting_mta: None,
        recipients,
        original,
    })
}
