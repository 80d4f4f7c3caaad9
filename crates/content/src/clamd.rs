//! A ClamAV `clamd` client for the INSTREAM command, over TCP or a unix socket:
//! `zINSTREAM\0`, then chunks each prefixed with a 4-byte big-endian length, then a
//! zero length; clamd answers `stream: OK`, `stream: <signature> FOUND` or
//! `... ERROR`. Every step has a timeout; replies are read up to a small bound.

use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CHUNK: usize = 64 * 1024;
const MAX_REPLY: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddr {
    /// `host:port`
    Tcp(String),
    Unix(PathBuf),
}

impl ClamdAddr {
    /// `tcp:host:port` or `unix:/path`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("tcp:") {
            let (host, port) = rest.rsplit_once(':')?;
            port.parse::<u16>().ok()?;
            (!host.is_empty()).then(|| ClamdAddr::Tcp(rest.to_string()))
        } else {
            text.strip_prefix("unix:")
                .filter(|p| p.starts_with('/'))
                .map(|p| ClamdAddr::Unix(PathBuf::from(p)))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scan {
    Clean,
    Infected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("clamd connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("clamd timed out")]
    Timeout,
    #[error("clamd error: {0}")]
    Reply(String),
}

#[derive(Clone, Debug)]
pub struct Clamd {
    pub addr: ClamdAddr,
    /// Bound on the whole exchange for one stream.
    pub timeout: Duration,
}

impl Clamd {
    pub async fn scan(&self, data: &[u8]) -> Result<Scan, ClamdError> {
        tokio::time::timeout(self.timeout, self.scan_inner(data))
            .await
            .map_err(|_| ClamdError::Timeout)?
    }

    async fn scan_inner(&self, data: &[u8]) -> Result<Scan, ClamdError> {
        match &self.addr {
            ClamdAddr::Tcp(a) => instream(tokio::net::TcpStream::connect(a).await?, data).await,
            #[cfg(unix)]
            ClamdAddr::Unix(p) => instream(tokio::net::UnixStream::connect(p).await?, data).await,
            #[cfg(not(unix))]
            ClamdAddr::Unix(_) => Err(ClamdError::Reply("unix sockets are not available".into())),
        }
    }
}

async fn instream<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    data: &[u8],
) -> Result<Scan, ClamdError> {
    s.write_all(b"zINSTREAM\0").await?;
    for chunk in data.chunks(CHUNK) {
        s.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        s.write_all(chunk).await?;
    }
    s.write_all(&0u32.to_be_bytes()).await?;
    s.flush().await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while reply.len() < MAX_REPLY && !reply.contains(&0) {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    parse_reply(&reply)
}

pub fn parse_reply(reply: &[u8]) -> Result<Scan, ClamdError> {
    let end = reply
        .iter()
        .position(|b| *b == 0 || *b == b'\n')
        .unwrap_or(reply.len());
    let text = String::from_utf8_lossy(&reply[..end]).trim().to_string();
    let body = text.strip_prefix("stream:").map(str::trim).unwrap_or(&text);
    if body == "OK" {
        Ok(Scan::Clean)
    } else if let Some(sig) = body.strip_suffix(" FOUND") {
        Ok(Scan::Infected(sig.trim().chars().take(200).collect()))
    } else {
        Err(ClamdError::Reply(text.chars().take(200).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0").unwrap(), Scan::Clean);
        assert_eq!(
            parse_reply(b"stream: Mailroom.Test.Sig.UNOFFICIAL FOUND\0").unwrap(),
            Scan::Infected("Mailroom.Test.Sig.UNOFFICIAL".into())
        );
        assert!(parse_reply(b"INSTREAM size limit exceeded. ERROR\0").is_err());
        assert!(parse_reply(b"").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            ClamdAddr::parse("tcp:127.0.0.1:3310"),
            Some(ClamdAddr::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            ClamdAddr::parse("unix:/run/clamav/clamd.ctl"),
            Some(ClamdAddr::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(ClamdAddr::parse("tcp:nohost"), None);
        assert_eq!(ClamdAddr::parse("unix:relative"), None);
        assert_eq!(ClamdAddr::parse("3310"), None);
    }

    #[tokio::test]
    async fn speaks_instream_to_a_fake_clamd() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut cmd = [0u8; 10];
            s.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"zINSTREAM\0");
            let mut got = Vec::new();
            loop {
                let len = s.read_u32().await.unwrap() as usize;
                if len == 0 {
                    break;
                }
                let mut c = vec![0; len];
                s.read_exact(&mut c).await.unwrap();
                got.extend(c);
            }
            let reply: &[u8] = if got.windows(4).any(|w| w == b"EVIL") {
                b"stream: Test.Evil FOUND\0"
            } else {
                b"stream: OK\0"
            };
            s.write_all(reply).await.unwrap();
        });
        let c = Clamd {
            addr: ClamdAddr::Tcp(addr.to_string()),
            timeout: Duration::from_secs(5),
        };
        let mut data = vec![b'x'; 200_000];
        data.extend_from_slice(b"EVIL");
        assert_eq!(
            c.scan(&data).await.unwrap(),
            Scan::Infected("Test.Evil".into())
        );
    }
}
