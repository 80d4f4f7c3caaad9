//! The session on an in-memory pipe instead of a socket: the pipelined group
//! MAIL/RCPT/DATA must leave the client in a single write.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::{Step::*, config, opening, run_script};
use mailroom_smtp_client::{Connection, Envelope, Rcpt, TlsMode};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// Records the size of every write the client makes.
struct Recording {
    inner: DuplexStream,
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.writes.lock().unwrap().push(buf[..n].to_vec());
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn pipelined_group_is_one_write() {
    let (client, server) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let stream = Recording {
        inner: client,
        writes: writes.clone(),
    };
    let mut steps = opening("250-test\r\n250-PIPELINING\r\n250 SIZE\r\n");
    steps.extend([
        Expect("MAIL"),
        Expect("RCPT"),
        Expect("RCPT"),
        Expect("RCPT"),
        Expect("DATA"),
        Send("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n"),
        ReadData,
        Send("250 2.0.0 done\r\n"),
        Expect("QUIT"),
        Send("221 bye\r\n"),
    ]);
    let server = tokio::spawn(run_script(server, steps));

    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 25));
    let mut conn = Connection::handshake(stream, peer, "mx.test", &config(TlsMode::Opportunistic))
        .await
        .expect("handshake");
    let rcpts = [Rcpt::new("a@x"), Rcpt::new("b@x"), Rcpt::new("c@x")];
    let out = conn
        .send(&Envelope::new("s@x", &rcpts, b"hello\n"))
        .await
        .expect("send");
    assert_eq!(
        out.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 550, 250]
    );
    conn.quit().await;
    let transcript = server.await.expect("script");

    let writes = writes.lock().unwrap().clone();
    let texts: Vec<String> = writes
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    assert_eq!(
        texts,
        [
            "EHLO client.test\r\n",
            "MAIL FROM:<s@x> SIZE=7\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n",
            "hello\r\n.\r\n",
            "QUIT\r\n",
        ]
    );
    assert_eq!(transcript.data, vec![b"hello\r\n.\r\n".to_vec()]);
}
