//! STARTTLS (RFC 3207): answer 220 and hand the stream back for the handshake. The
//! session loop discards anything the client pipelined behind the command.

use super::{Conn, Flow, Kind, Session};
use mailroom_proto::reply;
use tokio::io::{AsyncRead, AsyncWrite};

impl<K: Kind> Session<K> {
    pub(super) fn starttls<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Flow {
        if self.core.tls.is_some() {
            conn.reply(&reply::already_tls());
            return Flow::Continue;
        }
        if !self.core.starttls_available {
            conn.reply(&reply::tls_unavailable());
            return Flow::Continue;
        }
        conn.reply(&reply::starttls_ready());
        Flow::StartTls
    }
}
