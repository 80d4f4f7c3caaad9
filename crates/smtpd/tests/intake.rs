//! The intake listener as transcripts, in memory: a real SQLite store holding one
//! delivered message sent with VERP, the real intake pipeline, and
//! `serve_intake_connection` on one end of a duplex pipe. Other addresses are refused
//! with `550 5.1.1`, the null sender is fine, a DSN for the VERP address is recorded,
//! and mail that is no report is refused with `550 5.6.0`. A DMARC aggregate report to
//! the domain's reporting address is counted; a bad one, another domain's, or a second
//! kind of recipient in the transaction get replies naming the problem.

use mailroom_intake::{HealthMonitor, Intake};
use mailroom_model::verp::verp_address;
use mailroom_model::{MessageId, RecipientState};
use mailroom_policy::{Policy, PolicyConfig};
use mailroom_smtpd::{IntakeHandle, Shared, SmtpConfig, serve_intake_connection};
use mailroom_store::DynStore;
use mailroom_testkit::{messages, stores};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

const RP: &str = "bounces.acme.test";

struct Stack {
    _dir: tempfile::TempDir,
    store: DynStore,
    shared: Arc<Shared>,
    message: MessageId,
}

async fn stack() -> Stack {
    let (store, tenant, dir) = stores::sqlite_with_tenant().await;
    stores::verified_domain(&store, &tenant, "acme.test").await;
    let message =
        messages::delivered_message(&store, &tenant, &["gone@example.net"], Some(RP)).await;
    let policy = Policy::load(store.clone(), PolicyConfig::default())
        .await
        .unwrap();
    let ingest = Arc::new(mailroom_ingest::Ingest::new(
        store.clone(),
        policy.clone(),
        "mx.test".into(),
    ));
    let health = Arc::new(HealthMonitor::new(store.clone(), policy.clone(), true));
    let handle = IntakeHandle {
        pipeline: Arc::new(
            Intake::new(store.clone(), health).with_reports(store.clone(), "bounces"),
        ),
        max_message_size: 20_000,
        max_recipients: 2,
    };
    let config = SmtpConfig {
        hostname: "mx.test".into(),
        ..Default::default()
    };
    let shared = Shared::with_intake(
        config,
        policy,
        ingest,
        None,
        CancellationToken::new(),
        Some(handle),
    );
    Stack {
        _dir: dir,
        store,
        shared,
        message,
    }
}

struct Client {
    io: DuplexStream,
    buf: Vec<u8>,
}

impl Client {
    fn start(s: &Stack) -> Self {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let shared = s.shared.clone();
        tokio::spawn(serve_intake_connection(
            shared,
            server,
            "198.51.100.7:40000".parse().unwrap(),
        ));
        Self {
            io: client,
            buf: Vec::new(),
        }
    }

    /// Reads one whole reply; returns its last line.
    async fn reply(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).to_string();
                self.buf.drain(..end + 2);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line;
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk))
                .await
                .expect("reply in time")
                .expect("read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn say(&mut self, line: &str, want: &str) -> String {
        self.io
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let r = self.reply().await;
        assert!(
            r.starts_with(want),
            "{line:?}: expected {want:?}, got {r:?}"
        );
        r
    }
}

fn dsn(to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: failure\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B--\r\n.\r\n"
    )
}

#[tokio::test]
async fn refuses_other_addresses_and_records_a_dsn_from_the_null_sender() {
    let s = stack().await;
    let verp = verp_address(RP, &s.message, 0);
    let mut c = Client::start(&s);
    assert!(c.reply().await.starts_with("220"));
    c.io.write_all(b"EHLO mx.example.net\r\n").await.unwrap();
    let mut ehlo = String::new();
    loop {
        let end = loop {
            if let Some(e) = c.buf.windows(2).position(|w| w == b"\r\n") {
                break e;
            }
            let mut chunk = [0u8; 4096];
            let n = c.io.read(&mut chunk).await.unwrap();
            c.buf.extend_from_slice(&chunk[..n]);
        };
        let line = String::from_utf8_lossy(&c.buf[..end]).to_string();
        c.buf.drain(..end + 2);
        ehlo.push_str(&line);
        ehlo.push('\n');
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
    assert!(
        ehlo.contains("SIZE 20000") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    c.say("AUTH PLAIN AGFAYg==", "503 5.5.1").await;
    c.say("RCPT TO:<a@b.test>", "503").await;
    c.say("MAIL FROM:<>", "250").await;
    c.say("RCPT TO:<postmaster@example.com>", "550 5.1.1").await;
    c.say("RCPT TO:<someone@bounces.acme.test>", "550 5.1.1")
        .await;
    c.say(
        &format!("RCPT TO:<{}>", verp_address(RP, &s.message, 5)),
        "550 5.1.1",
    )
    .await;
    c.say(
        &format!(
            "RCPT TO:<{}>",
            verp_address("bounces.evil.test", &s.message, 0)
        ),
        "550 5.1.1",
    )
    .await;
    c.say(
        &format!("RCPT TO:<{}>", verp_address(RP, &MessageId::generate(), 0)),
        "550 5.1.1",
    )
    .await;
    c.say(&format!("RCPT TO:<{verp}>"), "250").await;
    c.say("DATA", "354").await;
    c.io.write_all(dsn(&verp).as_bytes()).await.unwrap();
    assert!(c.reply().await.starts_with("250 2.0.0"));

    let view = s.store.get_message(&s.message).await.unwrap().unwrap();
    assert_eq!(view.recipients[0].state, RecipientState::Bounced);
    assert!(
        s.store
            .get_suppression(&view.tenant_id, "gone@example.net")
            .await
            .unwrap()
            .is_some()
    );

    // Not a report: refused after the data.
    c.say("MAIL FROM:<someone@example.org>", "250").await;
    c.say(&format!("RCPT TO:<{verp}>"), "250").await;
    c.say("DATA", "354").await;
    c.say("Subject: out of office\r\n\r\nI am away.\r\n.", "550 5.6.0")
        .await;
    // Declared too large.
    c.say("MAIL FROM:<> SIZE=30000", "552").await;
    c.say("QUIT", "221").await;
}

#[tokio::test]
async fn data_needs_a_recipient_and_the_size_is_bounded() {
    let s = stack().await;
    let verp = verp_address(RP, &s.message, 0);
    let mut c = Client::start(&s);
    c.reply().await;
    c.say("MAIL FROM:<>", "503").await; // no EHLO yet
    c.say("HELO mx.example.net", "250").await;
    c.say("MAIL FROM:<>", "250").await;
    c.say("DATA", "503").await;
    c.say(&format!("RCPT TO:<{verp}>"), "250").await;
    c.say("DATA", "354").await;
    let line = format!("{}\r\n", "a".repeat(900));
    let big = format!("Subject: x\r\n\r\n{}.", line.repeat(30));
    c.say(&big, "552").await;
}

fn dmarc_xml(domain: &str, broken: bool) -> String {
    format!(
        "From: noreply-dmarc-support@google.com\r\nTo: dmarc@bounces.acme.test\r\n\
         Subject: Report domain: {domain}\r\nContent-Type: text/xml\r\n\r\n\
         <?xml version=\"1.0\"?>\r\n<feedback><report_metadata><org_name>google.com</org_name>\r\n\
         <report_id>r-{domain}</report_id><date_range><begin>1796428800</begin>\r\n\
         <end>1796515199</end></date_range></report_metadata>\r\n\
         <policy_published><domain>{domain}</domain><p>none</p></policy_published>\r\n\
         <record><row><source_ip>203.0.113.66</source_ip><count>3</count>\r\n\
         <policy_evaluated><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>\r\n\
         <auth_results><spf><domain>x.test</domain><result>fail</result></spf></auth_results>\r\n\
         {}</feedback>\r\n.",
        if broken { "" } else { "</record>" }
    )
}

#[tokio::test]
async fn dmarc_reports_at_the_reporting_address() {
    let s = stack().await;
    let verp = verp_address(RP, &s.message, 0);
    let mut c = Client::start(&s);
    c.reply().await;
    c.say("EHLO reporter.example", "250").await;
    c.say("MAIL FROM:<noreply@google.com>", "250").await;
    c.say("RCPT TO:<dmarc@bounces.unknown.test>", "550 5.1.1")
        .await;
    c.say("RCPT TO:<dmarc@acme.test>", "550 5.1.1").await;
    c.say("RCPT TO:<DMARC@Bounces.Acme.Test>", "250").await;
    // A bounce address does not go with a report, nor does a second domain.
    c.say(&format!("RCPT TO:<{verp}>"), "452 4.5.3").await;
    c.say("DATA", "354").await;
    c.say(&dmarc_xml("acme.test", false), "250 2.0.0").await;
    let rows = s
        .store
        .domain_reports("acme.test", "2026-12-05", "2026-12-05")
        .await
        .unwrap();
    assert_eq!(rows.dmarc.len(), 1);
    assert_eq!((rows.dmarc[0].messages, rows.dmarc[0].dmarc_fail), (3, 3));

    c.say("MAIL FROM:<noreply@google.com>", "250").await;
    c.say("RCPT TO:<dmarc@bounces.acme.test>", "250").await;
    c.say("DATA", "354").await;
    let r = c.say(&dmarc_xml("acme.test", true), "550 5.6.0").await;
    assert!(r.contains("malformed DMARC aggregate report"), "{r}");
    c.say("MAIL FROM:<noreply@google.com>", "250").await;
    c.say("RCPT TO:<tls-rpt@bounces.acme.test>", "250").await;
    c.say("DATA", "354").await;
    let r = c.say(&dmarc_xml("evil.test", false), "550 5.7.1").await;
    assert!(r.contains("evil.test"), "{r}");
    // A bounce transaction first: a reporting address does not join it.
    c.say("MAIL FROM:<>", "250").await;
    c.say(&format!("RCPT TO:<{verp}>"), "250").await;
    c.say("RCPT TO:<dmarc@bounces.acme.test>", "452 4.5.3")
        .await;
    c.say("QUIT", "221").await;
    let rows = s
        .store
        .domain_reports("acme.test", "2026-12-01", "2026-12-31")
        .await
        .unwrap();
    assert_eq!(rows.dmarc[0].messages, 3, "refused reports changed nothing");
}
