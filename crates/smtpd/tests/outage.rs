//! SMTP submission while the database is unreachable: the session goes on from the
//! in-memory policy (greeting, EHLO, the allowlist, MAIL, RCPT), whatever needs the
//! database answers `451 4.3.0` (nothing is acknowledged that is not stored), and
//! the same session is accepted again as soon as the database is back — no restart,
//! no reconnect. The store is a real SQLite store behind a switch (`FlakyStore`).

#[path = "../../api/tests/support/flaky_store.rs"]
mod flaky_store;

use flaky_store::FlakyStore;
use mailroom_model::TenantId;
use mailroom_policy::{Policy, PolicyConfig, secrets};
use mailroom_smtpd::{Shared, SmtpConfig, serve_connection};
use mailroom_store::prelude::*;
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{AllowedIp, DynStore, NewDomain, NewTenant, TenantSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

/// On acme's allowlist: may send without AUTH.
const ACME_PEER: &str = "192.0.2.10:40000";
/// On beta's allowlist; beta refuses suppressed recipients at RCPT (a store look-up).
const BETA_PEER: &str = "198.51.100.20:40000";

struct Stack {
    flaky: Arc<FlakyStore>,
    sqlite: Arc<SqliteStore>,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

async fn tenant(store: &SqliteStore, name: &str, cidr: &str) -> TenantId {
    let id = TenantId::generate();
    store
        .create_tenant(NewTenant {
            id: id.clone(),
            name: name.into(),
            api_key_hash: secrets::hash_api_key(&format!("mrk_{name}")),
        })
        .await
        .unwrap();
    store
        .add_domain(NewDomain {
            tenant_id: id.clone(),
            name: format!("{name}.test"),
            verified: true,
            verification_token: "tok".into(),
            dkim_keys: vec![],
        })
        .await
        .unwrap();
    store
        .set_allowed_ips(
            &id,
            &[AllowedIp {
                tenant_id: id.clone(),
                cidr: cidr.into(),
                require_tls: false,
            }],
        )
        .await
        .unwrap();
    id
}

impl Stack {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(&dir.path().join("m.db")).await.unwrap());
        tenant(&sqlite, "acme", "192.0.2.0/24").await;
        let beta = tenant(&sqlite, "beta", "198.51.100.0/24").await;
        sqlite
            .update_tenant(
                &beta,
                TenantSettings {
                    reject_suppressed: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let flaky = FlakyStore::new(sqlite.clone());
        let store: DynStore = flaky.clone();
        let policy = Policy::load(store.clone(), PolicyConfig::default())
            .await
            .unwrap();
        let ingest = Arc::new(mailroom_ingest::Ingest::new(
            store,
            policy.clone(),
            "mx.test".into(),
        ));
        let config = SmtpConfig {
            hostname: "mx.test".into(),
            ..Default::default()
        };
        let shared = Shared::new(config, policy, ingest, None, CancellationToken::new());
        Self {
            flaky,
            sqlite,
            shared,
            _dir: dir,
        }
    }

    async fn connect(&self, peer: &str) -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve_connection(
            self.shared.clone(),
            server,
            peer.parse::<SocketAddr>().unwrap(),
            false,
        ));
        let (r, w) = tokio::io::split(client);
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        c.expect_reply("220").await;
        c
    }

    async fn stored_recipients(&self) -> i64 {
        self.sqlite
            .count_recipients_by_state()
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}

struct Client {
    r: BufReader<ReadHalf<DuplexStream>>,
    w: WriteHalf<DuplexStream>,
}

impl Client {
    /// Reads one (possibly multi-line) reply; returns its last line.
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .expect("a reply within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    async fn expect_reply(&mut self, start: &str) -> String {
        let r = self.reply().await;
        assert!(r.starts_with(start), "expected {start}, got {r:?}");
        r
    }

    async fn cmd(&mut self, line: &str, start: &str) -> String {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.expect_reply(start).await
    }

    /// One whole transaction; returns the reply to the final dot.
    async fn transaction(&mut self, from: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250").await;
        self.cmd("RCPT TO:<rcpt@example.net>", "250").await;
        self.cmd("DATA", "354").await;
        let body =
            format!("From: <{from}>\r\nTo: <rcpt@example.net>\r\nSubject: s\r\n\r\nbody\r\n.");
        self.w
            .write_all(format!("{body}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn submissions_get_451_4_3_0_while_the_database_is_down_and_resume_by_themselves() {
    let stack = Stack::new().await;
    let mut c = stack.connect(ACME_PEER).await;
    c.cmd("EHLO client.test", "250").await;
    let mut queued = 0;
    assert!(
        c.transaction("app@acme.test")
            .await
            .starts_with("250 2.0.0")
    );
    queued += 1;

    stack.flaky.set_down(true);
    // Everything that needs only memory still works; the commit cannot happen.
    for _ in 0..3 {
        let r = c.transaction("app@acme.test").await;
        assert!(r.starts_with("451 4.3.0"), "{r}");
    }
    // A new session too: greeting, EHLO, the allowlist are all in memory.
    let mut c2 = stack.connect(ACME_PEER).await;
    c2.cmd("EHLO client.test", "250").await;
    let r = c2.transaction("app@acme.test").await;
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert!(stack.flaky.refused() >= 4);
    assert_eq!(
        stack.stored_recipients().await,
        queued,
        "nothing else stored"
    );

    stack.flaky.set_down(false);
    // The same sessions go on: no reconnect, no restart.
    for client in [&mut c, &mut c2] {
        let r = client.transaction("app@acme.test").await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        queued += 1;
    }
    assert_eq!(
        stack.stored_recipients().await,
        queued,
        "exactly the acknowledged messages are stored"
    );
    c.cmd("QUIT", "221").await;
}

#[tokio::test]
async fn a_recipient_check_that_needs_the_database_is_451_4_3_0_at_rcpt() {
    let stack = Stack::new().await;
    let mut c = stack.connect(BETA_PEER).await;
    c.cmd("EHLO client.test", "250").await;
    stack.flaky.set_down(true);
    c.cmd("MAIL FROM:<app@beta.test>", "250").await;
    c.cmd("RCPT TO:<rcpt@example.net>", "451 4.3.0").await;
    stack.flaky.set_down(false);
    c.cmd("RCPT TO:<rcpt@example.net>", "250").await;
    c.cmd("DATA", "354").await;
    c.w.write_all(b"From: <app@beta.test>\r\nSubject: s\r\n\r\nbody\r\n.\r\n")
        .await
        .unwrap();
    c.expect_reply("250 2.0.0").await;
    assert_eq!(stack.stored_recipients().await, 1);
}
