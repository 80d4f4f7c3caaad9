//! Transcripts of `send_batch`: several transactions (one per VERP envelope
//! sender) pipelined on one connection. The scripted server reads each whole
//! group before it answers anything, so a client that waited for a reply
//! between commands would stall the script and fail the test.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::{Step, Step::*, config, opening, run_script};
use mailroom_smtp_client::{Connection, Envelope, Rcpt, TlsMode};

const EHLO_PIPELINING: &str = "250-test\r\n250 PIPELINING\r\n";

/// Runs `steps` (after the opening) against a client that sends one envelope per
/// (sender, recipient) pair with `send_batch`, then QUIT; returns the result codes
/// (the reply code, or 0 for an error) and the whole transcript.
async fn run(
    ehlo: &'static str,
    steps: Vec<Step>,
    pairs: &[(&str, &str)],
) -> (Vec<Result<u16, String>>, common::Transcript) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let mut script = opening(ehlo);
    script.extend(steps);
    let server = tokio::spawn(async move {
        tokio::time::timeout(common::SERVER_LIMIT, run_script(server, script))
            .await
            .expect("script finished in time")
    });
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 25));
    let mut conn = Connection::handshake(client, peer, "mx.test", &config(TlsMode::Opportunistic))
        .await
        .expect("handshake");
    let rcpts: Vec<[Rcpt<'_>; 1]> = pairs.iter().map(|(_, r)| [Rcpt::new(r)]).collect();
    let envs: Vec<Envelope<'_>> = pairs
        .iter()
        .zip(&rcpts)
        .map(|((from, _), r)| Envelope::new(from, r, b"hi\n"))
        .collect();
    let results = conn.send_batch(&envs).await;
    let codes = results
        .into_iter()
        .map(|r| match r {
            Ok(replies) => {
                assert_eq!(replies.len(), 1);
                Ok(replies[0].code)
            }
            Err(e) => Err(e.to_string()),
        })
        .collect();
    if conn.is_usable() {
        conn.quit().await;
    }
    (codes, server.await.expect("script"))
}

fn group(steps: &mut Vec<Step>) {
    steps.extend([Expect("MAIL FROM:"), Expect("RCPT TO:"), Expect("DATA")]);
}

#[tokio::test]
async fn transactions_are_pipelined_without_rset() {
    let mut steps = Vec::new();
    group(&mut steps);
    steps.push(Send("250 ok\r\n250 ok\r\n354 go\r\n"));
    for _ in 0..2 {
        // The body, and the next group before any reply to the body.
        steps.push(ReadData);
        group(&mut steps);
        steps.push(Send("250 2.0.0 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n"));
    }
    steps.extend([
        ReadData,
        Send("250 2.0.0 queued\r\n"),
        Expect("QUIT"),
        Send("221 bye\r\n"),
    ]);
    let pairs = [
        ("b+1@bounces.x", "a@y"),
        ("b+2@bounces.x", "b@y"),
        ("b+3@bounces.x", "c@y"),
    ];
    let (codes, t) = run(EHLO_PIPELINING, steps, &pairs).await;
    assert_eq!(codes, vec![Ok(250), Ok(250), Ok(250)]);
    let text = t.received_text();
    assert!(!text.contains("RSET"), "{text}");
    for (from, to) in pairs {
        assert!(text.contains(&format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n")));
    }
    assert_eq!(t.data.len(), 3);
}

#[tokio::test]
async fn a_refused_rcpt_and_a_refused_body_stay_with_their_transaction() {
    let mut steps = Vec::new();
    group(&mut steps);
    // 1: accepted.
    steps.push(Send("250 ok\r\n250 ok\r\n354 go\r\n"));
    steps.push(ReadData);
    group(&mut steps);
    // 2: RCPT refused, DATA refused: the transaction stays open.
    steps.push(Send(
        "250 2.0.0 queued\r\n250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n",
    ));
    // RSET only now, pipelined in front of group 3.
    steps.push(Expect("RSET"));
    group(&mut steps);
    steps.push(Send("250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n"));
    // 3: body refused with 451; group 4 rode along, no RSET (the transaction ended).
    steps.push(ReadData);
    group(&mut steps);
    steps.push(Send(
        "451 4.3.0 try later\r\n250 ok\r\n250 ok\r\n354 go\r\n",
    ));
    steps.extend([
        ReadData,
        Send("250 2.0.0 queued\r\n"),
        Expect("QUIT"),
        Send("221 bye\r\n"),
    ]);
    let pairs = [
        ("b+1@r", "ok1@y"),
        ("b+2@r", "unknown@y"),
        ("b+3@r", "later@y"),
        ("b+4@r", "ok4@y"),
    ];
    let (codes, t) = run(EHLO_PIPELINING, steps, &pairs).await;
    assert_eq!(codes, vec![Ok(250), Ok(550), Ok(451), Ok(250)]);
    assert_eq!(t.received_text().matches("RSET").count(), 1);
    assert_eq!(t.data.len(), 3);
}

#[tokio::test]
async fn a_421_leaves_the_rest_unsent() {
    let mut steps = Vec::new();
    group(&mut steps);
    steps.push(Send("250 ok\r\n250 ok\r\n354 go\r\n"));
    steps.push(ReadData);
    group(&mut steps);
    steps.push(Send("250 2.0.0 queued\r\n421 4.3.2 shutting down\r\n"));
    steps.push(Close);
    let pairs = [("b+1@r", "a@y"), ("b+2@r", "b@y"), ("b+3@r", "c@y")];
    let (codes, t) = run(EHLO_PIPELINING, steps, &pairs).await;
    assert_eq!(codes[0], Ok(250));
    for c in &codes[1..] {
        let e = c.as_ref().expect_err("not sent");
        assert!(e.contains("421"), "{e}");
    }
    assert_eq!(t.data.len(), 1);
}

#[tokio::test]
async fn without_pipelining_transactions_go_one_by_one() {
    let mut steps = Vec::new();
    for _ in 0..2 {
        steps.extend([
            Expect("MAIL FROM:"),
            Send("250 ok\r\n"),
            Expect("RCPT TO:"),
            Send("250 ok\r\n"),
            Expect("DATA"),
            Send("354 go\r\n"),
            ReadData,
            Send("250 2.0.0 queued\r\n"),
        ]);
    }
    steps.extend([Expect("QUIT"), Send("221 bye\r\n")]);
    let (codes, t) = run("250 test\r\n", steps, &[("b+1@r", "a@y"), ("b+2@r", "b@y")]).await;
    assert_eq!(codes, vec![Ok(250), Ok(250)]);
    assert!(!t.received_text().contains("RSET"));
}

#[tokio::test]
async fn an_invalid_envelope_is_refused_alone() {
    let mut steps = Vec::new();
    group(&mut steps);
    steps.push(Send("250 ok\r\n250 ok\r\n354 go\r\n"));
    steps.push(ReadData);
    group(&mut steps);
    steps.push(Send("250 2.0.0 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n"));
    steps.extend([
        ReadData,
        Send("250 2.0.0 queued\r\n"),
        Expect("QUIT"),
        Send("221 bye\r\n"),
    ]);
    let pairs = [("b+1@r", "a@y"), ("b+2@r", "bad>@y"), ("b+3@r", "c@y")];
    let (codes, _) = run(EHLO_PIPELINING, steps, &pairs).await;
    assert_eq!(codes[0], Ok(250));
    assert!(codes[1].is_err());
    assert_eq!(codes[2], Ok(250));
}
