//! A scripted SMTP sink on 127.0.0.1:0 for delivery tests ([`spawn`]). Replies to RCPT are chosen by the
//! recipient's local part:
//!   ok…      250
//!   bad…     550 5.1.1 no such user
//!   later…   451 4.2.0 the first time this address is seen, 250 afterwards
//!   full…    452 4.2.2 always (for expiry tests)
//!   block…   554 5.7.1 policy block
//!   close…   421 4.3.2, then the sink closes the connection
//!   rate…    421 4.7.28 (Gmail's unusual-rate text), then closes
//!   susp…    421 4.7.1 service temporarily suspended (a suspend-class text) the first
//!            time this address is seen, then closes; 250 afterwards
//!   ts02…    421 4.7.0 [TS02] (Yahoo's tenant-scoped complaint text), then closes
//! Switches: `greet_421` answers every new connection with 421; `drop_in_data` closes
//! the connection in the middle of the message; `hold_data` keeps the reply to the
//! final dot back while it is set (`holding` counts sessions waiting there), so a test
//! can act while a message is in flight; `drop_in_data` set when a held message is let
//! go closes the connection instead of answering; `data_delay_ms` delays every reply
//! to the final dot by that long (a slow exchanger); `broken_starttls` offers STARTTLS,
//! answers it with 220 and then sends bytes that are not TLS and closes (a failed
//! handshake; `starttls_tries` counts them, `mail_commands` every MAIL FROM seen).
//! Accepted messages are recorded.
//! [`spawn_tarpit`] accepts connections and never says a word.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub body: Vec<u8>,
    /// The client's address (the egress source) and its EHLO name.
    pub peer: std::net::IpAddr,
    pub ehlo: String,
}

#[derive(Default)]
pub struct Sink {
    pub greet_421: AtomicBool,
    pub drop_in_data: AtomicBool,
    pub hold_data: AtomicBool,
    pub holding: AtomicUsize,
    pub data_delay_ms: std::sync::atomic::AtomicU64,
    pub connections: AtomicUsize,
    pub broken_starttls: AtomicBool,
    pub starttls_tries: AtomicUsize,
    pub mail_commands: AtomicUsize,
    seen_later: Mutex<HashSet<String>>,
    pub received: Mutex<Vec<Received>>,
}

impl Sink {
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
    pub fn delivered_to(&self, rcpt: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.rcpts.iter().any(|r| r == rcpt))
            .count()
    }
}

pub async fn spawn() -> (SocketAddr, Arc<Sink>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = Arc::new(Sink::default());
    let s = sink.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let _ = session(stream, &s).await;
            });
        }
    });
    (addr, sink)
}

/// A listener that accepts connections and never answers (no greeting): a stuck
/// exchanger. Accepted sockets are kept open until the test ends; the counter says how
/// many were accepted.
pub async fn spawn_tarpit() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

fn rcpt_reply(sink: &Sink, addr: &str) -> &'static str {
    let local = addr.split('@').next().unwrap_or("");
    if local.starts_with("bad") {
        "550 5.1.1 no such user\r\n"
    } else if local.starts_with("full") {
        "452 4.2.2 mailbox full, try later\r\n"
    } else if local.starts_with("close") {
        "421 4.3.2 closing connection\r\n"
    } else if local.starts_with("rate") {
        "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail\r\n"
    } else if local.starts_with("susp") {
        if sink.seen_later.lock().unwrap().insert(addr.to_string()) {
            "421 4.7.1 Service temporarily suspended, try again in 30 minutes\r\n"
        } else {
            "250 2.1.5 ok\r\n"
        }
    } else if local.starts_with("ts02") {
        "421 4.7.0 [TS02] Messages from 127.0.0.1 temporarily deferred due to complaints\r\n"
    } else if local.starts_with("block") {
        "554 5.7.1 rejected by policy\r\n"
    } else if local.starts_with("later") {
        if sink.seen_later.lock().unwrap().insert(addr.to_string()) {
            "451 4.2.0 greylisted, try later\r\n"
        } else {
            "250 2.1.5 ok\r\n"
        }
    } else {
        "250 2.1.5 ok\r\n"
    }
}

async fn session(stream: tokio::net::TcpStream, sink: &Sink) -> std::io::Result<()> {
    sink.connections.fetch_add(1, Ordering::SeqCst);
    let peer = stream.peer_addr()?.ip();
    let mut ehlo = String::new();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    if sink.greet_421.load(Ordering::SeqCst) {
        w.write_all(b"421 4.3.2 sink busy\r\n").await?;
        return Ok(());
    }
    w.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let cmd = upper.trim_end();
        if cmd.starts_with("EHLO") {
            let starttls = if sink.broken_starttls.load(Ordering::SeqCst) {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            ehlo = line.trim_end()[4..].trim().to_string();
            let reply = format!(
                "250-sink.test\r\n{starttls}250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 SIZE 50000000\r\n"
            );
            w.write_all(reply.as_bytes()).await?;
        } else if cmd == "STARTTLS" {
            sink.starttls_tries.fetch_add(1, Ordering::SeqCst);
            w.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
            // Wait for the client's hello, then answer with bytes that are not a TLS
            // record: the client's handshake fails.
            let mut hello = [0u8; 512];
            let _ = r.read(&mut hello).await?;
            w.write_all(b"this is not a TLS server hello\r\n").await?;
            return Ok(());
        } else if cmd.starts_with("HELO") {
            w.write_all(b"250 sink.test\r\n").await?;
        } else if cmd.starts_with("MAIL FROM:") {
            sink.mail_commands.fetch_add(1, Ordering::SeqCst);
            mail_from = between(&line, '<', '>');
            rcpts.clear();
            w.write_all(b"250 2.1.0 ok\r\n").await?;
        } else if cmd.starts_with("RCPT TO:") {
            let addr = between(&line, '<', '>');
            let reply = rcpt_reply(sink, &addr);
            if reply.starts_with('2') {
                rcpts.push(addr);
            }
            w.write_all(reply.as_bytes()).await?;
            if reply.starts_with("421") {
                return Ok(());
            }
        } else if cmd == "DATA" {
            if rcpts.is_empty() {
                w.write_all(b"554 5.5.1 no valid recipients\r\n").await?;
                continue;
            }
            w.write_all(b"354 go ahead\r\n").await?;
            let mut body = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                if sink.drop_in_data.load(Ordering::SeqCst) && body.len() > 10 {
                    return Ok(());
                }
                let l = if l.starts_with(b"..") {
                    l[1..].to_vec()
                } else {
                    l
                };
                body.extend_from_slice(&l);
            }
            let delay = sink.data_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            if sink.hold_data.load(Ordering::SeqCst) {
                sink.holding.fetch_add(1, Ordering::SeqCst);
                while sink.hold_data.load(Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                sink.holding.fetch_sub(1, Ordering::SeqCst);
                // Dropping now loses a message whose data was complete: the client
                // never hears whether it was accepted.
                if sink.drop_in_data.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            sink.received.lock().unwrap().push(Received {
                mail_from: mail_from.clone(),
                rcpts: rcpts.clone(),
                body,
                peer,
                ehlo: ehlo.clone(),
            });
            w.write_all(b"250 2.0.0 queued at sink\r\n").await?;
        } else if cmd == "RSET" || cmd == "NOOP" {
            w.write_all(b"250 2.0.0 ok\r\n").await?;
        } else if cmd == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest).await;
            return Ok(());
        } else {
            w.write_all(b"502 5.5.1 unrecognized\r\n").await?;
        }
    }
}

fn between(line: &str, a: char, b: char) -> String {
    let start = line.find(a).map(|i| i + 1).unwrap_or(0);
    let end = line[start..]
        .find(b)
        .map(|i| start + i)
        .unwrap_or(line.len());
    line[start..end].to_string()
}
