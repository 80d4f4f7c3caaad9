//! One SMTP session: state, the command loop and dispatch. Each stage lives in its
//! own file (`hello`, `starttls`, `auth`, `mail`, `rcpt`, `data`); this file only reads
//! lines, routes commands and handles the end of the connection.

mod auth;
mod conn;
mod data;
mod hello;
mod mail;
mod rcpt;
mod starttls;

pub use conn::{Conn, Line, ReadStop};

use crate::Shared;
use mailroom_ingest::Recipient;
use mailroom_model::Address;
use mailroom_policy::{AllowlistVerdict, TenantContext};
use mailroom_proto::{Command, MailParams, reply};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// What the TLS layer negotiated, for trace headers and events.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// The mail transaction between MAIL and the end of data.
#[derive(Debug)]
pub(crate) struct Transaction {
    pub mail_from: Address,
    pub params: MailParams,
    pub recipients: Vec<Recipient>,
    /// BDAT chunks received so far, when the client uses CHUNKING.
    pub bdat: Option<mailroom_proto::DataReceiver>,
}

pub struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) helo: Option<String>,
    pub(crate) tenant: Option<TenantContext>,
    pub(crate) txn: Option<Transaction>,
    errors: u32,
    pub(crate) auth_failures: u32,
    /// Whether this listener can upgrade with STARTTLS.
    pub(crate) starttls_available: bool,
}

/// How a stage wants the session to go on.
pub(crate) enum Flow {
    Continue,
    /// Close the connection (the stage has queued its last reply).
    Close,
    /// Reply 220 was queued: the caller switches the stream to TLS.
    StartTls,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        tls: Option<TlsInfo>,
        starttls_available: bool,
    ) -> Self {
        Self {
            shared,
            peer,
            tls,
            helo: None,
            tenant: None,
            txn: None,
            errors: 0,
            auth_failures: 0,
            starttls_available,
        }
    }

    /// After STARTTLS the session starts over (RFC 3207 4.2): forget EHLO, AUTH and
    /// any transaction.
    fn restart_with_tls(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.tenant = None;
        self.txn = None;
    }

    /// Runs commands until the client quits, the connection ends or it must be
    /// upgraded to TLS (then `Ok(true)`).
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> bool {
        loop {
            let line = match conn.read_line(self.shared.config.max_command_line).await {
                Ok(line) => line,
                Err(stop) => {
                    self.stopped(conn, stop).await;
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
                        conn.reply(&self.sequence_first(e));
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
                    // Anything pipelined after STARTTLS is discarded (CVE-2011-0411).
                    conn.discard_buffered();
                    return true;
                }
            }
        }
    }

    /// A malformed MAIL or RCPT from a client that may not send at all is told what
    /// is missing (AUTH, MAIL) before anything about its syntax.
    fn sequence_first(&self, e: mailroom_proto::CommandError) -> mailroom_proto::Reply {
        use mailroom_proto::CommandError as E;
        match e {
            E::InvalidSender | E::InvalidRecipient if self.txn.is_none() => {
                match self.effective_tenant() {
                    Err(r) => r,
                    Ok(_) if matches!(e, E::InvalidRecipient) => reply::need_mail(),
                    Ok(_) => e.reply(),
                }
            }
            E::BadLineEnding | E::Unknown | E::Syntax(_) | E::Parameter(_) => e.reply(),
            E::InvalidSender | E::InvalidRecipient => e.reply(),
        }
    }

    pub(crate) fn error<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> Flow {
        self.errors += 1;
        if self.errors >= self.shared.config.max_errors {
            conn.reply(&reply::too_many_errors());
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn stopped<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        stop: ReadStop,
    ) {
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

    async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cmd: Command,
        conn: &mut Conn<S>,
    ) -> Flow {
        match cmd {
            Command::Ehlo(host) => self.ehlo(host, true, conn),
            Command::Helo(host) => self.ehlo(host, false, conn),
            Command::StartTls => self.starttls(conn),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial, conn).await,
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
}

/// Serves one accepted connection. With `implicit_tls` the TLS handshake comes first;
/// otherwise the client may upgrade with STARTTLS when the server has a certificate.
/// Counts a session in `mailroom_smtp_sessions_active` for as long as it lives.
struct ActiveSession;

impl ActiveSession {
    fn start() -> Self {
        metrics::gauge!("mailroom_smtp_sessions_active").increment(1.0);
        ActiveSession
    }
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        metrics::gauge!("mailroom_smtp_sessions_active").decrement(1.0);
    }
}

pub async fn serve_connection<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    implicit_tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = if implicit_tls {
        "implicit_tls"
    } else {
        "submission"
    };
    metrics::counter!("mailroom_smtp_sessions_total", "listener" => listener).increment(1);
    let _active = ActiveSession::start();
    let deadline = Instant::now() + shared.config.session_timeout;
    let timeout = shared.config.command_timeout;
    // A handshake needs a few round trips, not a command's patience.
    let handshake_timeout = timeout.min(std::time::Duration::from_secs(30));
    let token = shared.shutdown.clone();
    let acceptor = shared.tls.clone();
    if implicit_tls {
        let Some(acceptor) = acceptor else { return };
        let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
        else {
            return;
        };
        let info = tls_info(tls.get_ref().1);
        let mut session = Session::new(shared.clone(), peer, Some(info), false);
        let mut conn = Conn::new(tls, timeout, deadline, token);
        session.greet(&mut conn).await;
        session.run(&mut conn).await;
        return;
    }
    let mut session = Session::new(shared.clone(), peer, None, acceptor.is_some());
    let mut conn = Conn::new(stream, timeout, deadline, token.clone());
    session.greet(&mut conn).await;
    if !session.run(&mut conn).await {
        return;
    }
    let Some(acceptor) = acceptor else { return };
    let stream = conn.into_inner();
    let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await else {
        return;
    };
    session.restart_with_tls(tls_info(tls.get_ref().1));
    let mut conn = Conn::new(tls, timeout, deadline, token);
    session.run(&mut conn).await;
}

pub(crate) fn tls_info(conn: &rustls::ServerConnection) -> TlsInfo {
    TlsInfo {
        version: conn
            .protocol_version()
            .map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default(),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default(),
    }
}

impl Session {
    async fn greet<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) {
        // An allowlisted client needs no AUTH (checked again after STARTTLS).
        conn.reply(&reply::greeting(&self.shared.config.hostname));
        let _ = conn.flush().await;
    }

    /// The tenant for this session: authenticated, or from the IP allowlist.
    pub(crate) fn effective_tenant(&self) -> Result<TenantContext, mailroom_proto::Reply> {
        if let Some(t) = &self.tenant {
            return Ok(t.clone());
        }
        match self
            .shared
            .policy
            .allowlisted(self.peer.ip(), self.tls.is_some())
        {
            AllowlistVerdict::Listed(t) => Ok(t),
            AllowlistVerdict::NotListed => Err(reply::auth_required()),
            AllowlistVerdict::NeedsTls => Err(reply::tls_required_for_relay()),
        }
    }
}
