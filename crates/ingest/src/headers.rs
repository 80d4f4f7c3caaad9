//! Reading the header section (with mail-parser) and adding trace headers.

use crate::{IngestError, Origin, Submission};
use mail_parser::MessageParser;
use mailroom_model::{Domain, MessageId, parse_domain};

pub(crate) struct Inspected {
    pub from_domains: Vec<Domain>,
    /// The local part of each `From:` address, in the order of `from_domains`.
    pub from_locals: Vec<String>,
    pub message_id: Option<String>,
    pub has_date: bool,
    /// The decoded `Subject:` (at most 998 characters), recorded on the `accepted`
    /// event so the console can search and list it.
    pub subject: Option<String>,
}

/// Largest header section accepted (the body limit bounds the rest).
const MAX_HEADER_SECTION: usize = 1024 * 1024;

fn header_section(body: &[u8]) -> &[u8] {
    if body.starts_with(b"\r\n") {
        return &body[..0];
    }
    match body.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(pos) => &body[..pos + 2],
        None => body,
    }
}

pub(crate) fn inspect(body: &[u8]) -> Result<Inspected, IngestError> {
    let section = header_section(body);
    if section.len() > MAX_HEADER_SECTION {
        return Err(IngestError::MalformedHeaders("header section too large"));
    }
    let message = MessageParser::default()
        .parse_headers(section)
        .ok_or(IngestError::MissingFrom)?;
    let from_headers = message.headers().all_from().count();
    match from_headers {
        0 => return Err(IngestError::MissingFrom),
        1 => {}
        _ => return Err(IngestError::MultipleFrom),
    }
    let mut from_domains = Vec::new();
    let mut from_locals = Vec::new();
    if let Some(list) = message.from() {
        for addr in list.mailboxes() {
            let Some(text) = addr.address() else { continue };
            let Some((local, domain)) = text.rsplit_once('@') else {
                return Err(IngestError::MalformedHeaders("From address has no domain"));
            };
            let domain = parse_domain(domain)
                .map_err(|_| IngestError::MalformedHeaders("From address has an invalid domain"))?;
            from_domains.push(domain);
            from_locals.push(local.to_string());
        }
    }
    if from_domains.is_empty() {
        return Err(IngestError::MissingFrom);
    }
    Ok(Inspected {
        from_domains,
        from_locals,
        message_id: message.message_id().map(|m| m.to_string()),
        has_date: message.date().is_some(),
        subject: message.subject().map(|s| s.chars().take(998).collect()),
    })
}

/// Returns the message with `Received:` (and missing `Message-ID:`/`Date:`) prepended,
/// and the Message-ID the message now carries.
pub(crate) fn add_trace(
    s: &Submission,
    parsed: &Inspected,
    id: &MessageId,
    hostname: &str,
    now_ms: i64,
) -> (Vec<u8>, Option<String>) {
    let date = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc2822();
    let (from_part, with) = match &s.origin {
        Origin::Smtp {
            helo,
            client_ip,
            tls,
        } => {
            let helo: String = helo
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '(' && *c != ')')
                .take(255)
                .collect();
            let with = match (
                tls.is_some(),
                matches!(s.tenant.via, mailroom_policy::Via::Credential(_)),
            ) {
                (true, true) => "ESMTPSA",
                (true, false) => "ESMTPS",
                (false, true) => "ESMTPA",
                (false, false) => "ESMTP",
            };
            let tls = tls
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default();
            (format!("from {helo} ([{client_ip}]){tls}\r\n\t"), with)
        }
        Origin::Api { client_ip } => {
            let ip = client_ip
                .map(|ip| format!("from [{ip}]\r\n\t"))
                .unwrap_or_default();
            (ip, "HTTP")
        }
    };
    let for_part = match s.recipients.as_slice() {
        [one] => format!("\r\n\tfor <{}>", one.address),
        _ => String::new(),
    };
    let mut head = format!(
        "Received: {from_part}by {hostname} (Mailroom) with {with} id {id}{for_part};\r\n\t{date}\r\n"
    );
    let message_id = match &parsed.message_id {
        Some(mid) => Some(mid.clone()),
        None => {
            let mid = format!("{}@{}", id.as_str().to_ascii_lowercase(), hostname);
            head.push_str(&format!("Message-ID: <{mid}>\r\n"));
            Some(mid)
        }
    };
    if !parsed.has_date {
        head.push_str(&format!("Date: {date}\r\n"));
    }
    let mut out = Vec::with_capacity(head.len() + s.body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&s.body);
    (out, message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_from_domains_and_ids() {
        let msg = b"From: \"Acme\" <billing@Acme.TEST>\r\nMessage-ID: <x@y>\r\nSubject: hi\r\n\r\nbody\r\n";
        let i = inspect(msg).unwrap();
        assert_eq!(i.from_domains[0].as_str(), "acme.test");
        assert_eq!(i.message_id.as_deref(), Some("x@y"));
        assert!(!i.has_date);
        assert!(matches!(
            inspect(b"Subject: x\r\n\r\nbody\r\n"),
            Err(IngestError::MissingFrom)
        ));
        assert!(matches!(
            inspect(b"From: a@acme.test\r\nFrom: b@evil.test\r\n\r\nx\r\n"),
            Err(IngestError::MultipleFrom)
        ));
        let two = inspect(b"From: a@acme.test, b@evil.test\r\n\r\nx\r\n").unwrap();
        assert_eq!(two.from_domains.len(), 2);
        // A header-looking line in the body is not a header.
        let i = inspect(b"From: a@acme.test\r\n\r\nFrom: b@evil.test\r\n").unwrap();
        assert_eq!(i.from_domains.len(), 1);
    }
}
