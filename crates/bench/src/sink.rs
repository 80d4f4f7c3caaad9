//! A minimal SMTP sink on a loopback port: it answers EHLO (with PIPELINING,
//! optionally STARTTLS and AUTH PLAIN), MAIL, RCPT, DATA, RSET, NOOP and QUIT
//! with success (or, if configured, refuses every Nth message), unstuffs and
//! counts what it receives, and keeps a bounded copy of the first messages for
//! inspection. It stores nothing durably and checks no policy: it exists to
//! measure the bench (and, later, delivery) against.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::session::Stream;

/// Longest command or data line the sink reads before dropping the connection.
const MAX_LINE: u64 = 1024 * 1024;
/// Messages whose bytes are kept for inspection; later ones are only counted.
const MAX_CAPTURED_MESSAGES: usize = 10_000;
/// Bytes of message content kept for inspection, across all captured messages.
const MAX_CAPTURED_BYTES: usize = 64 * 1024 * 1024;

/// What a sink has received so far. Counters only grow.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Connections accepted.
    pub sessions: AtomicU64,
    /// Messages completed with `.` and answered 250.
    pub messages: AtomicU64,
    /// Content bytes of those messages, after dot-unstuffing, without the final `.`.
    pub bytes: AtomicU64,
    /// Accepted RCPT commands that ended up in a completed message.
    pub recipients: AtomicU64,
    /// Messages received in full but answered 554 (see [`SinkConfig::reject_every`]).
    pub rejected: AtomicU64,
    /// Messages received in full, accepted or not (drives `reject_every`).
    seen: AtomicU64,
    captured: Mutex<Captured>,
}

#[derive(Debug, Default)]
struct Captured {
    messages: Vec<Vec<u8>>,
    bytes: usize,
}

impl SinkStats {
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Copies of the first messages received (unstuffed), in arrival order,
    /// bounded by count and total size.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .messages
            .clone()
    }

    /// Counts one more finished message and says whether it is an Nth to refuse.
    fn refuse_next(&self, every: u64) -> bool {
        let received = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let refuse = every > 0 && received.is_multiple_of(every);
        if refuse {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        refuse
    }

    fn record(&self, message: Vec<u8>, recipients: u64) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(message.len() as u64, Ordering::Relaxed);
        self.recipients.fetch_add(recipients, Ordering::Relaxed);
        let mut captured = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
        if captured.messages.len() < MAX_CAPTURED_MESSAGES
            && captured.bytes + message.len() <= MAX_CAPTURED_BYTES
        {
            captured.bytes += message.len();
            captured.messages.push(message);
        }
    }
}

/// Optional behaviour of a sink; the default is plain text without AUTH.
#[derive(Clone, Default)]
pub struct SinkConfig {
    /// Offer STARTTLS with this acceptor (or start in TLS with `implicit_tls`).
    pub tls: Option<TlsAcceptor>,
    /// Run TLS from the first byte instead of offering STARTTLS.
    pub implicit_tls: bool,
    /// Advertise AUTH PLAIN and accept any credentials.
    pub auth: bool,
    /// Answer every Nth message's end of data with `554` instead of `250` (0: never).
    pub reject_every: u64,
    /// Leave PIPELINING out of the EHLO reply (clients must then wait per command).
    pub no_pipelining: bool,
}

/// Starts a plain-text sink on `127.0.0.1:0` that lives until the runtime stops.
///
/// # Panics
/// If no loopback port can be bound; use [`spawn_sink_with`] to get the error.
pub async fn spawn_sink() -> (SocketAddr, Arc<SinkStats>) {
    match spawn_sink_with(SinkConfig::default()).await {
        Ok(sink) => sink,
        Err(e) => panic!("bind 127.0.0.1:0 for the SMTP sink: {e}"),
    }
}

/// Starts a sink with `config` on `127.0.0.1:0` that lives until the runtime stops.
pub async fn spawn_sink_with(config: SinkConfig) -> io::Result<(SocketAddr, Arc<SinkStats>)> {
    spawn_sink_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
}

/// Starts a sink with `config` on `addr` that lives until the runtime stops.
pub async fn spawn_sink_on(
    addr: SocketAddr,
    config: SinkConfig,
) -> io::Result<(SocketAddr, Arc<SinkStats>)> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(SinkStats::default());
    let shared = stats.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _peer)) => {
                    tokio::spawn(serve(tcp, config.clone(), shared.clone()));
                }
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    Ok((addr, stats))
}

/// One session; any I/O error or protocol violation just ends it.
async fn serve(tcp: TcpStream, config: SinkConfig, stats: Arc<SinkStats>) -> io::Result<()> {
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    tcp.set_nodelay(true)?;
    let mut secure = config.implicit_tls;
    let stream: Box<dyn Stream> = match (&config.tls, secure) {
        (Some(acceptor), true) => Box::new(acceptor.accept(tcp).await?),
        _ => Box::new(tcp),
    };
    let mut io = BufReader::new(stream);
    let mut out: Vec<u8> = b"220 sink ESMTP ready\r\n".to_vec();
    let mut line = Vec::new();
    let (mut mail, mut rcpts) = (false, 0u64);
    loop {
        if next_line(&mut io, &mut out, &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_slice() {
            b"EHLO" => {
                out.extend_from_slice(b"250-sink\r\n250-8BITMIME\r\n");
                if !config.no_pipelining {
                    out.extend_from_slice(b"250-PIPELINING\r\n");
                }
                if config.tls.is_some() && !secure {
                    out.extend_from_slice(b"250-STARTTLS\r\n");
                }
                if config.auth {
                    out.extend_from_slice(b"250-AUTH PLAIN\r\n");
                }
                out.extend_from_slice(b"250 SMTPUTF8\r\n");
                (mail, rcpts) = (false, 0);
            }
            b"HELO" | b"NOOP" => out.extend_from_slice(b"250 ok\r\n"),
            b"RSET" => {
                (mail, rcpts) = (false, 0);
                out.extend_from_slice(b"250 ok\r\n");
            }
            b"AUTH" if config.auth => out.extend_from_slice(b"235 2.7.0 ok\r\n"),
            b"MAIL" => {
                (mail, rcpts) = (true, 0);
                out.extend_from_slice(b"250 2.1.0 ok\r\n");
            }
            b"RCPT" if mail => {
                rcpts += 1;
                out.extend_from_slice(b"250 2.1.5 ok\r\n");
            }
            b"RCPT" => out.extend_from_slice(b"503 5.5.1 MAIL first\r\n"),
            b"DATA" if rcpts == 0 => out.extend_from_slice(b"503 5.5.1 RCPT first\r\n"),
            b"DATA" => {
                out.extend_from_slice(b"354 go ahead\r\n");
                let message = receive_data(&mut io, &mut out, &mut line).await?;
                if stats.refuse_next(config.reject_every) {
                    out.extend_from_slice(b"554 5.6.0 rejected by sink\r\n");
                } else {
                    stats.record(message, rcpts);
                    out.extend_from_slice(b"250 2.0.0 queued\r\n");
                }
                (mail, rcpts) = (false, 0);
            }
            b"STARTTLS" if !secure => {
                let Some(acceptor) = &config.tls else {
                    out.extend_from_slice(b"502 5.5.1 no TLS here\r\n");
                    continue;
                };
                out.extend_from_slice(b"220 2.0.0 go ahead\r\n");
                if !io.buffer().is_empty() {
                    return Ok(()); // pipelined plain text after STARTTLS: refuse to carry it over
                }
                io.get_mut().write_all(&out).await?;
                out.clear();
                io = BufReader::new(Box::new(acceptor.accept(io.into_inner()).await?));
                (secure, mail, rcpts) = (true, false, 0);
            }
            b"QUIT" => {
                out.extend_from_slice(b"221 2.0.0 bye\r\n");
                io.get_mut().write_all(&out).await?;
                return io.get_mut().shutdown().await;
            }
            _ => out.extend_from_slice(b"502 5.5.2 not implemented\r\n"),
        }
    }
}

/// Reads DATA lines up to the lone `.`, removing one leading dot from each line.
async fn receive_data(
    io: &mut BufReader<Box<dyn Stream>>,
    out: &mut Vec<u8>,
    line: &mut Vec<u8>,
) -> io::Result<Vec<u8>> {
    let mut message = Vec::new();
    loop {
        if next_line(io, out, line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line.as_slice() == b".\r\n" {
            return Ok(message);
        }
        let content = line.strip_prefix(b".").unwrap_or(line.as_slice());
        message.extend_from_slice(content);
    }
}

/// Flushes pending replies once the client has nothing more pipelined, then
/// reads one line (bounded). Returns 0 at end of stream.
async fn next_line(
    io: &mut BufReader<Box<dyn Stream>>,
    out: &mut Vec<u8>,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    if io.buffer().is_empty() && !out.is_empty() {
        io.get_mut().write_all(out).await?;
        out.clear();
    }
    line.clear();
    let n = (&mut *io).take(MAX_LINE).read_until(b'\n', line).await?;
    if n > 0 && !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or cut",
        ));
    }
    Ok(n)
}
