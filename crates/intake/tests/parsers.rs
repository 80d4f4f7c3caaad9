//! Parser vectors: real-world-shaped bounces (Postfix, Gmail, Exim, qmail, sendmail)
//! and an ARF complaint as a typical feedback loop sends it; malformed and hostile
//! inputs must give an error, never a panic.

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

#[test]
fn malformed_inputs_never_panic() {
    let postfix = include_bytes!("vectors/postfix.eml");
    let arf = include_bytes!("vectors/arf.eml");
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n".to_vec(),
        vec![0xff; 1000],
        b"Content-Type: multipart/report; boundary=\"\"\r\n\r\n--\r\n--\r\n".to_vec(),
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 9.9.9.9\r\nDiagnostic-Code: ;;;;\r\n".to_vec(),
        format!("Content-Type: multipart/report; boundary=b\r\n\r\n{}", "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".repeat(2000)).into_bytes(),
    ];
    // Every truncation of real reports, at a stride.
    for src in [&postfix[..], &arf[..]] {
        for cut in (0..src.len()).step_by(37) {
            inputs.push(src[..cut].to_vec());
        }
    }
    for raw in &inputs {
        let _ = parse(raw);
    }
    assert_eq!(
        parse(&vec![b'a'; mailroom_intake::MAX_INPUT + 1]),
        Err(ParseError::TooLarge)
    );
}
