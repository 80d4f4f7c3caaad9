//! EHLO and HELO: name the client, reset any transaction, list the extensions the
//! session's kind offers on this connection.

use super::{Conn, Flow, Kind, Session};
use tokio::io::{AsyncRead, AsyncWrite};

impl<K: Kind> Session<K> {
    pub(super) fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        host: String,
        extended: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        self.kind.reset();
        let hostname = &self.core.shared.config.hostname;
        let client: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if extended {
            let caps = self.kind.capabilities(&self.core);
            conn.reply(&caps.reply(hostname, &client));
        } else {
            conn.reply(&mailroom_proto::Reply::plain(
                250,
                format!("{hostname} Hello {client}"),
            ));
        }
        self.core.helo = Some(client);
        Flow::Continue
    }
}
