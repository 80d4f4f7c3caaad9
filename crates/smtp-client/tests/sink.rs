//! The client against the bench's SMTP sink: plain, without PIPELINING, with
//! refusals, and over STARTTLS (unverified, verified against a test CA, and
//! with AUTH).

mod common;

use common::{config, test_pki};
use mailroom_bench::sink::{SinkConfig, spawn_sink, spawn_sink_with};
use mailroom_smtp_client::{ClientError, Connection, Envelope, Rcpt, TlsMode};

const BODIES: [&[u8]; 3] = [
    b"Subject: one\r\n\r\nhello\r\n",
    b"Subject: two\n\n.\n..\nMAIL FROM:<x@y>\n\r\n.\r\nend",
    b"Subject: three\r\r.leading dot\r",
];

/// What the sink should capture: CRLF line endings, dots as in the input
/// (the sink removes the stuffing we add).
fn normalized(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' if body.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn send_all(conn: &mut Connection) {
    let rcpts = [
        Rcpt::new("a@example.net"),
        Rcpt::new("b@example.net"),
        Rcpt::new("c@example.net"),
    ];
    for body in BODIES {
        let out = conn
            .send(&Envelope::new("s@example.org", &rcpts, body))
            .await
            .expect("send");
        assert_eq!(out.len(), 3);
        assert!(
            out.iter().all(|r| r.to_string() == "250 2.0.0 queued"),
            "{out:?}"
        );
    }
}

#[tokio::test]
async fn plain_pipelined_messages_arrive_intact() {
    let (addr, stats) = spawn_sink().await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .expect("open");
    assert!(conn.extensions().pipelining);
    send_all(&mut conn).await;
    assert_eq!(conn.messages_sent(), 3);
    conn.quit().await;
    assert_eq!(stats.messages(), 3);
    let expected: Vec<Vec<u8>> = BODIES.iter().map(|b| normalized(b)).collect();
    assert_eq!(stats.captured(), expected);
}

#[tokio::test]
async fn without_pipelining() {
    let (addr, stats) = spawn_sink_with(SinkConfig {
        no_pipelining: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    assert!(!conn.extensions().pipelining);
    send_all(&mut conn).await;
    conn.quit().await;
    assert_eq!(stats.messages(), 3);
    assert_eq!(stats.captured()[1], normalized(BODIES[1]));
}

#[tokio::test]
async fn every_second_message_refused() {
    let (addr, stats) = spawn_sink_with(SinkConfig {
        reject_every: 2,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@example.net"), Rcpt::new("b@example.net")];
    let mut seen = Vec::new();
    for _ in 0..4 {
        let out = conn
            .send(&Envelope::new("s@example.org", &rcpts, b"x\r\n"))
            .await
            .expect("send");
        assert_eq!(out[0], out[1]);
        seen.push(out[0].to_string());
    }
    assert_eq!(
        seen,
        [
            "250 2.0.0 queued",
            "554 5.6.0 rejected by sink",
            "250 2.0.0 queued",
            "554 5.6.0 rejected by sink"
        ]
    );
    assert_eq!(conn.messages_sent(), 2);
    conn.reset().await.expect("rset");
    conn.quit().await;
    assert_eq!(stats.messages(), 2);
}

#[tokio::test]
async fn required_tls_fails_against_a_plain_sink() {
    let (addr, stats) = spawn_sink().await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::Required))
        .await
        .err()
        .expect("fail");
    assert!(matches!(err, ClientError::TlsUnavailable), "{err:?}");
    assert_eq!(stats.messages(), 0);
}

async fn tls_sink(
    auth: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<mailroom_bench::sink::SinkStats>,
    common::TestPki,
) {
    let pki = test_pki();
    let (addr, stats) = spawn_sink_with(SinkConfig {
        tls: Some(pki.acceptor.clone()),
        auth,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    (addr, stats, pki)
}

#[tokio::test]
async fn starttls_opportunistic_and_required() {
    let (addr, stats, _pki) = tls_sink(false).await;
    for mode in [TlsMode::Opportunistic, TlsMode::Required] {
        let mut conn = Connection::open(addr, "localhost", &config(mode))
            .await
            .expect("open");
        assert_eq!(conn.tls_version(), Some("TLSv1.3"), "{mode:?}");
        assert!(
            !conn.extensions().starttls,
            "EHLO after TLS no longer offers STARTTLS"
        );
        send_all(&mut conn).await;
        conn.quit().await;
    }
    assert_eq!(stats.messages(), 6);
    assert_eq!(stats.captured()[4], normalized(BODIES[1]));
}

#[tokio::test]
async fn starttls_none_mode_stays_plain() {
    let (addr, stats, _pki) = tls_sink(false).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    assert_eq!(conn.tls_version(), None);
    assert!(conn.extensions().starttls);
    send_all(&mut conn).await;
    conn.quit().await;
    assert_eq!(stats.messages(), 3);
}

#[tokio::test]
async fn verify_accepts_a_certificate_from_the_extra_root() {
    let (addr, stats, pki) = tls_sink(false).await;
    let mut cfg = config(TlsMode::Verify);
    cfg.extra_root = Some(pki.ca.clone());
    let mut conn = Connection::open(addr, "localhost", &cfg)
        .await
        .expect("verified");
    assert_eq!(conn.tls_version(), Some("TLSv1.3"));
    send_all(&mut conn).await;
    conn.quit().await;
    assert_eq!(stats.messages(), 3);
}

#[tokio::test]
async fn verify_refuses_unknown_issuer_and_wrong_name() {
    let (addr, stats, pki) = tls_sink(false).await;
    // No extra root: the test CA is not among the webpki roots.
    let err = Connection::open(addr, "localhost", &config(TlsMode::Verify))
        .await
        .err()
        .expect("unknown issuer");
    assert!(
        matches!(err, ClientError::Tls(ref m) if m.contains("UnknownIssuer")),
        "{err:?}"
    );

    // Trusted issuer, but the certificate is for "localhost".
    let mut cfg = config(TlsMode::Verify);
    cfg.extra_root = Some(pki.ca.clone());
    let err = Connection::open(addr, "mx.example.net", &cfg)
        .await
        .err()
        .expect("wrong name");
    assert!(
        matches!(err, ClientError::Tls(ref m) if m.contains("not valid for name")),
        "{err:?}"
    );
    assert_eq!(stats.messages(), 0);
}

#[tokio::test]
async fn auth_plain_over_starttls() {
    let (addr, stats, _pki) = tls_sink(true).await;
    let mut cfg = config(TlsMode::Required);
    cfg.auth = Some(("user".into(), "password".into()));
    let mut conn = Connection::open(addr, "localhost", &cfg)
        .await
        .expect("open with auth");
    send_all(&mut conn).await;
    conn.quit().await;
    assert_eq!(stats.messages(), 3);
}

#[tokio::test]
async fn auth_over_plain_text_only_when_tls_is_off() {
    let (addr, _stats) = spawn_sink_with(SinkConfig {
        auth: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let mut cfg = config(TlsMode::Opportunistic);
    cfg.auth = Some(("user".into(), "password".into()));
    let err = Connection::open(addr, "localhost", &cfg)
        .await
        .err()
        .expect("no tls");
    assert!(matches!(err, ClientError::TlsUnavailable), "{err:?}");
    cfg.tls = TlsMode::None;
    let conn = Connection::open(addr, "localhost", &cfg)
        .await
        .expect("explicitly plain");
    conn.quit().await;
}
