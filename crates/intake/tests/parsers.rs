//! Parser vectors: real-world-shaped bounces (Postfix, Gmail, Exim, qmail, sendmail)
//! and an ARF complaint as a typical feedback loop sends it; malformed and hostile
//! inputs must give the right error (or a report saying only what the input says),
//! never a panic.

use mailroom_intake::report::{Action, BounceFormat, Report};
use mailroom_intake::{ParseError, parse};

const ID: &str = "01HXYZABCDEFGHJKMNPQRSTVWX";

fn bounce(raw: &str) -> mailroom_intake::report::BounceReport {
    match parse(raw.as_bytes()) {
        Ok(Report::Bounce(b)) => b,
        other => panic!("not a bounce: {other:?}"),
    }
}

#[test]
fn postfix_dsn() {
    let b = bounce(include_str!("vectors/postfix.eml"));
    assert_eq!(b.format, BounceFormat::Dsn);
    assert_eq!(b.reporting_mta.as_deref(), Some("mx.example.net"));
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("nobody@example.net"));
    assert_eq!(r.action, Action::Failed);
    assert_eq!(r.status, Some((5, 1, 1)));
    assert_eq!(r.code, Some(550));
    assert!(
        r.diagnostic
            .contains("User unknown in virtual mailbox table")
    );
    assert_eq!(r.remote_mta.as_deref(), Some("mail.example.net"));
    assert_eq!(
        b.original.return_path.as_deref(),
        Some("b+01hxyzabcdefghjkmnpqrstvwx-0@bounces.acme.test")
    );
}

#[test]
fn postfix_dsn_with_crlf() {
    let crlf = include_str!("vectors/postfix.eml").replace('\n', "\r\n");
    let b = bounce(&crlf);
    assert_eq!(b.recipients[0].status, Some((5, 1, 1)));
    assert!(b.original.return_path.is_some());
}

#[test]
fn gmail_dsn_with_multiline_reply_and_full_copy() {
    let b = bounce(include_str!("vectors/gmail.eml"));
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("gone@gmail.com"));
    assert_eq!((r.code, r.status), (Some(550), Some((5, 1, 1))));
    assert!(r.diagnostic.contains("does not exist"));
    assert_eq!(b.original.message_id.as_deref(), Some("m2@acme.test"));
    assert!(
        b.original
            .return_path
            .as_deref()
            .unwrap()
            .ends_with("-1@bounces.acme.test")
    );
}

#[test]
fn delayed_dsn_reports_no_failure() {
    let b = bounce(include_str!("vectors/delayed.eml"));
    assert_eq!(b.recipients[0].action, Action::Delayed);
    assert_eq!(b.recipients[0].status, Some((4, 4, 1)));
}

#[test]
fn exim_text_bounce() {
    let b = bounce(include_str!("vectors/exim.eml"));
    assert_eq!(b.format, BounceFormat::Exim);
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("full@example.org"));
    assert_eq!((r.code, r.status), (Some(552), Some((5, 2, 2))));
    assert!(r.diagnostic.contains("Mailbox full"), "{}", r.diagnostic);
    assert_eq!(b.original.mailroom_id.as_deref(), Some(ID));
    assert!(b.original.return_path.is_some());
}

#[test]
fn qmail_text_bounce() {
    let b = bounce(include_str!("vectors/qmail.eml"));
    assert_eq!(b.format, BounceFormat::Qmail);
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("nobody@example.com"));
    assert_eq!((r.code, r.status), (None, Some((5, 1, 1))));
    assert!(r.diagnostic.contains("no mailbox here"));
    assert!(
        b.original
            .return_path
            .as_deref()
            .unwrap()
            .ends_with("-2@bounces.acme.test")
    );
}

#[test]
fn sendmail_text_bounce() {
    let b = bounce(include_str!("vectors/sendmail.eml"));
    assert_eq!(b.format, BounceFormat::Sendmail);
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("prof@old.example.edu"));
    assert_eq!((r.code, r.status), (Some(550), Some((5, 1, 1))));
    assert!(b.original.return_path.is_some());
}

#[test]
fn arf_complaint() {
    let Ok(Report::Complaint(c)) = parse(include_bytes!("vectors/arf.eml")) else {
        panic!("not a complaint");
    };
    assert_eq!(c.feedback_type, "abuse");
    assert_eq!(c.user_agent.as_deref(), Some("SomeGenerator/1.0"));
    assert_eq!(c.original_rcpt_to.as_deref(), Some("angry@example.net"));
    assert_eq!(c.source_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(c.reporting_mta.as_deref(), Some("mail.hotmail.example"));
    assert!(
        c.original_mail_from
            .unwrap()
            .ends_with("-3@bounces.acme.test")
    );
    assert_eq!(c.original.received_id.as_deref(), Some(ID));
    assert_eq!(c.original.message_id.as_deref(), Some("m3@acme.test"));
    assert_eq!(c.original.to, ["angry@example.net"]);
}

#[test]
fn other_mail_is_not_a_report() {
    let cases: &[&[u8]] = &[
        b"From: a@b.example\r\nSubject: out of office\r\n\r\nI am away.\r\n",
        b"Subject: x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=q\r\n\r\n--q\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n--q--\r\n",
        b"Subject: x\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=q\r\n\r\n--q\r\nContent-Type: message/feedback-report\r\n\r\nUser-Agent: x\r\n\r\n--q--\r\n",
        b"Subject: x\r\n\r\nThis is the qmail-send program at x.\r\nno addresses here\r\n",
    ];
    for raw in cases {
        assert!(parse(raw).is_err(), "{}", String::from_utf8_lossy(raw));
    }
}

/// Malformed and hostile inputs: each has a defined result (the error of the right
/// kind, or a report that says only what the input says), not merely "no panic".
#[test]
fn malformed_inputs_have_a_defined_result() {
    let not_a_report = |raw: &[u8]| match parse(raw) {
        Err(ParseError::NotAMessage | ParseError::NotAReport) => {}
        other => panic!(
            "{:?}: expected not-a-report, got {other:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        ),
    };
    assert_eq!(parse(b""), Err(ParseError::NotAMessage));
    assert_eq!(parse(&[0xff; 1000]), Err(ParseError::NotAMessage));
    assert_eq!(parse(b"\r\n"), Err(ParseError::NotAReport));
    // An empty boundary is no boundary: there is no delivery-status part.
    assert_eq!(
        parse(b"Content-Type: multipart/report; boundary=\"\"\r\n\r\n--\r\n--\r\n"),
        Err(ParseError::NotAReport)
    );
    // 2,000 nested multiparts sharing one boundary: no report part is found, bounded.
    not_a_report(
        format!(
            "Content-Type: multipart/report; boundary=b\r\n\r\n{}",
            "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".repeat(2000)
        )
        .as_bytes(),
    );
    // A bare delivery-status with a nonsense Status and Diagnostic-Code: one failed
    // recipient with no address, no status and no reply code - nothing invented.
    let b = bounce(
        "Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 9.9.9.9\r\nDiagnostic-Code: ;;;;\r\n",
    );
    assert_eq!(b.recipients.len(), 1, "{b:?}");
    let r = &b.recipients[0];
    assert_eq!(
        (r.address.as_deref(), r.action),
        (None, Action::Failed),
        "{r:?}"
    );
    assert_eq!((r.status, r.code), (None, None), "{r:?}");
    assert_eq!(
        parse(&vec![b'a'; mailroom_intake::MAX_INPUT + 1]),
        Err(ParseError::TooLarge)
    );
}

/// Every truncation of real reports (at a stride): too short, it is not a report or a
/// malformed one; from some length on, it is the same report as the whole one says,
/// and it stays so as more arrives.
#[test]
fn truncated_reports_are_refused_or_read_consistently() {
    let postfix = include_bytes!("vectors/postfix.eml");
    let arf = include_bytes!("vectors/arf.eml");
    for (name, src) in [("postfix", &postfix[..]), ("arf", &arf[..])] {
        let mut first_ok = None;
        for cut in (0..src.len()).step_by(37) {
            let result = parse(&src[..cut]);
            match &result {
                Err(ParseError::TooLarge) => panic!("{name}[..{cut}]: TooLarge"),
                Err(_) => assert!(
                    first_ok.is_none(),
                    "{name}[..{cut}]: {result:?} after it parsed at {first_ok:?}"
                ),
                Ok(Report::Bounce(b)) => {
                    assert_eq!(name, "postfix", "{b:?}");
                    assert_eq!(b.format, BounceFormat::Dsn);
                    assert_eq!(b.recipients.len(), 1, "{name}[..{cut}]: {b:?}");
                    let r = &b.recipients[0];
                    assert_eq!(r.address.as_deref(), Some("nobody@example.net"));
                    assert_eq!(r.action, Action::Failed);
                    first_ok.get_or_insert(cut);
                }
                Ok(Report::Complaint(c)) => {
                    assert_eq!(name, "arf", "{c:?}");
                    assert_eq!(c.feedback_type, "abuse");
                    first_ok.get_or_insert(cut);
                }
            }
        }
        let first_ok = first_ok.unwrap_or_else(|| panic!("{name}: no truncation parsed"));
        assert!(first_ok > 0 && first_ok < src.len(), "{name}: {first_ok}");
    }
}
