//! The client against a scripted server on a loopback port: per-recipient
//! outcomes, the exact bytes of the DATA section, refusals at each stage,
//! dropped connections, slow servers and hostile replies.

mod common;

use std::time::Duration;

use common::{Step::*, config, finish, opening, spawn_script};
use mailroom_smtp_client::{
    ClientError, Connection, Envelope, Phase, Rcpt, Reply, TlsMode, prepare_body,
};

const PIPELINED_EHLO: &str =
    "250-test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const PLAIN_EHLO: &str = "250-test\r\n250 8BITMIME\r\n";

/// A body with every smuggling shape: CRLF.CRLF, LF.LF, CR.CR, leading dots,
/// bare CR and LF, no final line break.
const TRICKY_BODY: &[u8] = b"Subject: t\n\nline1\r\n.\r\nMAIL FROM:<evil@x>\r\n\n.\nRCPT TO:<e@x>\r.\rDATA\r\n..double\n.leading\rbare cr\nlast";

fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

fn script(mut head: Vec<common::Step>, tail: Vec<common::Step>) -> Vec<common::Step> {
    head.extend(tail);
    head
}

#[tokio::test]
async fn pipelined_per_recipient_outcomes_and_exact_data_bytes() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL FROM:<sender@example.org> SIZE="),
            Expect("RCPT TO:<ok1@example.net>\r\n"),
            Expect("RCPT TO:<unknown@example.net>\r\n"),
            Expect("RCPT TO:<later@example.net>\r\n"),
            Expect("RCPT TO:<ok2@example.net>\r\n"),
            Expect("DATA\r\n"),
            Send(
                "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <unknown@example.net>: no such user\r\n451 4.2.0 greylisted\r\n250 2.1.5 ok\r\n354 go\r\n",
            ),
            ReadData,
            Send("250 2.0.0 queued as X1\r\n"),
            Expect("QUIT"),
            Send("221 bye\r\n"),
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let cfg = config(TlsMode::Opportunistic);
    let mut conn = Connection::open(addr, "localhost", &cfg)
        .await
        .expect("open");
    assert_eq!(conn.tls_version(), None);
    assert_eq!(conn.peer(), addr);
    let rcpts = [
        Rcpt::new("ok1@example.net"),
        Rcpt::new("unknown@example.net"),
        Rcpt::new("later@example.net"),
        Rcpt::new("ok2@example.net"),
    ];
    let env = Envelope::new("sender@example.org", &rcpts, TRICKY_BODY);
    let out = conn.send(&env).await.expect("send");
    assert_eq!(codes(&out), [250, 550, 451, 250]);
    assert_eq!(out[0].to_string(), "250 2.0.0 queued as X1");
    assert_eq!(out[1].enhanced, Some((5, 1, 1)));
    assert_eq!(
        out[1].to_string(),
        "550 5.1.1 <unknown@example.net>: no such user"
    );
    assert_eq!(out[2].to_string(), "451 4.2.0 greylisted");
    assert_eq!(out[3], out[0]);
    assert_eq!(conn.messages_sent(), 1);
    conn.quit().await;

    let t = &finish(server).await[0];
    let mut expected = prepare_body(TRICKY_BODY);
    expected.extend_from_slice(b".\r\n");
    assert_eq!(t.data, vec![expected.clone()]);
    assert_eq!(
        String::from_utf8_lossy(&expected),
        "Subject: t\r\n\r\nline1\r\n..\r\nMAIL FROM:<evil@x>\r\n\r\n..\r\nRCPT TO:<e@x>\r\n..\r\nDATA\r\n...double\r\n..leading\r\nbare cr\r\nlast\r\n.\r\n"
    );
    let size = prepare_body(TRICKY_BODY).len();
    assert_eq!(
        t.lines[1],
        format!("MAIL FROM:<sender@example.org> SIZE={size}\r\n")
    );
}

#[tokio::test]
async fn stepwise_without_pipelining() {
    let steps = script(
        opening(PLAIN_EHLO),
        vec![
            Expect("MAIL FROM:<s@example.org>\r\n"),
            Send("250 ok\r\n"),
            Expect("RCPT TO:<a@example.net>"),
            Send("550 5.1.1 unknown\r\n"),
            Expect("RCPT TO:<b@example.net>"),
            Send("250 ok\r\n"),
            Expect("DATA\r\n"),
            Send("354 go\r\n"),
            ReadData,
            Send("250 2.0.0 ok\r\n"),
            // a second transaction on the same connection: no RSET needed
            Expect("MAIL FROM:<s@example.org>"),
            Send("250 ok\r\n"),
            Expect("RCPT TO:<c@example.net>"),
            Send("452 4.5.3 too many recipients\r\n"),
            // nothing accepted: no DATA; the next send begins with RSET
            Expect("RSET\r\n"),
            Send("250 ok\r\n"),
            Expect("MAIL FROM:<s@example.org>"),
            Send("250 ok\r\n"),
            Expect("RCPT TO:<c@example.net>"),
            Send("250 ok\r\n"),
            Expect("DATA\r\n"),
            Send("354 go\r\n"),
            ReadData,
            Send("250 ok\r\n"),
            Expect("QUIT"),
            Send("221 bye\r\n"),
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .expect("open");
    let ab = [Rcpt::new("a@example.net"), Rcpt::new("b@example.net")];
    let out = conn
        .send(&Envelope::new("s@example.org", &ab, b"hi\n"))
        .await
        .expect("send 1");
    assert_eq!(codes(&out), [550, 250]);
    let c = [Rcpt::new("c@example.net")];
    let out = conn
        .send(&Envelope::new("s@example.org", &c, b"hi\n"))
        .await
        .expect("send 2");
    assert_eq!(out[0].to_string(), "452 4.5.3 too many recipients");
    let out = conn
        .send(&Envelope::new("s@example.org", &c, b"hi\n"))
        .await
        .expect("send 3");
    assert_eq!(codes(&out), [250]);
    assert_eq!(conn.messages_sent(), 2);
    conn.quit().await;
    let t = &finish(server).await[0];
    assert_eq!(
        t.data,
        vec![b"hi\r\n.\r\n".to_vec(), b"hi\r\n.\r\n".to_vec()]
    );
}

#[tokio::test]
async fn pipelined_all_refused_then_rset_and_data_refused_reaches_accepted() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n550 5.1.1 a\r\n550 5.1.1 b\r\n554 5.5.1 no valid recipients\r\n"),
            Expect("RSET\r\n"),
            Send("250 ok\r\n"),
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n550 5.1.1 b\r\n451 4.3.0 DATA not now\r\n"),
            Expect("RSET\r\n"),
            Send("250 ok\r\n"),
            Expect("QUIT"),
            Send("221 bye\r\n"),
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@x.test"), Rcpt::new("b@x.test")];
    let env = Envelope::new("s@x.test", &rcpts, b"body");
    let out = conn.send(&env).await.expect("send 1");
    assert_eq!(
        out.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["550 5.1.1 a", "550 5.1.1 b"]
    );
    let out = conn.send(&env).await.expect("send 2");
    assert_eq!(
        out.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["451 4.3.0 DATA not now", "550 5.1.1 b"]
    );
    assert_eq!(conn.messages_sent(), 0);
    conn.reset().await.expect("rset");
    conn.quit().await;
    let t = &finish(server).await[0];
    assert!(t.data.is_empty());
}

#[tokio::test]
async fn pipelined_354_without_valid_recipients_gets_an_empty_message() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n550 5.1.1 nobody\r\n354 go anyway\r\n"),
            ReadData,
            Send("554 5.5.1 no recipients\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@x.test")];
    let out = conn
        .send(&Envelope::new("s@x.test", &rcpts, b"secret body"))
        .await
        .expect("send");
    assert_eq!(out[0].to_string(), "550 5.1.1 nobody");
    let t = &finish(server).await[0];
    assert_eq!(t.data, vec![b".\r\n".to_vec()], "the body must not be sent");
}

#[tokio::test]
async fn mail_refused_is_an_error_and_the_connection_stays_usable() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("553 5.7.1 sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"),
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Send("250 ok\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@x.test")];
    let env = Envelope::new("s@x.test", &rcpts, b"x");
    let err = conn.send(&env).await.expect_err("MAIL refused");
    assert!(
        matches!(err, ClientError::Mail(ref r) if r.code == 553),
        "{err:?}"
    );
    assert_eq!(
        err.reply().map(ToString::to_string).as_deref(),
        Some("553 5.7.1 sender rejected")
    );
    assert!(conn.is_usable());
    let out = conn.send(&env).await.expect("second send");
    assert_eq!(codes(&out), [250]);
    finish(server).await;
}

#[tokio::test]
async fn greeting_421_is_refused() {
    let (addr, server) =
        spawn_script(vec![vec![Send("421 4.3.2 too busy, try later\r\n"), Close]]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .err()
        .expect("must fail");
    assert!(
        matches!(err, ClientError::Greeting(ref r) if r.code == 421),
        "{err:?}"
    );
    assert_eq!(err.reply().map(|r| r.enhanced), Some(Some((4, 3, 2))));
    finish(server).await;
}

#[tokio::test]
async fn ehlo_refused_falls_back_to_helo() {
    let steps = vec![
        Send("220-old server\r\n220 ready\r\n"),
        Expect("EHLO client.test"),
        Send("502 command not implemented\r\n"),
        Expect("HELO client.test\r\n"),
        Send("250 hi\r\n"),
        // no extensions: stepwise, no parameters
        Expect("MAIL FROM:<s@x.test>\r\n"),
        Send("250 ok\r\n"),
        Expect("RCPT TO:<a@x.test>\r\n"),
        Send("250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        ReadData,
        Send("250 ok\r\n"),
        Close,
    ];
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .expect("open");
    assert!(!conn.extensions().pipelining);
    let rcpts = [Rcpt::new("a@x.test")];
    let env = Envelope {
        eight_bit: true,
        dsn_ret: Some("FULL"),
        ..Envelope::new("s@x.test", &rcpts, b"x")
    };
    assert_eq!(codes(&conn.send(&env).await.expect("send")), [250]);
    finish(server).await;
}

#[tokio::test]
async fn ehlo_and_helo_refused() {
    let steps = vec![
        Send("220 hi\r\n"),
        Expect("EHLO"),
        Send("500 no\r\n"),
        Expect("HELO"),
        Send("550 5.7.1 go away\r\n"),
        Close,
    ];
    let (addr, server) = spawn_script(vec![steps]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .err()
        .expect("fail");
    assert!(
        matches!(err, ClientError::Ehlo(ref r) if r.code == 550),
        "{err:?}"
    );
    finish(server).await;
}

#[tokio::test]
async fn a_421_mid_transaction_applies_to_every_pending_recipient() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("RCPT"),
            Expect("RCPT"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n550 5.1.1 gone\r\n421 4.4.2 shutting down\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [
        Rcpt::new("a@x"),
        Rcpt::new("b@x"),
        Rcpt::new("c@x"),
        Rcpt::new("d@x"),
    ];
    let out = conn
        .send(&Envelope::new("s@x", &rcpts, b"x"))
        .await
        .expect("outcomes");
    assert_eq!(codes(&out), [421, 550, 421, 421]);
    assert!(!conn.is_usable());
    let again = conn.send(&Envelope::new("s@x", &rcpts, b"x")).await;
    assert!(matches!(again, Err(ClientError::Protocol(_))), "{again:?}");
    finish(server).await;
}

#[tokio::test]
async fn connection_dropped_mid_data_is_an_error() {
    // The server reads part of the body, then hangs up.
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadBytes(100),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    // Under the SIZE 1000000 the server announces (a larger one is never offered).
    let body = "0123456789abcdef\r\n".repeat(50_000);
    let rcpts = [Rcpt::new("a@x")];
    let err = conn
        .send(&Envelope::new("s@x", &rcpts, body.as_bytes()))
        .await
        .expect_err("dropped");
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
    assert!(!conn.is_usable());
    finish(server).await;

    // The server reads the whole body, then hangs up without a reply.
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let err = conn
        .send(&Envelope::new("s@x", &rcpts, b"small"))
        .await
        .expect_err("dropped");
    assert!(
        matches!(err, ClientError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{err:?}"
    );
    finish(server).await;
}

#[tokio::test]
async fn slow_greeting_times_out() {
    let (addr, server) = spawn_script(vec![vec![Sleep(Duration::from_secs(3)), Close]]).await;
    let mut cfg = config(TlsMode::None);
    cfg.timeouts.greeting = Duration::from_millis(150);
    let started = std::time::Instant::now();
    let err = Connection::open(addr, "localhost", &cfg)
        .await
        .err()
        .expect("timeout");
    assert!(
        matches!(err, ClientError::Timeout(Phase::Greeting)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    finish(server).await;
}

#[tokio::test]
async fn slow_final_reply_times_out() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Sleep(Duration::from_secs(3)),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut cfg = config(TlsMode::None);
    cfg.timeouts.data_end = Duration::from_millis(150);
    let mut conn = Connection::open(addr, "localhost", &cfg)
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@x")];
    let err = conn
        .send(&Envelope::new("s@x", &rcpts, b"x"))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, ClientError::Timeout(Phase::DataEnd)),
        "{err:?}"
    );
    assert!(!conn.is_usable());
    finish(server).await;
}

#[tokio::test]
async fn slow_command_reply_times_out() {
    let steps = vec![
        Send("220 hi\r\n"),
        Expect("EHLO"),
        Sleep(Duration::from_secs(3)),
        Close,
    ];
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut cfg = config(TlsMode::None);
    cfg.timeouts.command = Duration::from_millis(150);
    let err = Connection::open(addr, "localhost", &cfg)
        .await
        .err()
        .expect("timeout");
    assert!(
        matches!(err, ClientError::Timeout(Phase::Command)),
        "{err:?}"
    );
    finish(server).await;
}

#[tokio::test]
async fn endless_reply_line_is_cut_off() {
    // 1 MiB without a line break: the client must give up after 4 KiB.
    let line: &'static str = Box::leak(format!("220 {}", "a".repeat(1 << 20)).into_boxed_str());
    let (addr, _server) = spawn_script(vec![vec![Send(line), Sleep(Duration::from_secs(2))]]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .err()
        .expect("fail");
    assert!(
        matches!(err, ClientError::Protocol(ref m) if m.contains("longer than")),
        "{err:?}"
    );
}

#[tokio::test]
async fn endless_multiline_reply_is_cut_off() {
    let lines: &'static str = Box::leak("220-spam\r\n".repeat(10_000).into_boxed_str());
    let (addr, _server) =
        spawn_script(vec![vec![Send(lines), Sleep(Duration::from_secs(2))]]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .err()
        .expect("fail");
    assert!(
        matches!(err, ClientError::Protocol(ref m) if m.contains("lines")),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_reply_is_a_protocol_error() {
    let (addr, _server) = spawn_script(vec![vec![
        Send("HTTP/1.1 400 Bad Request\r\n"),
        Sleep(Duration::from_secs(1)),
    ]])
    .await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .err()
        .expect("fail");
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn required_tls_fails_when_starttls_is_not_offered() {
    let steps = script(opening(PIPELINED_EHLO), vec![ReadToEnd]);
    let (addr, server) = spawn_script(vec![steps.clone(), steps]).await;
    for mode in [TlsMode::Required, TlsMode::Verify] {
        let err = Connection::open(addr, "localhost", &config(mode))
            .await
            .err()
            .expect("fail");
        assert!(
            matches!(err, ClientError::TlsUnavailable),
            "{mode:?}: {err:?}"
        );
    }
    let transcripts = finish(server).await;
    for t in transcripts {
        assert!(
            !t.received_text().contains("MAIL"),
            "nothing may be sent in plain text"
        );
    }
}

#[tokio::test]
async fn required_tls_fails_when_starttls_is_refused() {
    let steps = script(
        opening("250-test\r\n250 STARTTLS\r\n"),
        vec![
            Expect("STARTTLS"),
            Send("454 4.7.0 TLS not available\r\n"),
            ReadToEnd,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::Required))
        .await
        .err()
        .expect("fail");
    assert!(
        matches!(err, ClientError::Tls(ref m) if m.contains("454")),
        "{err:?}"
    );
    finish(server).await;
}

#[tokio::test]
async fn opportunistic_stays_plain_when_starttls_is_refused() {
    let steps = script(
        opening("250-test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
        vec![
            Expect("STARTTLS"),
            Send("454 4.7.0 TLS not available\r\n"),
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Send("250 ok\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .expect("open");
    assert_eq!(conn.tls_version(), None);
    let rcpts = [Rcpt::new("a@x")];
    assert_eq!(
        codes(
            &conn
                .send(&Envelope::new("s@x", &rcpts, b"x"))
                .await
                .unwrap()
        ),
        [250]
    );
    finish(server).await;
}

#[tokio::test]
async fn opportunistic_reconnects_in_plain_text_after_a_failed_handshake() {
    let ehlo = "250-test\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
    let first = script(
        opening(ehlo),
        vec![
            Expect("STARTTLS"),
            Send("220 go ahead\r\n"),
            Send("this is not TLS\r\n\r\n"),
            ReadToEnd,
        ],
    );
    let second = script(
        opening(ehlo),
        vec![
            // no STARTTLS this time
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Send("250 ok\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![first, second]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .expect("open falls back");
    assert_eq!(conn.tls_version(), None);
    let rcpts = [Rcpt::new("a@x")];
    assert_eq!(
        codes(
            &conn
                .send(&Envelope::new("s@x", &rcpts, b"x"))
                .await
                .unwrap()
        ),
        [250]
    );
    assert_eq!(finish(server).await.len(), 2);
}

#[tokio::test]
async fn required_tls_handshake_failure_is_an_error() {
    let steps = script(
        opening("250-test\r\n250 STARTTLS\r\n"),
        vec![
            Expect("STARTTLS"),
            Send("220 go ahead\r\n"),
            Send("this is not TLS\r\n\r\n"),
            ReadToEnd,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::Required))
        .await
        .err()
        .expect("fail");
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    finish(server).await;
}

#[tokio::test]
async fn data_after_the_starttls_reply_is_refused() {
    // A man in the middle appends a plain-text reply behind 220 (CVE-2011-0411 style).
    let steps = script(
        opening("250-test\r\n250 STARTTLS\r\n"),
        vec![
            Expect("STARTTLS"),
            Send("220 go ahead\r\n250 injected\r\n"),
            ReadToEnd,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let err = Connection::open(addr, "localhost", &config(TlsMode::Required))
        .await
        .err()
        .expect("fail");
    assert!(
        matches!(err, ClientError::Protocol(ref m) if m.contains("STARTTLS")),
        "{err:?}"
    );
    finish(server).await;
}

#[tokio::test]
async fn dsn_smtputf8_and_8bitmime_parameters_when_offered() {
    let steps = script(
        opening("250-test\r\n250-PIPELINING\r\n250-DSN\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n"),
        vec![
            Expect(
                "MAIL FROM:<bounce@exämple.org> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=msg+2B1\r\n",
            ),
            Expect(
                "RCPT TO:<ü@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;+C3+BC@example.net\r\n",
            ),
            Expect("RCPT TO:<b@example.net> NOTIFY=NEVER\r\n"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Send("250 ok\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::Opportunistic))
        .await
        .expect("open");
    let rcpts = [
        Rcpt {
            address: "ü@example.net",
            notify: Some("failure,delay"),
            orcpt: Some("ü@example.net"),
        },
        Rcpt {
            address: "b@example.net",
            notify: Some("NEVER"),
            orcpt: None,
        },
    ];
    let env = Envelope {
        smtputf8: true,
        eight_bit: true,
        dsn_ret: Some("HDRS"),
        dsn_envid: Some("msg+1"),
        ..Envelope::new(
            "bounce@exämple.org",
            &rcpts,
            "Subject: héllo\r\n\r\nbody\r\n".as_bytes(),
        )
    };
    assert_eq!(codes(&conn.send(&env).await.expect("send")), [250, 250]);
    let t = &finish(server).await[0];
    assert_eq!(
        t.data,
        vec!["Subject: héllo\r\n\r\nbody\r\n.\r\n".as_bytes().to_vec()]
    );
}

#[tokio::test]
async fn smtputf8_not_offered_sends_nothing() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![Expect("QUIT"), Send("221 bye\r\n")],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("ü@example.net")];
    let env = Envelope {
        smtputf8: true,
        ..Envelope::new("s@x", &rcpts, b"x")
    };
    let err = conn.send(&env).await.expect_err("unsupported");
    assert!(
        matches!(err, ClientError::Unsupported("SMTPUTF8")),
        "{err:?}"
    );
    assert!(conn.is_usable());
    conn.quit().await;
    finish(server).await;
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let steps = script(
        opening("250-test\r\n250 AUTH LOGIN\r\n"),
        vec![
            Expect("AUTH LOGIN\r\n"),
            Send("334 VXNlcm5hbWU6\r\n"),
            Expect("dXNlcg==\r\n"),
            Send("334 UGFzc3dvcmQ6\r\n"),
            Expect("c2VjcmV0\r\n"),
            Send("235 2.7.0 ok\r\n"),
            Expect("QUIT"),
            Send("221 bye\r\n"),
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut cfg = config(TlsMode::None);
    cfg.auth = Some(("user".into(), "secret".into()));
    let conn = Connection::open(addr, "localhost", &cfg)
        .await
        .expect("open");
    conn.quit().await;
    finish(server).await;
}

#[tokio::test]
async fn auth_refused_and_auth_needing_tls() {
    let steps = script(
        opening("250-test\r\n250 AUTH PLAIN LOGIN\r\n"),
        vec![
            Expect("AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n"),
            Send("535 5.7.8 bad credentials\r\n"),
            ReadToEnd,
        ],
    );
    let plain_offered = script(opening("250-test\r\n250 AUTH PLAIN\r\n"), vec![ReadToEnd]);
    let (addr, server) = spawn_script(vec![steps, plain_offered]).await;

    let mut cfg = config(TlsMode::None);
    cfg.auth = Some(("user".into(), "wrong".into()));
    let err = Connection::open(addr, "localhost", &cfg)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, ClientError::Auth(ref r) if r.code == 535),
        "{err:?}"
    );

    // Opportunistic without STARTTLS on offer: credentials stay home.
    cfg.tls = TlsMode::Opportunistic;
    let err = Connection::open(addr, "localhost", &cfg)
        .await
        .err()
        .expect("no tls");
    assert!(matches!(err, ClientError::TlsUnavailable), "{err:?}");
    let t = finish(server).await;
    assert!(!t[1].received_text().contains("AUTH"));
}

#[tokio::test]
async fn invalid_input_is_refused_before_anything_is_sent() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![Expect("QUIT"), Send("221 bye\r\n")],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let bad = [Rcpt::new("a@x>\r\nRCPT TO:<evil@x")];
    let err = conn
        .send(&Envelope::new("s@x", &bad, b"x"))
        .await
        .expect_err("invalid");
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err:?}");
    let err = conn
        .send(&Envelope::new("s@x", &[], b"x"))
        .await
        .expect_err("no recipients");
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err:?}");
    assert!(conn.is_usable());
    conn.quit().await;
    finish(server).await;

    let mut cfg = config(TlsMode::None);
    cfg.helo_name = "bad name\r\nMAIL FROM:<x>".into();
    let err = Connection::open(addr, "localhost", &cfg)
        .await
        .err()
        .expect("invalid helo");
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn connect_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn mail_refused_then_421_is_still_a_mail_error() {
    let steps = script(
        opening(PIPELINED_EHLO),
        vec![
            Expect("MAIL"),
            Expect("RCPT"),
            Expect("DATA"),
            Send("550 5.7.1 no\r\n421 4.7.0 bye\r\n"),
            Close,
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@x")];
    let err = conn
        .send(&Envelope::new("s@x", &rcpts, b"x"))
        .await
        .expect_err("mail refused");
    assert!(
        matches!(err, ClientError::Mail(ref r) if r.code == 550),
        "{err:?}"
    );
    assert!(!conn.is_usable());
    finish(server).await;
}

#[tokio::test]
async fn a_message_over_the_peer_size_limit_is_not_offered() {
    // The server announces SIZE 40; the message is larger: no MAIL, no DATA, and the
    // connection stays usable for the next message.
    let steps = script(
        opening("250-test\r\n250-PIPELINING\r\n250 SIZE 40\r\n"),
        vec![
            Expect("MAIL FROM:<s@x> SIZE=12\r\n"),
            Expect("RCPT TO:<a@example.net>\r\n"),
            Expect("DATA"),
            Send("250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData,
            Send("250 ok\r\n"),
            Expect("QUIT"),
            Send("221 bye\r\n"),
        ],
    );
    let (addr, server) = spawn_script(vec![steps]).await;
    let mut conn = Connection::open(addr, "localhost", &config(TlsMode::None))
        .await
        .expect("open");
    let rcpts = [Rcpt::new("a@example.net")];
    let big = vec![b'x'; 100];
    let err = conn
        .send(&Envelope::new("s@x", &rcpts, &big))
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            ClientError::TooLarge {
                size: 102,
                limit: 40
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("SIZE limit of 40 bytes"), "{err}");
    assert!(conn.is_usable());
    let small = conn
        .send(&Envelope::new("s@x", &rcpts, b"small body"))
        .await
        .expect("a message under the limit goes");
    assert_eq!(codes(&small), [250]);
    conn.quit().await;
    finish(server).await;
}
