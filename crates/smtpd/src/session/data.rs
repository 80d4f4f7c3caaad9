//! DATA and BDAT: how the body is received, for every kind of session. The bytes go
//! through the smuggling-safe receiver (size and line limits, dot-unstuffing, bare
//! CR/LF refused); a complete body goes to the kind (`Kind::finish`), whose reply
//! ends the transaction.

use super::{Conn, Flow, Kind, Session, stopped};
use mailroom_proto::{BodyLimits, DataReceiver, reply};
use tokio::io::{AsyncRead, AsyncWrite};

impl<K: Kind> Session<K> {
    pub(super) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Flow {
        if self.kind.chunks().is_some_and(|rx| rx.is_some()) {
            conn.reply(&reply::data_and_bdat_mixed());
            return Flow::Continue;
        }
        if let Some(r) = self.kind.data_refusal(&self.core) {
            conn.reply(&r);
            return Flow::Continue;
        }
        conn.reply(&reply::start_data());
        let limits = self.kind.body_limits(&self.core);
        let mut rx = DataReceiver::data(limits);
        if let Err(stop) = conn.read_data(&mut rx).await {
            stopped(conn, stop).await;
            return Flow::Close;
        }
        let Some((txn, _)) = self.kind.take_txn() else {
            return Flow::Continue;
        };
        self.finish(txn, rx, limits, conn).await
    }

    pub(super) async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        size: usize,
        last: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        let refusal = self.kind.data_refusal(&self.core);
        let limits = self.kind.body_limits(&self.core);
        // The chunk is read even when it will be refused: its bytes are not commands.
        let rx = match (&refusal, self.kind.chunks()) {
            (None, Some(slot)) => Some(slot.get_or_insert_with(|| DataReceiver::chunked(limits))),
            _ => None,
        };
        if let Err(stop) = conn.read_chunk(size, rx).await {
            stopped(conn, stop).await;
            return Flow::Close;
        }
        if let Some(r) = refusal {
            conn.reply(&r);
            return Flow::Continue;
        }
        if !last {
            conn.reply(&reply::chunk_ok(size));
            return Flow::Continue;
        }
        let Some((txn, rx)) = self.kind.take_txn() else {
            return Flow::Continue;
        };
        let rx = rx.unwrap_or_else(|| DataReceiver::chunked(limits));
        self.finish(txn, rx, limits, conn).await
    }

    /// The end of data: a body the receiver accepts goes to the kind; a faulty one is
    /// refused with the fault's reply. Either way the transaction is over.
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        txn: K::Txn,
        rx: DataReceiver,
        limits: BodyLimits,
        conn: &mut Conn<S>,
    ) -> Flow {
        let r = match rx.finish() {
            Ok(body) => self.kind.finish(&self.core, txn, body).await,
            Err(fault) => {
                tracing::info!(peer = %self.core.peer, ?fault, "message refused at end of data");
                fault.reply(&limits)
            }
        };
        conn.reply(&r);
        Flow::Continue
    }
}
