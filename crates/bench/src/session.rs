//! One client connection to the target: TCP (and TLS) setup, greeting, EHLO,
//! STARTTLS, AUTH PLAIN, reading (multi-line) replies with bounds, and QUIT.
//! It does not know about messages; `transaction` drives those over it.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::args::TlsMode;

/// Longest reply line read before the connection is declared broken.
const MAX_REPLY_LINE: u64 = 8 * 1024;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 256;
/// How long one reply may take before the connection is declared broken.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the TCP connect and the TLS handshake may each take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Any byte stream a session can run over (plain TCP or TLS over TCP).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to reach and set up a session; shared by every connection of a run.
pub struct Endpoint {
    pub target: String,
    pub helo: String,
    pub tls: TlsMode,
    pub connector: Option<TlsConnector>,
    pub server_name: ServerName<'static>,
    /// `\0user\0password`, base64-encoded, when AUTH PLAIN is wanted.
    pub auth_plain: Option<String>,
}

impl Endpoint {
    /// The AUTH PLAIN initial response for `user` and `password`.
    pub fn plain_credentials(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    }
}

/// One SMTP reply: its code and the text of each line (after `NNN-`/`NNN `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The code and first line, as shown in report samples.
    pub fn summary(&self) -> String {
        match self.lines.first() {
            Some(text) if !text.is_empty() => format!("{} {text}", self.code),
            _ => self.code.to_string(),
        }
    }
}

/// An open, greeted, EHLO'd (and if asked, TLS'd and authenticated) session.
pub struct Session {
    io: BufReader<Box<dyn Stream>>,
    /// The server advertised PIPELINING in its last EHLO reply.
    pub pipelining: bool,
    line: Vec<u8>,
}

impl Session {
    /// Connects and runs greeting → EHLO → (STARTTLS → EHLO) → (AUTH PLAIN).
    pub async fn open(ep: &Endpoint) -> anyhow::Result<Self> {
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(&ep.target))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect to {}", ep.target))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match ep.tls {
            TlsMode::Implicit => handshake(ep, Box::new(tcp)).await?,
            TlsMode::None | TlsMode::Starttls => Box::new(tcp),
        };
        let mut session = Self {
            io: BufReader::new(stream),
            pipelining: false,
            line: Vec::new(),
        };
        let greeting = session.reply().await?;
        ensure!(greeting.code == 220, "greeting: {}", greeting.summary());
        let mut caps = session.ehlo(&ep.helo).await?;
        if ep.tls == TlsMode::Starttls {
            ensure!(
                caps.iter().any(|c| c == "STARTTLS"),
                "server does not offer STARTTLS"
            );
            let reply = session.command(b"STARTTLS\r\n").await?;
            ensure!(reply.code == 220, "STARTTLS: {}", reply.summary());
            // Bytes after the 220 arrived before the handshake: plain-text injection.
            ensure!(
                session.io.buffer().is_empty(),
                "server sent data after its STARTTLS reply"
            );
            let plain = std::mem::replace(
                &mut session.io,
                BufReader::new(Box::new(tokio::io::empty())),
            );
            session.io = BufReader::new(handshake(ep, plain.into_inner()).await?);
            caps = session.ehlo(&ep.helo).await?;
        }
        session.pipelining = caps.iter().any(|c| c == "PIPELINING");
        if let Some(creds) = &ep.auth_plain {
            let reply = session
                .command(format!("AUTH PLAIN {creds}\r\n").as_bytes())
                .await?;
            ensure!(reply.code == 235, "AUTH PLAIN: {}", reply.summary());
        }
        Ok(session)
    }

    /// Sends EHLO and returns the upper-cased keyword of each extension line.
    async fn ehlo(&mut self, helo: &str) -> anyhow::Result<Vec<String>> {
        let reply = self.command(format!("EHLO {helo}\r\n").as_bytes()).await?;
        ensure!(reply.code == 250, "EHLO: {}", reply.summary());
        Ok(reply
            .lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_ascii_whitespace().next())
            .map(str::to_ascii_uppercase)
            .collect())
    }

    /// Writes `bytes` in one `write_all` and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let io = self.io.get_mut();
        timeout(REPLY_TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .context("write timed out")?
        .context("write")
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &[u8]) -> anyhow::Result<Reply> {
        self.send(line).await?;
        self.reply().await
    }

    /// Reads one reply, following `NNN-` continuation lines.
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        timeout(REPLY_TIMEOUT, self.read_reply())
            .await
            .context("reply timed out")?
    }

    async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            self.line.clear();
            let n = (&mut self.io)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut self.line)
                .await?;
            if n == 0 {
                bail!("connection closed by server");
            }
            ensure!(
                self.line.ends_with(b"\n"),
                "reply line longer than {MAX_REPLY_LINE} bytes"
            );
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (code, sep, rest) =
                parse_line(text).with_context(|| format!("malformed reply line {text:?}"))?;
            lines.push(rest.to_owned());
            if sep != b'-' {
                return Ok(Reply { code, lines });
            }
            ensure!(
                lines.len() < MAX_REPLY_LINES,
                "reply longer than {MAX_REPLY_LINES} lines"
            );
        }
    }

    /// Says QUIT and waits briefly for the answer; failures are ignored because
    /// the run's figures are already final.
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(2), self.command(b"QUIT\r\n")).await;
        let _ = timeout(Duration::from_secs(2), self.io.get_mut().shutdown()).await;
    }
}

/// Splits `250-text` / `250 text` / `250` into code, separator and text.
fn parse_line(text: &str) -> Option<(u16, u8, &str)> {
    let code = text.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sep = text.as_bytes().get(3).copied().unwrap_or(b' ');
    if sep != b' ' && sep != b'-' {
        return None;
    }
    Some((code.parse().ok()?, sep, text.get(4..).unwrap_or("")))
}

async fn handshake(ep: &Endpoint, io: Box<dyn Stream>) -> anyhow::Result<Box<dyn Stream>> {
    let connector = ep
        .connector
        .as_ref()
        .context("TLS requested without a connector")?;
    let tls = timeout(
        CONNECT_TIMEOUT,
        connector.connect(ep.server_name.clone(), io),
    )
    .await
    .context("TLS handshake timed out")?
    .context("TLS handshake")?;
    Ok(Box::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        assert_eq!(
            parse_line("250-PIPELINING"),
            Some((250, b'-', "PIPELINING"))
        );
        assert_eq!(parse_line("250 ok"), Some((250, b' ', "ok")));
        assert_eq!(parse_line("354"), Some((354, b' ', "")));
        assert_eq!(parse_line("25x ok"), None);
        assert_eq!(parse_line("250_ok"), None);
        assert_eq!(parse_line("2"), None);
    }

    #[tokio::test]
    async fn multi_line_replies_are_joined() {
        let (client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"250-first\r\n250-PIPELINING\r\n250 last\r\n421 bye\r\n")
            .await
            .unwrap();
        let mut s = Session {
            io: BufReader::new(Box::new(client)),
            pipelining: false,
            line: Vec::new(),
        };
        let r = s.reply().await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["first", "PIPELINING", "last"]);
        assert_eq!(s.reply().await.unwrap().summary(), "421 bye");
    }

    #[test]
    fn plain_credentials_are_nul_separated() {
        assert_eq!(Endpoint::plain_credentials("u", "p"), "AHUAcA==");
    }
}
