//! The one SMTP server loop, for every kind of session. It reads lines, parses
//! commands, counts errors, and answers what means the same on every listener
//! (`hello`: EHLO/HELO, `starttls`, RSET, NOOP, QUIT, VRFY, EXPN, HELP; `data`: how
//! DATA and BDAT bytes are received). What a command means for one kind of session
//! (AUTH, MAIL, RCPT, what happens to a finished message) is asked of its [`Kind`]:
//! `crate::submission` for the submission and implicit-TLS listeners,
//! `crate::intake` for the bounce and report intake listener. `serve` runs a session
//! on a connection, including the restart after STARTTLS.

mod conn;
mod data;
mod hello;
mod starttls;

pub use conn::{Conn, Line, ReadStop};

use crate::Shared;
use mailroom_proto::command::Mechanism;
use mailroom_proto::{
    BodyLimits, Capabilities, Command, CommandError, DataReceiver, MailParams, RcptParams, Reply,
    reply,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// What the TLS layer negotiated, for trace headers and events.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// What every kind of session knows about its client; the loop owns it and lends it
/// to the kind's stages.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    /// Set once the connection is TLS (implicit, or after STARTTLS).
    pub tls: Option<TlsInfo>,
    /// The client's EHLO/HELO name; `None` until it introduced itself (and again
    /// after STARTTLS).
    pub helo: Option<String>,
    /// Protocol errors so far, closed at `smtp.max_errors`.
    errors: u32,
    /// Whether this listener can upgrade with STARTTLS.
    pub starttls_available: bool,
}

impl Core {
    /// Counts one protocol error; at the limit the client is told and the session ends.
    pub fn error<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> Flow {
        self.errors += 1;
        if self.errors >= self.shared.config.max_errors {
            conn.reply(&reply::too_many_errors());
            Flow::Close
        } else {
            Flow::Continue
        }
    }
}

/// How a stage wants the session to go on.
pub(crate) enum Flow {
    Continue,
    /// Close the connection (the stage has queued its last reply).
    Close,
    /// Reply 220 was queued: the caller switches the stream to TLS.
    StartTls,
}

/// What the commands that differ between listeners mean for one kind of session.
/// The loop asks; the kind answers with a reply (or, for AUTH, talks to the client
/// itself). A kind owns its transaction; the loop owns everything else.
pub(crate) trait Kind {
    /// An open mail transaction (between MAIL and the end of data).
    type Txn;

    /// The extensions EHLO lists on this connection.
    fn capabilities(&self, core: &Core) -> Capabilities;
    /// Forgets the transaction (RSET, EHLO, HELO).
    fn reset(&mut self);
    /// Forgets everything negotiated before STARTTLS (RFC 3207 4.2); the loop has
    /// already forgotten EHLO.
    fn restart(&mut self) {
        self.reset();
    }
    /// The reply to a command that did not parse.
    fn command_error(&self, _core: &Core, e: CommandError) -> Reply {
        e.reply()
    }

    /// AUTH: not offered unless a kind says otherwise.
    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        _core: &mut Core,
        _mechanism: Mechanism,
        _initial: Option<String>,
        conn: &mut Conn<S>,
    ) -> Flow {
        conn.reply(&reply::auth_not_offered());
        Flow::Continue
    }
    fn mail(&mut self, core: &Core, params: MailParams) -> Reply;
    async fn rcpt(&mut self, core: &Core, params: RcptParams) -> Reply;

    /// Size and line limits for a message body.
    fn body_limits(&self, core: &Core) -> BodyLimits;
    /// Why DATA or BDAT cannot be taken now (no transaction, no recipient), if so.
    fn data_refusal(&self, core: &Core) -> Option<Reply>;
    /// The BDAT receiver of the open transaction (`None` without a transaction).
    fn chunks(&mut self) -> Option<&mut Option<DataReceiver>>;
    /// Ends the open transaction, handing back its BDAT receiver if it had one.
    fn take_txn(&mut self) -> Option<(Self::Txn, Option<DataReceiver>)>;
    /// A complete body for `txn`: hand it over and say how it went.
    async fn finish(&mut self, core: &Core, txn: Self::Txn, body: Vec<u8>) -> Reply;
}

/// One connection's session: the shared part and the kind's.
pub(crate) struct Session<K> {
    pub core: Core,
    pub kind: K,
}

impl<K: Kind> Session<K> {
    /// A session on a connection that is not TLS yet (`serve` notes a handshake).
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, starttls_available: bool, kind: K) -> Self {
        let core = Core {
            shared,
            peer,
            tls: None,
            helo: None,
            errors: 0,
            starttls_available,
        };
        Self { core, kind }
    }

    /// Runs commands until the client quits, the connection ends or it must be
    /// upgraded to TLS (then `true`).
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> bool {
        loop {
            let max = self.core.shared.config.max_command_line;
            let line = match conn.read_line(max).await {
                Ok(line) => line,
                Err(stop) => {
                    stopped(conn, stop).await;
                    return false;
                }
            };
            let flow = match line {
                Line::TooLong => {
                    conn.reply(&reply::line_too_long());
                    self.core.error(conn)
                }
                Line::Complete(bytes) => match mailroom_proto::parse_command(&bytes) {
                    Ok(cmd) => self.dispatch(cmd, conn).await,
                    Err(e) => {
                        conn.reply(&self.kind.command_error(&self.core, e));
                        self.core.error(conn)
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

    async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cmd: Command,
        conn: &mut Conn<S>,
    ) -> Flow {
        let r = match cmd {
            Command::Ehlo(host) => return self.ehlo(host, true, conn),
            Command::Helo(host) => return self.ehlo(host, false, conn),
            Command::StartTls => return self.starttls(conn),
            Command::Auth { mechanism, initial } => {
                return self
                    .kind
                    .auth(&mut self.core, mechanism, initial, conn)
                    .await;
            }
            Command::Mail(params) => self.kind.mail(&self.core, params),
            Command::Rcpt(params) => self.kind.rcpt(&self.core, params).await,
            Command::Data => return self.data(conn).await,
            Command::Bdat { size, last } => return self.bdat(size, last, conn).await,
            Command::Rset => {
                self.kind.reset();
                reply::reset_ok()
            }
            Command::Noop => reply::noop_ok(),
            Command::Quit => {
                conn.reply(&reply::closing(&self.core.shared.config.hostname));
                return Flow::Close;
            }
            Command::Vrfy => reply::vrfy_no_disclosure(),
            Command::Expn => reply::expn_refused(),
            Command::Help => reply::help(),
        };
        conn.reply(&r);
        Flow::Continue
    }
}

/// The last word when reading stopped: `421` for a timeout, an expired session or
/// shutdown; nothing when the client is gone.
pub(crate) async fn stopped<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, stop: ReadStop) {
    let last = match stop {
        ReadStop::Eof | ReadStop::Io(_) => None,
        ReadStop::Timeout => Some(reply::timeout()),
        ReadStop::SessionExpired => Some(reply::session_too_long()),
        ReadStop::Shutdown => Some(reply::shutting_down()),
    };
    if let Some(r) = last {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.say(&r)).await;
    }
}

/// Runs `session` on one accepted connection: the TLS handshake first with
/// `implicit_tls`, then the greeting and the loop; after STARTTLS the handshake and
/// the loop again with the session started over.
pub(crate) async fn serve<K, S>(mut session: Session<K>, stream: S, implicit_tls: bool)
where
    K: Kind,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = session.core.shared.clone();
    let deadline = Instant::now() + shared.config.session_timeout;
    let timeout = shared.config.command_timeout;
    // A handshake needs a few round trips, not a command's patience.
    let handshake_timeout = timeout.min(Duration::from_secs(30));
    let token = shared.shutdown.clone();
    let acceptor = shared.tls.clone();
    if implicit_tls {
        let Some(acceptor) = acceptor else { return };
        let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
        else {
            return;
        };
        session.core.tls = Some(tls_info(tls.get_ref().1));
        let mut conn = Conn::new(tls, timeout, deadline, token);
        greet(&shared, &mut conn).await;
        session.run(&mut conn).await;
        return;
    }
    let mut conn = Conn::new(stream, timeout, deadline, token.clone());
    greet(&shared, &mut conn).await;
    if !session.run(&mut conn).await {
        return;
    }
    let Some(acceptor) = acceptor else { return };
    let stream = conn.into_inner();
    let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await else {
        return;
    };
    // RFC 3207 4.2: the session starts over.
    session.core.tls = Some(tls_info(tls.get_ref().1));
    session.core.helo = None;
    session.kind.restart();
    let mut conn = Conn::new(tls, timeout, deadline, token);
    session.run(&mut conn).await;
}

async fn greet<S: AsyncRead + AsyncWrite + Unpin>(shared: &Shared, conn: &mut Conn<S>) {
    conn.reply(&reply::greeting(&shared.config.hostname));
    let _ = conn.flush().await;
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
