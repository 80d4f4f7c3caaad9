//! Opening a session: TCP connect, greeting, EHLO (HELO fallback), STARTTLS
//! per [`TlsMode`], EHLO again, AUTH. The session is generic over its stream so
//! it runs on an in-memory pipe in tests; [`Connection::open`] is the TCP edge.
//! Sending transactions lives in `send.rs`.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::command;
use crate::config::{ClientConfig, TlsMode};
use crate::ehlo::Extensions;
use crate::error::{ClientError, Phase};
use crate::tls;
use crate::transport::LineIo;
use mailroom_proto::Reply;

/// An open SMTP session, ready for [`send`](Connection::send).
pub struct Connection<S = TcpStream> {
    pub(crate) io: LineIo<S>,
    /// What the server offered in its latest EHLO.
    pub(crate) ext: Extensions,
    pub(crate) peer: SocketAddr,
    pub(crate) timeouts: crate::config::Timeouts,
    /// Messages the server accepted (2xx after the data) on this connection.
    pub(crate) messages_sent: u32,
    /// A transaction was left open (MAIL accepted, no data sent): RSET before
    /// the next one.
    pub(crate) needs_reset: bool,
    /// Why TLS failed on the first connection when this one is the opportunistic
    /// plain-text retry (see [`open`](Connection::open)); `None` otherwise.
    pub(crate) tls_fallback: Option<String>,
}

impl Connection<TcpStream> {
    /// Connects to `addr` and runs the opening of the session. `server_name`
    /// is the host the address belongs to (the MX or smarthost name), used for
    /// TLS SNI and certificate checks.
    ///
    /// With [`TlsMode::Opportunistic`], a failed TLS handshake is followed by
    /// one more connection that stays in plain text (`tls_version()` is then
    /// `None`); AUTH is not sent over it.
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        cfg: &ClientConfig,
    ) -> Result<Self, ClientError> {
        check_config(cfg)?;
        let plain_auth = cfg.tls == TlsMode::None;
        match Self::open_with(addr, server_name, cfg, cfg.tls, plain_auth).await {
            Err(ClientError::Tls(reason)) if cfg.tls == TlsMode::Opportunistic => {
                tracing::debug!(%addr, %reason, "STARTTLS failed; retrying in plain text");
                let mut conn =
                    Self::open_with(addr, server_name, cfg, TlsMode::None, false).await?;
                conn.tls_fallback = Some(reason);
                Ok(conn)
            }
            other => other,
        }
    }

    async fn open_with(
        addr: SocketAddr,
        server_name: &str,
        cfg: &ClientConfig,
        mode: TlsMode,
        plain_auth: bool,
    ) -> Result<Self, ClientError> {
        let connect = connect_from(addr, cfg.source);
        let tcp = match tokio::time::timeout(cfg.timeouts.connect, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ClientError::Connect(e)),
            Err(_) => return Err(ClientError::Timeout(Phase::Connect)),
        };
        // Commands are written whole; do not let Nagle hold back the last segment.
        let _ = tcp.set_nodelay(true);
        Self::start(tcp, addr, server_name, cfg, mode, plain_auth).await
    }
}

/// Connects to `addr`, from `source` when given (bound first, any port).
async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Refuses an EHLO name or credentials that cannot go on the wire, before connecting.
fn check_config(cfg: &ClientConfig) -> Result<(), ClientError> {
    command::check_helo_name(&cfg.helo_name).map_err(ClientError::InvalidInput)?;
    if let Some((user, password)) = &cfg.auth {
        command::check_credentials(user, password).map_err(ClientError::InvalidInput)?;
    }
    Ok(())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Runs the opening of the session (greeting, EHLO, STARTTLS, AUTH) on an
    /// already connected stream. `peer` is only reported back by
    /// [`peer`](Self::peer). Unlike [`Connection::open`] it cannot reconnect:
    /// an opportunistic TLS handshake failure is returned as
    /// [`ClientError::Tls`].
    pub async fn handshake(
        stream: S,
        peer: SocketAddr,
        server_name: &str,
        cfg: &ClientConfig,
    ) -> Result<Self, ClientError> {
        Self::start(
            stream,
            peer,
            server_name,
            cfg,
            cfg.tls,
            cfg.tls == TlsMode::None,
        )
        .await
    }

    async fn start(
        stream: S,
        peer: SocketAddr,
        server_name: &str,
        cfg: &ClientConfig,
        mode: TlsMode,
        plain_auth: bool,
    ) -> Result<Self, ClientError> {
        check_config(cfg)?;
        let mut conn = Connection {
            io: LineIo::new(stream),
            ext: Extensions::default(),
            peer,
            timeouts: cfg.timeouts,
            messages_sent: 0,
            needs_reset: false,
            tls_fallback: None,
        };
        let greeting = conn
            .io
            .read_reply(cfg.timeouts.greeting, Phase::Greeting)
            .await?;
        if greeting.code != 220 {
            return Err(ClientError::Greeting(greeting));
        }
        conn.hello(&cfg.helo_name, true).await?;
        if mode != TlsMode::None {
            conn.start_tls(server_name, cfg, mode).await?;
        }
        if let Some((user, password)) = &cfg.auth {
            if conn.tls_version().is_none() && !plain_auth {
                return Err(ClientError::TlsUnavailable);
            }
            conn.authenticate(user, password).await?;
        }
        Ok(conn)
    }

    /// EHLO, or HELO if EHLO is refused with anything but 421 (and
    /// `helo_fallback`, which is off after STARTTLS).
    async fn hello(&mut self, name: &str, helo_fallback: bool) -> Result<(), ClientError> {
        let ehlo = self.command(&command::ehlo(name)).await?;
        if ehlo.is_positive() {
            self.ext = Extensions::parse(&ehlo.text());
            return Ok(());
        }
        if ehlo.code == 421 || !helo_fallback {
            return Err(ClientError::Ehlo(ehlo));
        }
        let helo = self.command(&command::helo(name)).await?;
        if !helo.is_positive() {
            return Err(ClientError::Ehlo(helo));
        }
        self.ext = Extensions::default();
        Ok(())
    }

    async fn start_tls(
        &mut self,
        server_name: &str,
        cfg: &ClientConfig,
        mode: TlsMode,
    ) -> Result<(), ClientError> {
        let must = matches!(mode, TlsMode::Required | TlsMode::Verify);
        if !self.ext.starttls {
            return if must {
                Err(ClientError::TlsUnavailable)
            } else {
                Ok(())
            };
        }
        // Build the configuration first: a bad extra root is our fault, not the server's.
        let config = tls::client_config(mode, cfg.extra_root.as_ref(), cfg.dane.as_ref())?;
        // Under DANE the name is checked by the verifier against the TLSA reference
        // identifiers; SNI still carries the MX host name.
        let name = tls::server_name(server_name, self.peer.ip(), mode)?;
        let reply = self.command(command::STARTTLS).await?;
        if reply.code != 220 {
            if must || reply.code == 421 {
                return Err(ClientError::Tls(format!("STARTTLS refused: {reply}")));
            }
            tracing::debug!(peer = %self.peer, %reply, "STARTTLS refused; staying in plain text");
            return Ok(());
        }
        self.io
            .start_tls(config, name, self.timeouts.command)
            .await?;
        // RFC 3207 §4.2: forget everything learnt before TLS.
        self.ext = Extensions::default();
        self.hello(&cfg.helo_name, false).await
    }

    /// AUTH PLAIN if offered, else AUTH LOGIN.
    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let done = if self.ext.offers_auth("PLAIN") {
            let line = command::auth_plain(user, password).map_err(ClientError::InvalidInput)?;
            self.command(&line).await?
        } else if self.ext.offers_auth("LOGIN") {
            let mut reply = self.command(command::AUTH_LOGIN).await?;
            for value in [user, password] {
                if reply.code != 334 {
                    break;
                }
                reply = self.command(&command::auth_login_line(value)).await?;
            }
            reply
        } else {
            return Err(ClientError::Unsupported("AUTH PLAIN or LOGIN"));
        };
        if done.code == 235 {
            Ok(())
        } else {
            if done.code == 334 {
                // The server wants more than we have; leave the exchange cleanly.
                self.io.set_broken();
            }
            Err(ClientError::Auth(done))
        }
    }

    /// Writes one command and reads its reply, both within the command timeout.
    pub(crate) async fn command(&mut self, line: &[u8]) -> Result<Reply, ClientError> {
        self.io.write(line, self.timeouts.command).await?;
        self.io
            .read_reply(self.timeouts.command, Phase::Command)
            .await
    }

    /// The negotiated TLS version ("TLSv1.3", "TLSv1.2"), or `None` in plain text.
    pub fn tls_version(&self) -> Option<&str> {
        self.io.tls_version()
    }

    /// The negotiated cipher suite ("TLS13_AES_256_GCM_SHA384"), or `None` in plain text.
    pub fn tls_cipher(&self) -> Option<String> {
        self.io.tls_cipher()
    }

    /// Why the TLS handshake failed when this connection is the opportunistic
    /// plain-text retry after it; `None` for a connection that did not fall back.
    pub fn tls_fallback(&self) -> Option<&str> {
        self.tls_fallback.as_deref()
    }

    /// The address this connection goes to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Messages the server accepted on this connection.
    pub fn messages_sent(&self) -> u32 {
        self.messages_sent
    }

    /// What the server offered in its latest EHLO reply.
    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// Whether another [`send`](Self::send) can be tried on this connection:
    /// false after an I/O error, a timeout, a protocol violation or a 421.
    pub fn is_usable(&self) -> bool {
        !self.io.is_broken()
    }
}
