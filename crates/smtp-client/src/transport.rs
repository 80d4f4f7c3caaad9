//! The byte stream under a session: plain or upgraded to TLS in place, with a
//! fixed-size read buffer, bounded line reads, and a timeout on every read and
//! write. It knows replies only as far as handing lines to the pure
//! [`ReplyParser`]. Any failure marks the stream broken, because after a
//! timeout or a malformed reply the two sides no longer agree on where they are.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ClientError, Phase};
use mailroom_proto::reply::{MAX_REPLY_LINE, Reply, ReplyParser};

/// Read buffer size: a full reply line always fits after compaction.
const READ_BUFFER: usize = 2 * MAX_REPLY_LINE;

/// A stream that may have been switched to TLS by STARTTLS.
pub(crate) enum Transport<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Transiently during the TLS handshake, and for good if it failed.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during STARTTLS",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The session's stream with its read buffer.
pub(crate) struct LineIo<S> {
    stream: Transport<S>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    broken: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineIo<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream: Transport::Plain(stream),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            broken: false,
        }
    }

    /// Whether an earlier failure (or a 421) left the stream unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the stream unusable (the server said 421, or a caller gave up).
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    /// Whether the server sent bytes that no reply has consumed yet.
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// The negotiated TLS version, once STARTTLS succeeded.
    pub fn tls_version(&self) -> Option<&'static str> {
        match &self.stream {
            Transport::Tls(s) => s
                .get_ref()
                .1
                .protocol_version()
                .map(crate::tls::version_name),
            Transport::Plain(_) | Transport::Gone => None,
        }
    }

    /// The negotiated cipher suite's IANA-style name, once STARTTLS succeeded.
    pub fn tls_cipher(&self) -> Option<String> {
        match &self.stream {
            Transport::Tls(s) => s
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .map(|cs| format!("{:?}", cs.suite())),
            Transport::Plain(_) | Transport::Gone => None,
        }
    }

    /// Writes all of `bytes` (one buffer, so one batch) and flushes, within `limit`.
    pub async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), ClientError> {
        self.usable()?;
        let result = tokio::time::timeout(limit, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.fail(ClientError::Io(e))),
            Err(_) => Err(self.fail(ClientError::Timeout(Phase::Command))),
        }
    }

    /// Reads one complete reply within `limit`. A 421 reply is returned but
    /// leaves the stream broken: the server is closing it.
    pub async fn read_reply(
        &mut self,
        limit: Duration,
        phase: Phase,
    ) -> Result<Reply, ClientError> {
        self.usable()?;
        match tokio::time::timeout(limit, self.read_reply_inner()).await {
            Ok(Ok(reply)) => {
                if reply.code == 421 {
                    self.broken = true;
                }
                Ok(reply)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail(ClientError::Timeout(phase))),
        }
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, ClientError> {
        let mut parser = ReplyParser::new();
        loop {
            let line = self.read_line().await?;
            if let Some(reply) = parser
                .push_line(&line)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                return Ok(reply);
            }
        }
    }

    /// One line ending in LF, at most [`MAX_REPLY_LINE`] bytes.
    async fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line = pending[..=pos].to_vec();
                self.start += pos + 1;
                return Ok(line);
            }
            if pending.len() >= MAX_REPLY_LINE {
                return Err(ClientError::Protocol(format!(
                    "reply line longer than {MAX_REPLY_LINE} bytes"
                )));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .await
                .map_err(ClientError::Io)?;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
            self.end += n;
        }
    }

    /// Runs the TLS handshake on the plain stream within `limit`.
    pub async fn start_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        limit: Duration,
    ) -> Result<(), ClientError> {
        self.usable()?;
        if self.has_buffered() {
            // RFC 3207 §6 / CVE-2011-0411: nothing sent before TLS may be read as
            // if it came after.
            return Err(self.fail(ClientError::Protocol(
                "server sent data after its STARTTLS reply".to_owned(),
            )));
        }
        let Transport::Plain(plain) = std::mem::replace(&mut self.stream, Transport::Gone) else {
            return Err(self.fail(ClientError::Protocol("STARTTLS twice".to_owned())));
        };
        let connect = TlsConnector::from(config).connect(name, plain);
        match tokio::time::timeout(limit, connect).await {
            Ok(Ok(tls)) => {
                self.stream = Transport::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail(ClientError::Tls(e.to_string()))),
            Err(_) => Err(self.fail(ClientError::Timeout(Phase::Command))),
        }
    }

    /// Closes our side, ignoring errors, within `limit`.
    pub async fn shutdown(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }

    fn usable(&self) -> Result<(), ClientError> {
        if self.broken {
            Err(ClientError::Protocol(
                "connection is no longer usable after an earlier failure".to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.broken = true;
        e
    }
}
