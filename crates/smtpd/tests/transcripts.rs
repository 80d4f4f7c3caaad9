//! SMTP sessions as transcripts, run in memory: a real SQLite store in a temporary
//! file, the real policy and ingest, and `serve_connection` on one end of a
//! `tokio::io::duplex` pipe. The client end is driven by `Transcript`, so a test reads
//! like the conversation it checks:
//!
//! ```text
//! t.send("MAIL FROM:<a@acme.test>").expect("530 5.7.0").await;
//! ```
//!
//! `send` only queues a line; the next `expect` writes everything queued in one write
//! (so several `send`s before an `expect` are a pipelined batch) and then reads one
//! complete, possibly multi-line, reply whose last line must start with the given text.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mailroom_model::{CredentialId, EventType, MessageId, RecipientState, TenantId};
use mailroom_policy::{Policy, PolicyConfig, secrets};
use mailroom_smtpd::{Shared, SmtpConfig, serve_connection};
use mailroom_store::prelude::*;
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{AllowedIp, DynStore, NewCredential, NewDomain, NewTenant};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

/// A client address on acme's allowlist (192.0.2.0/24): may send without AUTH.
const LISTED: &str = "192.0.2.10:40000";
/// A client address on acme's allowlist (203.0.113.0/24) only under TLS.
const LISTED_TLS_ONLY: &str = "203.0.113.5:40000";
/// A client address on no allowlist: must authenticate.
const STRANGER: &str = "198.51.100.7:40000";
const USERNAME: &str = "mrs_transcript";
const PASSWORD: &str = "correct-horse-battery-staple";
const MAX_SIZE: usize = 10_000;
/// How long any single read may take before the test fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

// --- the stack ------------------------------------------------------------------

struct Stack {
    store: Arc<SqliteStore>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tenant: TenantId,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// A stack with a certificate (STARTTLS offered).
    async fn new() -> Self {
        Self::build(true).await
    }

    async fn build(with_tls: bool) -> Self {
        Self::with_config(with_tls, |_| {}).await
    }

    async fn with_config(with_tls: bool, tweak: impl FnOnce(&mut SmtpConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("mailroom.db"))
                .await
                .expect("open store"),
        );
        let tenant = TenantId::generate();
        store
            .create_tenant(NewTenant {
                id: tenant.clone(),
                name: "acme".into(),
                api_key_hash: secrets::hash_api_key("mrk_transcript"),
            })
            .await
            .expect("tenant");
        store
            .add_domain(NewDomain {
                tenant_id: tenant.clone(),
                name: "acme.test".into(),
                verified: true,
                verification_token: "tok".into(),
                dkim_keys: vec![],
            })
            .await
            .expect("domain");
        store
            .create_credential(NewCredential {
                id: CredentialId::generate(),
                tenant_id: tenant.clone(),
                username: USERNAME.into(),
                password_hash: secrets::hash_password(PASSWORD),
            })
            .await
            .expect("credential");
        let dyn_store: DynStore = store.clone();
        let policy = Policy::load(dyn_store.clone(), PolicyConfig::default())
            .await
            .expect("policy");
        store
            .set_allowed_ips(
                &tenant,
                &[
                    AllowedIp {
                        tenant_id: tenant.clone(),
                        cidr: "192.0.2.0/24".into(),
                        require_tls: false,
                    },
                    AllowedIp {
                        tenant_id: tenant.clone(),
                        cidr: "203.0.113.0/24".into(),
                        require_tls: true,
                    },
                ],
            )
            .await
            .expect("allowlist");
        policy.reload().await.expect("reload");
        let ingest = Arc::new(mailroom_ingest::Ingest::new(
            dyn_store,
            policy.clone(),
            "mx.test".into(),
        ));
        let shutdown = CancellationToken::new();
        let mut config = SmtpConfig {
            hostname: "mx.test".into(),
            max_recipients: 3,
            max_message_size: MAX_SIZE,
            ..Default::default()
        };
        tweak(&mut config);
        let tls = with_tls.then(acceptor);
        let shared = Shared::new(config, policy, ingest, tls, shutdown.clone());
        Self {
            store,
            shared,
            shutdown,
            tenant,
            _dir: dir,
        }
    }

    /// Opens a session from `peer` and checks the greeting.
    async fn connect(&self, peer: &str) -> Transcript {
        let peer: SocketAddr = peer.parse().expect("peer");
        let (client, server) = tokio::io::duplex(256 * 1024);
        let server = tokio::spawn(serve_connection(self.shared.clone(), server, peer, false));
        let mut t = Transcript {
            io: Some(Box::new(client)),
            inbuf: Vec::new(),
            pending: Vec::new(),
            log: String::new(),
            server,
        };
        t.expect("220 mx.test ESMTP").await;
        t
    }

    /// Recipient rows in the store, whatever their state.
    async fn recipient_rows(&self) -> i64 {
        self.store
            .count_recipients_by_state()
            .await
            .expect("count")
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}

/// The test binary's self-signed certificate for `mx.test` and its PKCS#8 key: the
/// server presents it, the client trusts it (and nothing else).
fn test_cert() -> &'static (CertificateDer<'static>, Vec<u8>) {
    static CERT: OnceLock<(CertificateDer<'static>, Vec<u8>)> = OnceLock::new();
    CERT.get_or_init(|| {
        let key = rcgen::generate_simple_self_signed(vec!["mx.test".to_owned()]).expect("cert");
        (key.cert.der().clone(), key.signing_key.serialize_der())
    })
}

fn acceptor() -> TlsAcceptor {
    let (cert, key) = test_cert();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], der)
            .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

/// A client that trusts the test's own self-signed certificate.
fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(test_cert().0.clone()).expect("trust anchor");
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

// --- the transcript client ------------------------------------------------------

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One reply: its raw lines without CRLF.
#[derive(Debug)]
struct Reply {
    lines: Vec<String>,
}

impl Reply {
    /// The text of each line after "250-" / "250 " (EHLO keywords, for instance).
    fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| &l[4..]).collect()
    }

    fn last(&self) -> &str {
        self.lines.last().expect("a reply has a line")
    }

    /// The id in "250 2.0.0 Ok: queued as <id>".
    fn queued_id(&self) -> MessageId {
        let id = self
            .last()
            .strip_prefix("250 2.0.0 Ok: queued as ")
            .unwrap_or_else(|| panic!("not a queued reply: {:?}", self.last()));
        assert_eq!(id.len(), 26, "queue id {id:?}");
        MessageId::parse(id).unwrap_or_else(|| panic!("queue id {id:?} is not a ULID"))
    }
}

struct Transcript {
    /// `None` only while the stream is being wrapped in TLS.
    io: Option<Box<dyn Io>>,
    inbuf: Vec<u8>,
    pending: Vec<u8>,
    /// Everything said so far, for failure messages.
    log: String,
    server: JoinHandle<()>,
}

impl Transcript {
    /// Queues one command line (CRLF is added).
    fn send(&mut self, line: &str) -> &mut Self {
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.extend_from_slice(b"\r\n");
        self
    }

    /// Queues bytes exactly as given.
    fn send_raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.pending.extend_from_slice(bytes);
        self
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        self.log.push_str(&format!(
            "C: {}\n",
            String::from_utf8_lossy(&bytes).escape_debug()
        ));
        let io = self.io.as_mut().expect("stream");
        io.write_all(&bytes).await.expect("write");
        io.flush().await.expect("flush");
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let io = self.io.as_mut().expect("stream");
        match tokio::time::timeout(READ_TIMEOUT, io.read(&mut chunk)).await {
            Err(_) => panic!("no reply within {READ_TIMEOUT:?}\n{}", self.log),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
            Ok(Err(e)) => panic!("read failed: {e}\n{}", self.log),
            Ok(Ok(0)) => false,
            Ok(Ok(n)) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.inbuf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.inbuf.drain(..=i).collect();
                let line = String::from_utf8(line).expect("reply is UTF-8");
                let line = line
                    .strip_suffix("\r\n")
                    .unwrap_or_else(|| panic!("reply line without CRLF: {line:?}\n{}", self.log));
                self.log.push_str(&format!("S: {line}\n"));
                return Some(line.to_string());
            }
            if !self.fill().await {
                if !self.inbuf.is_empty() {
                    panic!(
                        "unterminated reply {:?}\n{}",
                        String::from_utf8_lossy(&self.inbuf),
                        self.log
                    );
                }
                return None;
            }
        }
    }

    /// Reads one whole reply; `None` if the server closed the connection first.
    async fn read_reply(&mut self) -> Option<Reply> {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let Some(line) = self.read_line().await else {
                assert!(lines.is_empty(), "closed inside a reply\n{}", self.log);
                return None;
            };
            assert!(
                line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "malformed reply line {line:?}\n{}",
                self.log
            );
            let last = line.as_bytes()[3] == b' ';
            assert!(
                last || line.as_bytes()[3] == b'-',
                "bad separator in {line:?}"
            );
            if let Some(first) = lines.first() {
                assert_eq!(first[..3], line[..3], "code changed inside a reply");
            }
            lines.push(line);
            if last {
                return Some(Reply { lines });
            }
        }
    }

    /// Writes what was queued, reads one reply and checks that its last line starts
    /// with `want` (code and enhanced code, and as much text as the test cares for).
    async fn expect(&mut self, want: &str) -> Reply {
        self.flush().await;
        let Some(reply) = self.read_reply().await else {
            panic!("expected {want:?}, connection closed\n{}", self.log);
        };
        assert!(
            reply.last().starts_with(want),
            "expected {want:?}, got {:?}\n{}",
            reply.lines,
            self.log
        );
        reply
    }

    /// Writes what was queued and checks the server closes without another word.
    async fn expect_closed(&mut self) {
        self.flush().await;
        if let Some(reply) = self.read_reply().await {
            panic!("expected close, got {:?}\n{}", reply.lines, self.log);
        }
        tokio::time::timeout(READ_TIMEOUT, &mut self.server)
            .await
            .expect("session task ends")
            .expect("session task did not panic");
    }

    /// Writes what was queued and checks the server says nothing for a while.
    async fn expect_silence(&mut self) {
        self.flush().await;
        assert!(self.inbuf.is_empty(), "unexpected {:?}", self.inbuf);
        let mut byte = [0u8; 1];
        let io = self.io.as_mut().expect("stream");
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), io.read(&mut byte)).await {
            panic!("expected silence, read {r:?} ({:?})\n{}", byte, self.log);
        }
    }

    /// STARTTLS, then the handshake on the same stream.
    async fn starttls(&mut self) {
        self.expect("220 2.0.0").await;
        self.upgrade().await;
    }

    /// The TLS handshake after a 220 to STARTTLS has been read. Nothing may follow
    /// that 220 in the clear.
    async fn upgrade(&mut self) {
        assert!(
            self.inbuf.is_empty(),
            "plaintext after the STARTTLS 220: {:?}\n{}",
            String::from_utf8_lossy(&self.inbuf),
            self.log
        );
        let io = self.io.take().expect("stream");
        let name = ServerName::try_from("mx.test").expect("name");
        let tls = tokio::time::timeout(READ_TIMEOUT, connector().connect(name, io))
            .await
            .expect("handshake in time")
            .expect("handshake");
        self.log.push_str("-- TLS --\n");
        self.io = Some(Box::new(tls));
    }

    /// EHLO, checking the reply; returns the keywords.
    async fn ehlo(&mut self) -> Vec<String> {
        let reply = self.send("EHLO client.test").expect("250 ").await;
        assert_eq!(reply.texts()[0], "mx.test Hello client.test");
        reply.texts()[1..].iter().map(|s| s.to_string()).collect()
    }

    /// A whole transaction with DATA that must be queued; returns the id.
    async fn submit(&mut self, from: &str, to: &[&str], body: &str) -> MessageId {
        self.send(&format!("MAIL FROM:<{from}>"))
            .expect("250 2.1.0")
            .await;
        for rcpt in to {
            self.send(&format!("RCPT TO:<{rcpt}>"))
                .expect("250 2.1.5")
                .await;
        }
        self.send("DATA").expect("354").await;
        self.send_raw(body.as_bytes())
            .send(".")
            .expect("250 2.0.0 Ok: queued as ")
            .await
            .queued_id()
    }
}

/// A small valid message from `from` (CRLF line endings, ends with CRLF).
fn message(from: &str) -> String {
    format!(
        "From: Sender <{from}>\r\nTo: <one@example.net>\r\nSubject: transcript\r\n\r\nHello.\r\n"
    )
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

fn plain(user: &str, pass: &str) -> String {
    b64(&format!("\0{user}\0{pass}"))
}

// --- greeting, EHLO and what needs TLS ------------------------------------------

#[tokio::test]
async fn greeting_and_ehlo_before_tls() {
    let stack = Stack::new().await;
    let mut t = stack.connect(STRANGER).await;
    let keywords = t.ehlo().await;
    for want in [
        "PIPELINING",
        "SIZE 10000",
        "CHUNKING",
        "STARTTLS",
        "8BITMIME",
    ] {
        assert!(keywords.iter().any(|k| k == want), "{want} in {keywords:?}");
    }
    assert!(
        !keywords.iter().any(|k| k.starts_with("AUTH")),
        "AUTH offered in the clear: {keywords:?}"
    );
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
        .expect("538 5.7.11")
        .await;
    t.send("AUTH LOGIN").expect("538 5.7.11").await;
    t.send("MAIL FROM:<a@acme.test>").expect("530 5.7.0").await;
    t.send("RCPT TO:<b@example.net>").expect("530 5.7.0").await;
    t.send("DATA").expect("530 5.7.0").await;
    t.send("VRFY postmaster").expect("252 2.5.2").await;
    t.send("EXPN staff").expect("502 5.5.1").await;
    t.send("NOOP").expect("250 2.0.0").await;
    t.send("QUIT").expect("221 2.0.0 mx.test").await;
    t.expect_closed().await;
    assert_eq!(stack.recipient_rows().await, 0);
}

#[tokio::test]
async fn commands_before_ehlo_and_without_a_certificate() {
    let stack = Stack::build(false).await;
    let mut t = stack.connect(LISTED).await;
    t.send("MAIL FROM:<a@acme.test>").expect("503 5.5.1").await;
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
        .expect("503 5.5.1")
        .await;
    let keywords = t.ehlo().await;
    assert!(!keywords.iter().any(|k| k == "STARTTLS"), "{keywords:?}");
    t.send("STARTTLS").expect("454 4.7.0").await;
    t.send("DATA").expect("503 5.5.1 Need MAIL").await;
    t.send("RCPT TO:<b@example.net>")
        .expect("503 5.5.1 Need MAIL")
        .await;
    t.send("MAIL FROM:<a@acme.test>").expect("250 2.1.0").await;
    t.send("DATA").expect("503 5.5.1 Need RCPT").await;
    t.send("MAIL FROM:<a@acme.test>").expect("503 5.5.1").await;
    t.send("MAIL FROM:<>").expect("503 5.5.1").await;
    t.send("RSET").expect("250 2.0.0").await;
    t.send("MAIL FROM:<>").expect("550 5.7.1").await;
    t.send("HELP").expect("214 2.0.0").await;
    t.send("QUIT").expect("221 2.0.0").await;
    t.expect_closed().await;
}

// --- the allowlisted happy path -------------------------------------------------

#[tokio::test]
async fn allowlisted_client_submits_without_auth() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    let id = t
        .submit(
            "sender@acme.test",
            &["one@example.net", "two@example.org"],
            &message("sender@acme.test"),
        )
        .await;
    t.send("QUIT").expect("221 2.0.0").await;
    t.expect_closed().await;

    let m = stack
        .store
        .get_message(&id)
        .await
        .expect("read")
        .expect("the queued message exists");
    assert_eq!(m.tenant_id, stack.tenant);
    assert_eq!(m.mail_from, "sender@acme.test");
    assert_eq!(m.source, "smtp");
    assert_eq!(m.client_ip.as_deref(), Some("192.0.2.10"));
    let addresses: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["one@example.net", "two@example.org"]);
    for r in &m.recipients {
        assert_eq!(r.state, RecipientState::Queued, "{}", r.address);
        assert_eq!(r.attempts, 0);
        let kinds: Vec<EventType> = r.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventType::Accepted], "{}", r.address);
    }
    let body = stack
        .store
        .load_body(&id)
        .await
        .expect("read")
        .expect("body");
    let body = String::from_utf8(body).expect("utf-8");
    assert!(
        body.starts_with("Received: from client.test ([192.0.2.10])"),
        "{body}"
    );
    assert!(
        body.contains("by mx.test (Mailroom) with ESMTP id "),
        "{body}"
    );
    let generated = format!(
        "Message-ID: <{}@mx.test>\r\n",
        id.as_str().to_ascii_lowercase()
    );
    assert!(body.contains(&generated), "{generated:?} in {body}");
    assert_eq!(
        m.rfc_message_id.as_deref(),
        Some(format!("{}@mx.test", id.as_str().to_ascii_lowercase()).as_str())
    );
    assert!(body.ends_with(&message("sender@acme.test")), "{body}");
    assert_eq!(stack.recipient_rows().await, 2);
}

#[tokio::test]
async fn pipelined_batch_is_answered_in_order() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    // One write carries the whole envelope and DATA.
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send("RCPT TO:<bad%relay@example.net>")
        .send("RCPT TO:<two@example.net>")
        .send("DATA");
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect("553 5.1.3").await;
    t.expect("250 2.1.5").await;
    t.expect("354").await;
    // The body, the end of data and the next command in one write, too.
    let id = t
        .send_raw(message("sender@acme.test").as_bytes())
        .send(".")
        .send("NOOP")
        .expect("250 2.0.0 Ok: queued as ")
        .await
        .queued_id();
    t.expect("250 2.0.0 Ok").await;
    let m = stack.store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(m.recipients.len(), 2);
}

// --- sender and recipient rules -------------------------------------------------

#[tokio::test]
async fn foreign_envelope_sender_domain_is_refused() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<boss@evil.test>")
        .expect("550 5.7.1")
        .await;
    t.send("MAIL FROM:<boss@acme.test.evil.test>")
        .expect("550 5.7.1")
        .await;
    t.send("MAIL FROM:<boss@notacme.test>")
        .expect("550 5.7.1")
        .await;
    // A subdomain of a verified domain is the tenant's.
    t.send("MAIL FROM:<news@mail.acme.test>")
        .expect("250 2.1.0")
        .await;
    t.send("RSET").expect("250 2.0.0").await;
    t.send("MAIL FROM:<x@[192.0.2.1]>")
        .expect("553 5.1.7")
        .await;
    // A non-ASCII local part needs SMTPUTF8 on MAIL.
    t.send("MAIL FROM:<jörg@acme.test>")
        .expect("553 5.6.7")
        .await;
    t.send("MAIL FROM:<jörg@acme.test> SMTPUTF8")
        .expect("250 2.1.0")
        .await;
    t.send("RCPT TO:<zoë@example.net>")
        .expect("250 2.1.5")
        .await;
    assert_eq!(stack.recipient_rows().await, 0);
}

#[tokio::test]
async fn foreign_from_header_is_refused_after_the_dot() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("250 2.1.0")
        .await;
    t.send("RCPT TO:<one@example.net>")
        .expect("250 2.1.5")
        .await;
    t.send("DATA").expect("354").await;
    t.send_raw(message("ceo@evil.test").as_bytes());
    t.expect_silence().await;
    t.send(".").expect("550 5.7.1").await;
    // No From at all.
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send("DATA");
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect("354").await;
    t.send_raw(b"Subject: no sender\r\n\r\nHello.\r\n")
        .send(".")
        .expect("550 5.6.0")
        .await;
    t.send("NOOP").expect("250 2.0.0").await;
    assert_eq!(stack.recipient_rows().await, 0);
}

#[tokio::test]
async fn fourth_recipient_is_refused_temporarily() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("250 2.1.0")
        .await;
    for n in 1..=3 {
        t.send(&format!("RCPT TO:<r{n}@example.net>"))
            .expect("250 2.1.5")
            .await;
    }
    t.send("RCPT TO:<r4@example.net>").expect("452 4.5.3").await;
    t.send("DATA").expect("354").await;
    let id = t
        .send_raw(message("sender@acme.test").as_bytes())
        .send(".")
        .expect("250 2.0.0 Ok: queued as ")
        .await
        .queued_id();
    let m = stack.store.get_message(&id).await.unwrap().unwrap();
    let addresses: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(
        addresses,
        ["r1@example.net", "r2@example.net", "r3@example.net"]
    );
}

#[tokio::test]
async fn relay_tricks_in_recipients_are_refused() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("250 2.1.0")
        .await;
    for rcpt in [
        "user%victim.test@acme.test",
        "victim.test!user@acme.test",
        "\"user@victim.test\"@acme.test",
        "user@[127.0.0.1]",
        "user@localhost",
    ] {
        t.send(&format!("RCPT TO:<{rcpt}>"))
            .expect("553 5.1.3")
            .await;
    }
    t.send("DATA").expect("503 5.5.1 Need RCPT").await;
    t.send("NOOP").expect("250 2.0.0").await;
}

// --- size limits ----------------------------------------------------------------

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_at_mail() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test> SIZE=999999")
        .expect("552 5.3.4")
        .await;
    t.send("MAIL FROM:<sender@acme.test> SIZE=10001")
        .expect("552 5.3.4")
        .await;
    t.send("MAIL FROM:<sender@acme.test> SIZE=10000")
        .expect("250 2.1.0")
        .await;
}

#[tokio::test]
async fn oversized_body_is_refused_only_after_the_dot() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send("DATA");
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect("354").await;
    let mut body = message("sender@acme.test");
    let line = format!("{}\r\n", "x".repeat(76));
    while body.len() <= MAX_SIZE + 2000 {
        body.push_str(&line);
    }
    t.send_raw(body.as_bytes());
    // The whole body is read before anything is said.
    t.expect_silence().await;
    t.send(".").expect("552 5.3.4").await;
    t.send("NOOP").expect("250 2.0.0").await;
    // And the session is good for a message of the right size.
    t.submit(
        "sender@acme.test",
        &["one@example.net"],
        &message("sender@acme.test"),
    )
    .await;
    assert_eq!(stack.recipient_rows().await, 1);
}

#[tokio::test]
async fn overlong_body_line_is_refused_after_the_dot() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send("DATA");
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect("354").await;
    let mut body = message("sender@acme.test");
    body.push_str(&"y".repeat(999));
    body.push_str("\r\n");
    t.send_raw(body.as_bytes())
        .send(".")
        .expect("550 5.6.0")
        .await;
    // 998 characters is the longest line allowed.
    let mut body = message("sender@acme.test");
    body.push_str(&"y".repeat(998));
    body.push_str("\r\n");
    t.submit("sender@acme.test", &["one@example.net"], &body)
        .await;
    assert_eq!(stack.recipient_rows().await, 1);
}

// --- smuggling ------------------------------------------------------------------

#[tokio::test]
async fn smuggled_end_of_data_is_one_refused_message() {
    let stack = Stack::new().await;
    let fakes: [&[u8]; 12] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\n",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\n.\r",
        b"\r\n\x00.\r\n",
        b"\r.\r",
        b"\r\n.\r\r\n",
        b"\n\n.\n",
        b"\r\n\n.\r\n",
    ];
    for fake in fakes {
        let mut t = stack.connect(LISTED).await;
        t.ehlo().await;
        t.send("MAIL FROM:<sender@acme.test>")
            .send("RCPT TO:<victim@example.net>")
            .send("DATA");
        t.expect("250 2.1.0").await;
        t.expect("250 2.1.5").await;
        t.expect("354").await;
        let mut input = b"From: <sender@acme.test>\r\nSubject: real\r\n\r\nbody".to_vec();
        input.extend_from_slice(fake);
        input.extend_from_slice(
            b"MAIL FROM:<sender@acme.test>\r\n\
              RCPT TO:<smuggled@example.net>\r\n\
              DATA\r\n\
              From: <sender@acme.test>\r\n\
              Subject: smuggled\r\n\r\nsmuggled\r\n",
        );
        input.extend_from_slice(b"\r\n.\r\n");
        let refused = t.send_raw(&input).expect("550 5.6.0").await;
        assert_eq!(refused.lines.len(), 1, "{fake:?}");
        // The very next reply is for the next command: nothing was read as commands.
        t.send("NOOP").expect("250 2.0.0 Ok").await;
        t.send("QUIT").expect("221 2.0.0").await;
        t.expect_closed().await;
        assert_eq!(
            stack.recipient_rows().await,
            0,
            "{fake:?}: a message was queued"
        );
    }
}

/// Lines ending in a bare LF (a Unix file sent as it is, e.g. by `curl --upload-file`)
/// are stored as CRLF lines; only the real CRLF.CRLF ends the data.
#[tokio::test]
async fn lf_only_data_is_stored_with_crlf_lines() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send("DATA");
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect("354").await;
    let id = t
        .send_raw(b"From: <sender@acme.test>\nSubject: unix\n\nline one\n..dot\nlast\n\r\n.\r\n")
        .expect("250 2.0.0 Ok: queued as ")
        .await
        .queued_id();
    t.send("NOOP").expect("250 2.0.0").await;
    let body = stack.store.load_body(&id).await.unwrap().unwrap();
    assert!(
        body.ends_with(
            b"From: <sender@acme.test>\r\nSubject: unix\r\n\r\nline one\r\n.dot\r\nlast\r\n\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(!body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
}

// --- BDAT -----------------------------------------------------------------------

#[tokio::test]
async fn bdat_in_two_chunks_is_accepted() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    let first = b"From: <sender@acme.test>\r\nSubject: chunks\r";
    let second = b"\n\r\n.leading dot kept\r\n";
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send(&format!("BDAT {}", first.len()))
        .send_raw(first);
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect(&format!("250 2.0.0 {} octets received", first.len()))
        .await;
    let id = t
        .send(&format!("BDAT {} LAST", second.len()))
        .send_raw(second)
        .expect("250 2.0.0 Ok: queued as ")
        .await
        .queued_id();
    t.send("NOOP").expect("250 2.0.0").await;
    let body = stack.store.load_body(&id).await.unwrap().unwrap();
    assert!(
        body.ends_with(b"From: <sender@acme.test>\r\nSubject: chunks\r\n\r\n.leading dot kept\r\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn bdat_with_bare_lf_is_normalised_and_bare_cr_refused() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    let chunk = b"From: <sender@acme.test>\nSubject: bare\n\nhi\n.\n";
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send(&format!("BDAT {} LAST", chunk.len()))
        .send_raw(chunk);
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    let id = t.expect("250 2.0.0 Ok: queued as ").await.queued_id();
    let body = stack.store.load_body(&id).await.unwrap().unwrap();
    assert!(
        body.ends_with(b"From: <sender@acme.test>\r\nSubject: bare\r\n\r\nhi\r\n.\r\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let chunk = b"From: <sender@acme.test>\rSubject: bare\r\n\r\nhi\r\n";
    t.send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>")
        .send(&format!("BDAT {} LAST", chunk.len()))
        .send_raw(chunk);
    t.expect("250 2.1.0").await;
    t.expect("250 2.1.5").await;
    t.expect("550 5.6.0 Message refused: bare CR").await;
    t.send("NOOP").expect("250 2.0.0").await;
    // BDAT without a transaction: the chunk is swallowed, not read as commands.
    t.send("BDAT 6 LAST").send_raw(b"NOOP\r\n");
    t.expect("503 5.5.1").await;
    t.send("DATA").expect("503 5.5.1").await;
    assert_eq!(stack.recipient_rows().await, 1);
}

// --- STARTTLS and AUTH ----------------------------------------------------------

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    // RFC 3207 / CVE-2011-0411: what follows STARTTLS in the same write must not be
    // answered in the clear nor executed inside TLS.
    t.send("STARTTLS")
        .send("MAIL FROM:<sender@acme.test>")
        .send("RCPT TO:<one@example.net>");
    t.expect("220 2.0.0").await;
    t.upgrade().await;
    // The first reply inside TLS is the one to this EHLO, not to the MAIL above
    // (which would be "503 Send EHLO first").
    let keywords = t.ehlo().await;
    assert!(
        keywords.iter().any(|k| k == "AUTH PLAIN LOGIN"),
        "{keywords:?}"
    );
    assert!(!keywords.iter().any(|k| k == "STARTTLS"), "{keywords:?}");
    // No transaction survived either.
    t.send("RCPT TO:<one@example.net>")
        .expect("503 5.5.1 Need MAIL")
        .await;
    t.send("STARTTLS").expect("503 5.5.1").await;
    t.send("QUIT").expect("221 2.0.0").await;
    t.expect_closed().await;
}

#[tokio::test]
async fn auth_plain_after_starttls() {
    let stack = Stack::new().await;
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    let keywords = t.ehlo().await;
    assert!(
        keywords.iter().any(|k| k == "AUTH PLAIN LOGIN"),
        "{keywords:?}"
    );
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("530 5.7.0")
        .await;
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, "wrong-password")))
        .expect("535 5.7.8")
        .await;
    t.send(&format!("AUTH PLAIN {}", plain("mrs_nobody", PASSWORD)))
        .expect("535 5.7.8")
        .await;
    t.send("AUTH PLAIN not-base64!").expect("501 5.5.2").await;
    t.send("AUTH CRAM-MD5").expect("504 5.5.4").await;
    // PLAIN with the response on its own line.
    t.send("AUTH PLAIN").expect("334").await;
    t.send(&plain(USERNAME, PASSWORD)).expect("235 2.7.0").await;
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
        .expect("503 5.5.1")
        .await;
    let id = t
        .submit(
            "sender@acme.test",
            &["one@example.net"],
            &message("sender@acme.test"),
        )
        .await;
    t.send("QUIT").expect("221 2.0.0").await;
    t.expect_closed().await;
    let body = stack.store.load_body(&id).await.unwrap().unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.starts_with("Received: from client.test ([198.51.100.7]) (TLSv1."),
        "{body}"
    );
    assert!(body.contains(" with ESMTPSA id "), "{body}");
}

#[tokio::test]
async fn auth_login_after_starttls() {
    let stack = Stack::new().await;
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.send("AUTH LOGIN").expect("334 VXNlcm5hbWU6").await;
    t.send(&b64(USERNAME)).expect("334 UGFzc3dvcmQ6").await;
    t.send(&b64(PASSWORD)).expect("235 2.7.0").await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("250 2.1.0")
        .await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("503 5.5.1")
        .await;

    // Wrong password, username given with the command, and a cancelled exchange.
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.send(&format!("AUTH LOGIN {}", b64(USERNAME)))
        .expect("334 UGFzc3dvcmQ6")
        .await;
    t.send(&b64("nope")).expect("535 5.7.8").await;
    t.send("AUTH LOGIN").expect("334 VXNlcm5hbWU6").await;
    t.send("*").expect("501 5.7.0").await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("530 5.7.0")
        .await;
}

#[tokio::test]
async fn allowlist_entry_requiring_tls() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED_TLS_ONLY).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("530 5.7.0 Must issue a STARTTLS command first")
        .await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.submit(
        "sender@acme.test",
        &["one@example.net"],
        &message("sender@acme.test"),
    )
    .await;
    assert_eq!(stack.recipient_rows().await, 1);
}

#[tokio::test]
async fn repeated_auth_failures_close_the_session() {
    let stack = Stack::new().await;
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    for _ in 0..2 {
        t.send(&format!("AUTH PLAIN {}", plain(USERNAME, "bad")))
            .expect("535 5.7.8")
            .await;
    }
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, "bad")));
    t.expect("535 5.7.8").await;
    t.expect("421 4.7.0").await;
    t.expect_closed().await;
}

#[tokio::test]
async fn auth_failures_across_sessions_lock_the_address_out() {
    let stack = Stack::new().await;
    // PolicyConfig::default(): 10 failures per address; 3 per session close it.
    let mut failures = 0;
    while failures < 10 {
        let mut t = stack.connect(STRANGER).await;
        t.ehlo().await;
        t.send("STARTTLS").starttls().await;
        t.ehlo().await;
        loop {
            t.send(&format!("AUTH PLAIN {}", plain(USERNAME, "bad")))
                .expect("535 5.7.8")
                .await;
            failures += 1;
            if failures % 3 == 0 {
                t.expect("421 4.7.0").await;
                t.expect_closed().await;
                break;
            }
            if failures == 10 {
                break;
            }
        }
    }
    // Locked out: even the right password is not checked.
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
        .expect("421 4.7.0")
        .await;
    t.expect_closed().await;
    // Another address is not affected.
    let mut t = stack.connect("198.51.100.8:40000").await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
        .expect("235 2.7.0")
        .await;
}

// --- errors and limits ----------------------------------------------------------

#[tokio::test]
async fn too_many_unknown_commands_get_421_and_close() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    // max_errors is 10 by default.
    for _ in 0..10 {
        t.send("XYZZY").expect("500 5.5.1").await;
    }
    t.expect("421 4.7.0").await;
    t.expect_closed().await;
}

#[tokio::test]
async fn unknown_commands_below_the_limit_keep_the_session() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    for _ in 0..9 {
        t.send("XYZZY").expect("500 5.5.1").await;
    }
    t.send("NOOP").expect("250 2.0.0").await;
}

#[tokio::test]
async fn overlong_command_line_is_refused() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    // 2048 bytes with CRLF is the longest line accepted.
    let fits = format!("NOOP {}", "a".repeat(2048 - 2 - 5));
    t.send(&fits).expect("250 2.0.0").await;
    let over = format!("NOOP {}", "a".repeat(2048 - 2 - 4));
    t.send(&over).expect("500 5.5.2").await;
    let way_over = format!("MAIL FROM:<{}@acme.test>", "a".repeat(40_000));
    t.send(&way_over).expect("500 5.5.2").await;
    // The rest of the overlong line was not read as a command.
    t.send("NOOP").expect("250 2.0.0").await;
    // A bare LF ends the (refused) line; what follows is the next command.
    t.send("NOOP\nNOOP").expect("500 5.5.2").await;
    t.expect("250 2.0.0").await;
    t.send("NOOP").expect("250 2.0.0").await;
}

#[tokio::test]
async fn idle_client_times_out_with_421() {
    let stack = Stack::with_config(true, |c| c.command_timeout = Duration::from_millis(200)).await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.expect("421 4.4.2").await;
    t.expect_closed().await;
}

#[tokio::test]
async fn shutdown_tells_an_idle_client_421() {
    let stack = Stack::new().await;
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    stack.shutdown.cancel();
    t.expect("421 4.3.2").await;
    t.expect_closed().await;
}

// --- tenant policy: suspension, quotas, sandbox, suppression ---------------------

impl Stack {
    async fn set(&self, settings: mailroom_store::TenantSettings) {
        self.store
            .update_tenant(&self.tenant, settings)
            .await
            .expect("update tenant")
            .expect("tenant exists");
        self.shared.policy.reload().await.expect("reload");
    }
}

#[tokio::test]
async fn suspended_tenant_is_refused_at_mail() {
    let stack = Stack::new().await;
    stack
        .set(mailroom_store::TenantSettings {
            status: Some(mailroom_model::TenantStatus::Suspended),
            ..Default::default()
        })
        .await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("550 5.7.1 Sending is disabled for this account (suspended)")
        .await;
    assert_eq!(stack.recipient_rows().await, 0);
}

#[tokio::test]
async fn per_second_quota_answers_451_and_recovers() {
    let stack = Stack::new().await;
    stack
        .set(mailroom_store::TenantSettings {
            messages_per_second: Some(Some(1.0)),
            ..Default::default()
        })
        .await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.submit(
        "sender@acme.test",
        &["one@example.net"],
        &message("sender@acme.test"),
    )
    .await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("451 4.7.1 Sending rate exceeded (per-second quota)")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    t.submit(
        "sender@acme.test",
        &["one@example.net"],
        &message("sender@acme.test"),
    )
    .await;
    assert_eq!(stack.recipient_rows().await, 2);
}

#[tokio::test]
async fn daily_quota_counts_messages() {
    let stack = Stack::new().await;
    stack
        .set(mailroom_store::TenantSettings {
            messages_per_day: Some(Some(2)),
            ..Default::default()
        })
        .await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    for _ in 0..2 {
        t.submit(
            "sender@acme.test",
            &["one@example.net"],
            &message("sender@acme.test"),
        )
        .await;
    }
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("451 4.7.1 Sending rate exceeded (24-hour quota)")
        .await;
}

#[tokio::test]
async fn sandbox_allows_only_verified_recipients() {
    let stack = Stack::new().await;
    stack
        .store
        .set_sandbox_recipients(&stack.tenant, &["friend@example.net".into()])
        .await
        .expect("sandbox list");
    stack
        .set(mailroom_store::TenantSettings {
            sandbox: Some(true),
            ..Default::default()
        })
        .await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>").expect("250").await;
    t.send("RCPT TO:<stranger@example.net>")
        .expect("550 5.7.1 Recipient is not verified for this account (sandbox mode)")
        .await;
    t.send("RCPT TO:<FRIEND@example.net>").expect("250").await;
    t.send("RCPT TO:<colleague@acme.test>").expect("250").await;
}

#[tokio::test]
async fn suppressed_recipient_is_accepted_and_recorded_or_refused_on_request() {
    let stack = Stack::new().await;
    stack
        .store
        .add_suppression(mailroom_store::Suppression {
            tenant_id: stack.tenant.clone(),
            address: "Gone@Example.net".into(),
            reason: "bounce".into(),
            detail: serde_json::json!({}),
            message_id: None,
            created_at: 0,
        })
        .await
        .expect("suppress");
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    let id = t
        .submit(
            "sender@acme.test",
            &["gone@example.net", "here@example.net"],
            &message("sender@acme.test"),
        )
        .await;
    let m = stack.store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RecipientState::Suppressed);
    let kinds: Vec<EventType> = m.recipients[0].events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::Accepted, EventType::Suppressed]);
    assert_eq!(m.recipients[1].state, RecipientState::Queued);

    stack
        .set(mailroom_store::TenantSettings {
            reject_suppressed: Some(true),
            ..Default::default()
        })
        .await;
    t.send("MAIL FROM:<sender@acme.test>").expect("250").await;
    t.send("RCPT TO:<GONE@example.NET>")
        .expect("550 5.1.1 Recipient is on this account's suppression list (bounce)")
        .await;
}

// --- adversarial input (the security suite; see SECURITY.md) ----------------------

/// nmap's smtp-open-relay script: its 16 (MAIL FROM, RCPT TO) tricks, with
/// `acme.test` as the server's domain, 192.0.2.1 as its address and
/// relaytest@nmap.scanme.org as the foreign target.
const RELAY_TRICKS: [(&str, &str); 16] = [
    ("<>", "<relaytest@nmap.scanme.org>"),
    ("<antispam@acme.test>", "<relaytest@nmap.scanme.org>"),
    ("<antispam@[192.0.2.1]>", "<relaytest@nmap.scanme.org>"),
    (
        "<antispam@acme.test>",
        "<relaytest%nmap.scanme.org@acme.test>",
    ),
    (
        "<antispam@acme.test>",
        "<relaytest%nmap.scanme.org@[192.0.2.1]>",
    ),
    ("<antispam@acme.test>", "<\"relaytest@nmap.scanme.org\">"),
    ("<antispam@acme.test>", "<\"relaytest%nmap.scanme.org\">"),
    (
        "<antispam@acme.test>",
        "<relaytest@nmap.scanme.org@[192.0.2.1]>",
    ),
    (
        "<antispam@acme.test>",
        "<\"relaytest@nmap.scanme.org\"@[192.0.2.1]>",
    ),
    (
        "<antispam@acme.test>",
        "<relaytest@nmap.scanme.org@acme.test>",
    ),
    (
        "<antispam@acme.test>",
        "<@[192.0.2.1]:relaytest@nmap.scanme.org>",
    ),
    (
        "<antispam@acme.test>",
        "<@acme.test:relaytest@nmap.scanme.org>",
    ),
    ("<antispam@acme.test>", "<nmap.scanme.org!relaytest>"),
    (
        "<antispam@acme.test>",
        "<nmap.scanme.org!relaytest@acme.test>",
    ),
    (
        "<antispam@acme.test>",
        "<nmap.scanme.org!relaytest@[192.0.2.1]>",
    ),
    ("<antispam@acme.test>", "<relaytest%nmap.scanme.org>"),
];

#[tokio::test]
async fn unauthenticated_client_never_relays_any_of_the_16_tricks() {
    let stack = Stack::new().await;
    // One session per trick: refusals count as errors and would close a shared one.
    for tls in [false, true] {
        for (from, to) in RELAY_TRICKS {
            let mut t = stack.connect(STRANGER).await;
            t.ehlo().await;
            if tls {
                t.send("STARTTLS").starttls().await;
                t.ehlo().await;
            }
            t.send(&format!("MAIL FROM:{from}"))
                .expect("530 5.7.0")
                .await;
            t.send(&format!("RCPT TO:{to}")).expect("530 5.7.0").await;
            t.send("DATA").expect("530 5.7.0").await;
            t.send("RSET").expect("250 2.0.0").await;
        }
    }
    assert_eq!(stack.recipient_rows().await, 0);
}

/// What the relay logic answers an authorized client for each of [`RELAY_TRICKS`]:
/// (reply to MAIL, reply to RCPT). An authorized client may send anywhere (trick 1 is
/// plain submission to a foreign domain, the service's job), but no trick may make an
/// address mean something other than what it says: a null or address-literal sender is
/// refused at MAIL; `%`, `!`, quotes, literals and double `@` are refused at RCPT; a
/// source route through a domain is dropped (README), leaving the plain address.
const RELAY_TRICK_ANSWERS: [(&str, &str); 16] = [
    ("550 5.7.1", "503 5.5.1 Need MAIL"),
    ("250 2.1.0", "250 2.1.5"),
    ("553 5.1.7", "503 5.5.1 Need MAIL"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    // A source route through an address literal is refused like any literal ...
    ("250 2.1.0", "553 5.1.3"),
    // ... and one through a domain is dropped: relaytest@nmap.scanme.org, plainly.
    ("250 2.1.0", "250 2.1.5"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
    ("250 2.1.0", "553 5.1.3"),
];

/// Every one of nmap's 16 tricks, run where refusing it is the relay logic's job: after
/// AUTH (STARTTLS + AUTH PLAIN from an address on no allowlist) and from an allowlisted
/// address. Each trick in its own session (refusals count as errors and would close a
/// shared one); a trick that gets through RCPT must store only the plain address.
#[tokio::test]
async fn authorized_client_cannot_use_relay_tricks() {
    let stack = Stack::new().await;
    let mut stored = 0;
    for authenticated in [true, false] {
        for (i, ((from, to), (mail_answer, rcpt_answer))) in
            RELAY_TRICKS.iter().zip(RELAY_TRICK_ANSWERS).enumerate()
        {
            let mut t = if authenticated {
                let mut t = stack.connect(STRANGER).await;
                t.ehlo().await;
                t.send("STARTTLS").starttls().await;
                t.ehlo().await;
                t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
                    .expect("235 2.7.0")
                    .await;
                t
            } else {
                let mut t = stack.connect(LISTED).await;
                t.ehlo().await;
                t
            };
            let how = if authenticated { "AUTH" } else { "allowlisted" };
            let got = t.send(&format!("MAIL FROM:{from}")).expect("").await;
            assert!(
                got.last().starts_with(mail_answer),
                "trick {i} ({how}) MAIL FROM:{from}: want {mail_answer}, got {:?}\n{}",
                got.lines,
                t.log
            );
            let got = t.send(&format!("RCPT TO:{to}")).expect("").await;
            assert!(
                got.last().starts_with(rcpt_answer),
                "trick {i} ({how}) MAIL FROM:{from} RCPT TO:{to}: want {rcpt_answer}, got {:?}\n{}",
                got.lines,
                t.log
            );
            if !rcpt_answer.starts_with("250") {
                t.send("DATA").expect("503 5.5.1").await;
                continue;
            }
            t.send("DATA").expect("354").await;
            let id = t
                .send_raw(message("antispam@acme.test").as_bytes())
                .send(".")
                .expect("250 2.0.0 Ok: queued as ")
                .await
                .queued_id();
            stored += 1;
            let view = stack
                .store
                .get_message(&id)
                .await
                .expect("get_message")
                .expect("the queued message");
            let rcpts: Vec<&str> = view.recipients.iter().map(|r| r.address.as_str()).collect();
            assert_eq!(
                rcpts,
                ["relaytest@nmap.scanme.org"],
                "trick {i} ({how}) RCPT TO:{to} must mean the plain address"
            );
        }
    }
    // Tricks 1 and 11, once per kind of authorization; nothing else was stored.
    assert_eq!(stored, 4);
    assert_eq!(stack.recipient_rows().await, 4);
}

#[tokio::test]
async fn address_syntax_attacks_are_refused() {
    let stack = Stack::new().await;
    let long_local = format!("{}@acme.test", "a".repeat(65));
    let long_label = format!("a@{}.test", "b".repeat(64));
    let long_domain = format!("a@{}.test", vec!["c".repeat(60); 5].join("."));
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    for from in [
        "<;sleep 66;>",
        "<$(reboot)@acme.test>",
        "<a|b;id@acme.test>",
        &format!("<{long_local}>"),
        &format!("<{long_label}>"),
        &format!("<{long_domain}>"),
    ] {
        t.send(&format!("MAIL FROM:{from}"))
            .expect("553 5.1.7")
            .await;
    }
    // CR, LF and NUL never reach the address parser: the line itself is refused, and
    // a bare LF ends it, so what follows is a separate (here: out of order) command.
    t.send_raw(b"MAIL FROM:<a\0b@acme.test>\r\n")
        .expect("500 5.5.2")
        .await;
    t.send_raw(b"MAIL FROM:<a\rb@acme.test>\r\n")
        .expect("500 5.5.2")
        .await;
    t.send_raw(b"MAIL FROM:<a@acme.test>\nRCPT TO:<b@example.net>\r\n")
        .expect("500 5.5.2")
        .await;
    t.expect("503 5.5.1 Need MAIL").await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("250 2.1.0")
        .await;
    for to in [
        "<;sleep 66;@example.net>",
        &format!("<{}@example.net>", "r".repeat(65)),
        &format!("<r@{}.example>", "x".repeat(64)),
        "<r@exa mple.net>",
    ] {
        // Refused by the lexer (501 5.5.4) or the address rules (553 5.1.3).
        let r = t.send(&format!("RCPT TO:{to}")).expect("5").await;
        let last = r.last();
        assert!(
            last.starts_with("553 5.1.3") || last.starts_with("501 5.5.4"),
            "{to}: {last}"
        );
    }
    t.send_raw(b"RCPT TO:<r@example.net\0>\r\n")
        .expect("500 5.5.2")
        .await;
    t.send("DATA").expect("503 5.5.1 Need RCPT").await;
    assert_eq!(stack.recipient_rows().await, 0);
}

/// Regression for the smtp-proto number truncation (proto/src/command.rs): a
/// 23-digit SIZE or BDAT size was read as 999.
#[tokio::test]
async fn duplicate_and_overflowing_esmtp_parameters_are_refused() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    let huge = "99999999999999999999999";
    for params in [
        format!("SIZE={huge}"),
        "SIZE=10 SIZE=20".into(),
        "BODY=8BITMIME BODY=7BIT".into(),
        "RET=FULL RET=HDRS".into(),
        "ENVID=a ENVID=b".into(),
        format!("ENVID={}", "e".repeat(101)),
        "FOO=BAR".into(),
    ] {
        t.send(&format!("MAIL FROM:<sender@acme.test> {params}"))
            .expect("555 5.5.4")
            .await;
    }
    // A fresh session: ten refusals close one (smtp.max_errors).
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test> SIZE=100")
        .expect("250 2.1.0")
        .await;
    for params in [
        "NOTIFY=SUCCESS NOTIFY=FAILURE",
        "NOTIFY=NEVER,SUCCESS",
        "ORCPT=rfc822;a@example.net ORCPT=rfc822;b@example.net",
    ] {
        t.send(&format!("RCPT TO:<one@example.net> {params}"))
            .expect("555 5.5.4")
            .await;
    }
    t.send("RCPT TO:<one@example.net> NOTIFY=FAILURE")
        .expect("250 2.1.5")
        .await;
    t.send(&format!("BDAT {huge} LAST"))
        .expect("501 5.5.4")
        .await;
    t.send("BDAT 5 LAST LAST").expect("501 5.5.4").await;
    // The session is still in order: a correct chunk is taken.
    let body = message("sender@acme.test");
    t.send(&format!("BDAT {} LAST", body.len()))
        .send_raw(body.as_bytes())
        .expect("250 2.0.0 Ok: queued as ")
        .await;
    assert_eq!(stack.recipient_rows().await, 1);
}

/// A BDAT chunk is counted bytes: an end-of-data marker and commands inside it are
/// body, never commands, and make exactly one message.
#[tokio::test]
async fn bdat_chunk_contents_are_never_commands() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    t.ehlo().await;
    t.send("MAIL FROM:<sender@acme.test>")
        .expect("250 2.1.0")
        .await;
    t.send("RCPT TO:<victim@example.net>")
        .expect("250 2.1.5")
        .await;
    let body = format!(
        "{}\r\n.\r\nMAIL FROM:<sender@acme.test>\r\nRCPT TO:<smuggled@example.net>\r\nDATA\r\nx\r\n.\r\n",
        message("sender@acme.test")
    );
    t.send(&format!("BDAT {} LAST", body.len()))
        .send_raw(body.as_bytes())
        .expect("250 2.0.0 Ok: queued as ")
        .await;
    t.send("NOOP").expect("250 2.0.0").await;
    assert_eq!(stack.recipient_rows().await, 1);
}

#[tokio::test]
async fn talking_before_the_greeting_gains_nothing() {
    let stack = Stack::new().await;
    for (peer, mail_reply) in [(STRANGER, "530 5.7.0"), (LISTED, "250 2.1.0")] {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut client: Box<dyn Io> = Box::new(client);
        // Written before the session task has run at all, so before the greeting.
        client
            .write_all(b"EHLO early.test\r\nMAIL FROM:<sender@acme.test>\r\n")
            .await
            .expect("write");
        let server = tokio::spawn(serve_connection(
            stack.shared.clone(),
            server,
            peer.parse().expect("peer"),
            false,
        ));
        let mut t = Transcript {
            io: Some(client),
            inbuf: Vec::new(),
            pending: Vec::new(),
            log: String::new(),
            server,
        };
        // The greeting comes first; the early commands are then answered in order,
        // like any pipelined batch, with no more rights than otherwise.
        t.expect("220 mx.test ESMTP").await;
        t.expect("250 ").await;
        t.expect(mail_reply).await;
        t.send("QUIT").expect("221 2.0.0").await;
        t.expect_closed().await;
    }
    assert_eq!(stack.recipient_rows().await, 0);
}

#[tokio::test]
async fn auth_abuse_is_refused_and_bounded() {
    let stack = Stack::new().await;
    // Bad base64, an authzid that is not the user, a huge continuation line: each is
    // refused and none is a login; the rest of the huge line is not read as commands.
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.send("AUTH PLAIN !!!not-base64!!!")
        .expect("501 5.5.2")
        .await;
    t.send(&format!(
        "AUTH PLAIN {}",
        b64(&format!("admin\0{USERNAME}\0{PASSWORD}"))
    ))
    .expect("535 5.7.8")
    .await;
    t.send("AUTH PLAIN").expect("334").await;
    t.send(&format!("{} NOOP", "QUFB".repeat(5000)))
        .expect("501 5.5.2")
        .await;
    t.send("NOOP").expect("250 2.0.0").await;
    // Garbage AUTH counts as errors: the session ends at smtp.max_errors (10).
    for _ in 0..7 {
        t.send("AUTH PLAIN !!!").expect("501 5.5.2").await;
    }
    t.expect("421 4.7.0").await;
    t.expect_closed().await;
    // A cancelled exchange, then the right credentials still work (below the limit),
    // and the rest of a huge line was not read as commands.
    let mut t = stack.connect(STRANGER).await;
    t.ehlo().await;
    t.send("STARTTLS").starttls().await;
    t.ehlo().await;
    t.send("AUTH LOGIN").expect("334 VXNlcm5hbWU6").await;
    t.send("*").expect("501 5.7.0").await;
    t.send(&format!("AUTH PLAIN {}", plain(USERNAME, PASSWORD)))
        .expect("235 2.7.0")
        .await;
    t.send("NOOP").expect("250 2.0.0").await;
}

/// Slow-loris: a client that sends a command one byte at a time, each byte within
/// the read timeout, is still cut off once the whole line takes longer than it.
#[tokio::test]
async fn slow_loris_command_is_cut_off_at_the_command_timeout() {
    let stack = Stack::with_config(true, |c| c.command_timeout = Duration::from_millis(400)).await;
    let mut t = stack.connect(LISTED).await;
    let started = tokio::time::Instant::now();
    // Bounded: at most 23 bytes, one every 150 ms (3.5 s), each well within the
    // 400 ms read timeout; stop as soon as the server speaks.
    let mut heard = false;
    for byte in b"EHLO a-slow-client.test" {
        let io = t.io.as_mut().expect("stream");
        // The server may already have hung up: a write may fail.
        let _ = io.write_all(&[*byte]).await;
        let _ = io.flush().await;
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(150), io.read(&mut buf)).await
        {
            t.inbuf.extend_from_slice(&buf[..n]);
            heard = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(heard, "the server still waits for the line after {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "cut off only after {took:?}"
    );
    t.expect("421 4.4.2").await;
    t.expect_closed().await;
}

// --- REQUIRETLS (RFC 8689) --------------------------------------------------------

#[tokio::test]
async fn requiretls_is_offered_and_taken_only_under_tls() {
    let stack = Stack::new().await;
    let mut t = stack.connect(LISTED).await;
    let keywords = t.ehlo().await;
    assert!(!keywords.iter().any(|k| k == "REQUIRETLS"), "{keywords:?}");
    t.send("MAIL FROM:<sender@acme.test> REQUIRETLS")
        .expect("530 5.7.10")
        .await;
    t.send("STARTTLS").starttls().await;
    let keywords = t.ehlo().await;
    assert!(keywords.iter().any(|k| k == "REQUIRETLS"), "{keywords:?}");
    t.send("MAIL FROM:<sender@acme.test> REQUIRETLS")
        .expect("250 2.1.0")
        .await;
    t.send("RCPT TO:<one@example.net>")
        .expect("250 2.1.5")
        .await;
    t.send("DATA").expect("354").await;
    let id = t
        .send_raw(message("sender@acme.test").as_bytes())
        .send(".")
        .expect("250 2.0.0 Ok: queued as ")
        .await
        .queued_id();
    // And one without: the flag is the message's own.
    let plain_id = t
        .submit(
            "sender@acme.test",
            &["two@example.net"],
            &message("sender@acme.test"),
        )
        .await;
    t.send("QUIT").expect("221 2.0.0").await;
    t.expect_closed().await;
    let lease = mailroom_store::Lease::new("test", mailroom_model::now_millis() + 60_000);
    let due = stack
        .store
        .claim_due(&lease, mailroom_model::now_millis() + 1, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    for d in due {
        assert_eq!(d.require_tls, d.message_id == id, "{}", d.message_id);
        assert!(d.message_id == id || d.message_id == plain_id);
    }
}
