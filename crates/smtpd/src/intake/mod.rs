//! The bounce intake listener (the MX of the return-path subdomains): a session that
//! needs no AUTH and offers STARTTLS, takes any envelope sender (bounces use the null
//! sender), accepts only recipients that are VERP addresses of stored messages, and
//! hands each finished message to the intake pipeline (`mailroom_intake`), never to
//! submission ingest. It also takes DMARC aggregate and TLS-RPT reports at the
//! reporting addresses of known domains (`dmarc@` / `tls-rpt@` the return-path
//! subdomain), one domain's report per transaction. Stages: `envelope` (MAIL, RCPT) and `data` (DATA, BDAT); this
//! file holds the state, the loop and the connection's TLS handling.

mod data;
mod envelope;

use crate::Shared;
use crate::session::{Conn, Line, ReadStop, TlsInfo, tls_info};
use mailroom_intake::{BounceAddress, Intake, ReportAddress};
use mailroom_proto::{Capabilities, Command, MailParams, reply};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// What intake sessions share besides `Shared`.
#[derive(Clone)]
pub struct IntakeHandle {
    pub pipeline: Arc<Intake>,
    /// Largest accepted report, in bytes (advertised as SIZE).
    pub max_message_size: usize,
    /// Recipients per transaction.
    pub max_recipients: usize,
}

struct Txn {
    params: MailParams,
    recipients: Vec<BounceAddress>,
    /// A DMARC / TLS-RPT reporting address (then `recipients` stays empty: one kind
    /// of report, for one domain, per transaction).
    report: Option<ReportAddress>,
    bdat: Option<mailroom_proto::DataReceiver>,
}

struct IntakeSession {
    shared: Arc<Shared>,
    handle: IntakeHandle,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    helo: Option<String>,
    txn: Option<Txn>,
    errors: u32,
    starttls_available: bool,
}

enum Flow {
    Continue,
    Close,
    StartTls,
}

impl IntakeSession {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> bool {
        loop {
            let line = match conn.read_line(self.shared.config.max_command_line).await {
                Ok(line) => line,
                Err(stop) => {
                    stopped(conn, stop).await;
                    return false;
                }
            };
            let flow = match line {
                Line::TooLong => {
                    conn.reply(&reply::line_too_long());
                    self.error(conn)
                }
                Line::Complete(bytes) => match mailroom_proto::parse_command(&bytes) {
                    Ok(cmd) => self.dispatch(cmd, conn).await,
                    Err(e) => {
                        conn.reply(&e.reply());
                        self.error(conn)
                    }
                },
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    let _ = conn.flush().await;
                    return false;
                }
                Flow::StartTls => {
                    let _ = conn.flush().await;
                    conn.discard_buffered();
                    return true;
                }
            }
        }
    }

    fn error<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> Flow {
        self.errors += 1;
        if self.errors >= self.shared.config.max_errors {
            conn.reply(&reply::too_many_errors());
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cmd: Command,
        conn: &mut Conn<S>,
    ) -> Flow {
        match cmd {
            Command::Ehlo(host) => self.ehlo(host, true, conn),
            Command::Helo(host) => self.ehlo(host, false, conn),
            Command::StartTls => {
                if self.tls.is_some() {
                    conn.reply(&reply::already_tls());
                } else if !self.starttls_available {
                    conn.reply(&reply::tls_unavailable());
                } else {
                    conn.reply(&reply::starttls_ready());
                    return Flow::StartTls;
                }
                Flow::Continue
            }
            Command::Auth { .. } => {
                conn.reply(&reply::auth_not_offered());
                Flow::Continue
            }
            Command::Mail(params) => self.mail(params, conn),
            Command::Rcpt(params) => self.rcpt(params, conn).await,
            Command::Data => self.data(conn).await,
            Command::Bdat { size, last } => self.bdat(size, last, conn).await,
            Command::Rset => {
                self.txn = None;
                conn.reply(&reply::reset_ok());
                Flow::Continue
            }
            Command::Noop => {
                conn.reply(&reply::noop_ok());
                Flow::Continue
            }
            Command::Quit => {
                conn.reply(&reply::closing(&self.shared.config.hostname));
                Flow::Close
            }
            Command::Vrfy => {
                conn.reply(&reply::vrfy_no_disclosure());
                Flow::Continue
            }
            Command::Expn => {
                conn.reply(&reply::expn_refused());
                Flow::Continue
            }
            Command::Help => {
                conn.reply(&reply::help());
                Flow::Continue
            }
        }
    }

    fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        host: String,
        extended: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        self.txn = None;
        let hostname = &self.shared.config.hostname;
        let client: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if extended {
            let caps = Capabilities {
                max_size: self.handle.max_message_size,
                starttls: self.tls.is_none() && self.starttls_available,
                auth: false,
                require_tls: false,
            };
            conn.reply(&caps.reply(hostname, &client));
        } else {
            conn.reply(&mailroom_proto::Reply::plain(
                250,
                format!("{hostname} Hello {client}"),
            ));
        }
        self.helo = Some(client);
        Flow::Continue
    }
}

async fn stopped<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, stop: ReadStop) {
    let last = match stop {
        ReadStop::Eof | ReadStop::Io(_) => None,
        ReadStop::Timeout => Some(reply::timeout()),
        ReadStop::SessionExpired => Some(reply::session_too_long()),
        ReadStop::Shutdown => Some(reply::shutting_down()),
    };
    if let Some(r) = last {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn.say(&r)).await;
    }
}

/// Serves one connection of an intake listener (plain, STARTTLS offered when the
/// server has a certificate). Without an intake pipeline configured the client hears
/// `421` and the connection closes.
pub async fn serve_intake_connection<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    metrics::counter!("mailroom_smtp_sessions_total", "listener" => "intake").increment(1);
    let deadline = Instant::now() + shared.config.session_timeout;
    let timeout = shared.config.command_timeout;
    let handshake_timeout = timeout.min(std::time::Duration::from_secs(30));
    let token = shared.shutdown.clone();
    let mut conn = Conn::new(stream, timeout, deadline, token.clone());
    let Some(handle) = shared.intake.clone() else {
        let _ = conn.say(&reply::shutting_down()).await;
        return;
    };
    let acceptor = shared.tls.clone();
    let mut session = IntakeSession {
        shared: shared.clone(),
        handle,
        peer,
        tls: None,
        helo: None,
        txn: None,
        errors: 0,
        starttls_available: acceptor.is_some(),
    };
    conn.reply(&reply::greeting(&shared.config.hostname));
    if !session.run(&mut conn).await {
        return;
    }
    let Some(acceptor) = acceptor else { return };
    let stream = conn.into_inner();
    let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await else {
        return;
    };
    // RFC 3207 4.2: the session starts over.
    session.tls = Some(tls_info(tls.get_ref().1));
    session.helo = None;
    session.txn = None;
    let mut conn = Conn::new(tls, timeout, deadline, token);
    session.run(&mut conn).await;
}
