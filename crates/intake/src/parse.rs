//! The entry point: split a received message into its MIME parts (mail-parser) and
//! hand the right ones to the DSN, ARF or non-standard bounce parser. Pure; never
//! panics on input.

use crate::report::{OriginalRef, Report};
use crate::{arf, dsn, original, plain};
use mail_parser::{MessageParser, MessagePart};

/// Largest input looked at; the listener's size limit is normally lower.
pub const MAX_INPUT: usize = 32 * 1024 * 1024;
/// Bytes of a report part or original message that are read.
const MAX_PART: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message too large to parse")]
    TooLarge,
    #[error("not a parseable message")]
    NotAMessage,
    #[error("not a delivery status notification or feedback report")]
    NotAReport,
    #[error("malformed report: {0}")]
    Malformed(&'static str),
}

/// The pieces of a message that reports are made of.
#[derive(Default)]
pub(crate) struct Pieces {
    pub delivery_status: Option<String>,
    pub feedback: Option<String>,
    /// A copy of the original message or of its headers.
    pub original: Option<OriginalRef>,
    /// The first `text/plain` part (the whole body of a non-MIME bounce).
    pub text: Option<String>,
}

fn lossy(bytes: &[u8]) -> String {
    let end = bytes.len().min(MAX_PART);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn is(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| subtypes.iter().any(|want| s.eq_ignore_ascii_case(want)))
    })
}

pub(crate) fn pieces(raw: &[u8]) -> Result<Pieces, ParseError> {
    if raw.len() > MAX_INPUT {
        return Err(ParseError::TooLarge);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NotAMessage)?;
    let root = message.root();
    let mut p = Pieces::default();
    // Only the report's own parts: a bounce quoting a bounce must not be read twice.
    for part in root.parts() {
        if p.delivery_status.is_none()
            && is(
                &part,
                "message",
                &["delivery-status", "global-delivery-status"],
            )
        {
            p.delivery_status = Some(lossy(&part.decoded()));
        } else if p.feedback.is_none() && is(&part, "message", &["feedback-report"]) {
            p.feedback = Some(lossy(&part.decoded()));
        } else if p.original.is_none()
            && (is(&part, "message", &["rfc822", "global"])
                || is(&part, "text", &["rfc822-headers", "global-headers"]))
        {
            p.original = Some(original::from_headers(&lossy(&part.decoded())));
        } else if p.text.is_none() && matches!(part.kind(), mail_parser::PartKind::Text) {
            p.text = part.text().map(|t| t.chars().take(MAX_PART).collect());
        }
    }
    Ok(p)
}

/// Parses a bounce or a complaint.
pub fn parse(raw: &[u8]) -> Result<Report, ParseError> {
    let p = pieces(raw)?;
    if let Some(feedback) = &p.feedback {
        return arf::parse(feedback, p.original.clone().unwrap_or_default()).map(Report::Complaint);
    }
    if let Some(status) = &p.delivery_status {
        return dsn::parse(status, p.original.clone().unwrap_or_default()).map(Report::Bounce);
    }
    plain::parse(&p).map(Report::Bounce)
}
