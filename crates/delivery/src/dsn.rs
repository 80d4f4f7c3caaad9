//! Delivery status notifications (RFC 3464): a multipart/report telling the envelope
//! sender which recipients failed and why. Pure formatting; the caller decides whether
//! one is due (never for the null sender, NOTIFY honoured) and enqueues it.

use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    /// Delivered to a peer that does not offer DSN (RFC 3464 §2.3.3): the last report
    /// the sender will get for this recipient.
    Relayed,
}

#[derive(Clone, Debug)]
pub struct DsnRecipient {
    pub address: String,
    /// ORCPT as given at submission (address without the type prefix).
    pub orcpt: Option<String>,
    pub action: Action,
    /// Enhanced status code, e.g. (5, 1, 1).
    pub status: (u8, u16, u16),
    pub remote_mta: Option<String>,
    /// The remote reply, or a description of what went wrong.
    pub diagnostic: String,
    pub last_attempt: i64,
}

#[derive(Clone, Debug)]
pub struct DsnInput<'a> {
    pub reporting_mta: &'a str,
    pub envid: Option<&'a str>,
    pub arrival: i64,
    /// The original envelope sender: the report's recipient.
    pub to: &'a str,
    pub recipients: Vec<DsnRecipient>,
    /// The original message.
    pub original: &'a [u8],
    /// RET=HDRS: return only the header section.
    pub headers_only: bool,
    /// The original asked for REQUIRETLS (RFC 8689): return none of its content,
    /// header section included — this report itself travels without REQUIRETLS, so
    /// it must not carry what the sender wanted sent only over validated TLS (§5).
    pub redact: bool,
    /// Unique token for the boundary and Message-ID.
    pub token: &'a str,
    pub now: i64,
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc2822()
}

/// Keeps free text safe inside a header or a delivery-status field.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

pub fn build(d: &DsnInput<'_>) -> Vec<u8> {
    let boundary = format!("=_mailroom_{}", d.token);
    let failed = d.recipients.iter().any(|r| r.action == Action::Failed);
    let delayed = d.recipients.iter().any(|r| r.action == Action::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{token}@{mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        mta = d.reporting_mta,
        to = d.to,
        date = date(d.now),
        token = d.token,
    );
    if failed {
        m.push_str("Your message could not be delivered to one or more recipients.\r\n\r\n");
    } else if delayed {
        m.push_str(
            "Your message has not been delivered yet; delivery is still being tried.\r\n\r\n",
        );
    } else {
        m.push_str(
            "Your message was delivered to the recipients' mail servers; they do not \
             send delivery reports, so this is the last report for them.\r\n\r\n",
        );
    }
    for r in &d.recipients {
        let _ = write!(m, "<{}>: {}\r\n", r.address, one_line(&r.diagnostic));
    }
    if d.redact {
        m.push_str(
            "\r\nThe message required TLS (REQUIRETLS, RFC 8689): its content is not \
             returned with this report.\r\n",
        );
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {mta}\r\n",
        mta = d.reporting_mta
    );
    if let Some(envid) = d.envid {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", one_line(envid));
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", date(d.arrival));
    for r in &d.recipients {
        m.push_str("\r\n");
        if let Some(orcpt) = &r.orcpt {
            let _ = write!(m, "Original-Recipient: rfc822; {}\r\n", one_line(orcpt));
        }
        let (a, b, c) = r.status;
        let _ = write!(
            m,
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {a}.{b}.{c}\r\n",
            r.address,
            match r.action {
                Action::Failed => "failed",
                Action::Delayed => "delayed",
                Action::Relayed => "relayed",
            }
        );
        if let Some(mta) = &r.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", one_line(mta));
        }
        let _ = write!(
            m,
            "Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(&r.diagnostic),
            date(r.last_attempt)
        );
    }
    let mut out = m.into_bytes();
    let header_end = d
        .original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(d.original.len());
    if d.redact {
        // No third part: RFC 6522 makes the returned content optional.
    } else if d.headers_only {
        out.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(&d.original[..header_end]);
    } else {
        out.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(d.original);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parses_back_with_its_fields() {
        let original = b"From: app@acme.test\r\nSubject: hello\r\n\r\nbody line\r\n";
        let input = DsnInput {
            reporting_mta: "mx.mailroom.test",
            envid: Some("env-1"),
            arrival: 1_700_000_000_000,
            to: "app@acme.test",
            recipients: vec![DsnRecipient {
                address: "bob@example.net".into(),
                orcpt: Some("bob@example.net".into()),
                action: Action::Failed,
                status: (5, 1, 1),
                remote_mta: Some("mx.example.net".into()),
                diagnostic: "550 5.1.1 no such user\r\ninjected: header".into(),
                last_attempt: 1_700_000_100_000,
            }],
            original,
            headers_only: true,
            redact: false,
            token: "01TESTTOKEN",
            now: 1_700_000_100_000,
        };
        let dsn = build(&input);
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains(
            "Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(text.contains("Original-Envelope-Id: env-1"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user  injected: header"));
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: app@acme.test\r\nSubject: hello\r\n"
        ));
        assert!(!text.contains("body line"), "RET=HDRS returns headers only");
        // Every line ends with CRLF; no bare LF.
        assert!(!dsn.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        assert!(parsed.parts().len() >= 4);
    }

    #[test]
    fn a_requiretls_original_is_not_returned() {
        let original = b"From: app@acme.test\r\nSubject: secret subject\r\n\r\nsecret body\r\n";
        for headers_only in [false, true] {
            let input = DsnInput {
                reporting_mta: "mx.mailroom.test",
                envid: None,
                arrival: 1_700_000_000_000,
                to: "app@acme.test",
                recipients: vec![DsnRecipient {
                    address: "bob@example.net".into(),
                    orcpt: None,
                    action: Action::Failed,
                    status: (5, 7, 30),
                    remote_mta: Some("mx.example.net".into()),
                    diagnostic: "REQUIRETLS: the exchanger does not offer REQUIRETLS".into(),
                    last_attempt: 1_700_000_100_000,
                }],
                original,
                headers_only,
                redact: true,
                token: "01TESTTOKEN",
                now: 1_700_000_100_000,
            };
            let dsn = build(&input);
            let text = String::from_utf8(dsn.clone()).unwrap();
            assert!(text.contains("Status: 5.7.30\r\n"), "{text}");
            assert!(!text.contains("secret"), "content returned: {text}");
            assert!(!text.contains("message/rfc822") && !text.contains("text/rfc822-headers"));
            assert!(text.contains("REQUIRETLS, RFC 8689"));
            let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
            // multipart/report with the text and the delivery-status parts only.
            assert_eq!(parsed.parts().len(), 3, "{text}");
        }
    }
}
