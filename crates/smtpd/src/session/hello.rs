//! EHLO and HELO: name the client, reset any transaction, list the extensions.

use super::{Conn, Flow, Session};
use mailroom_proto::Capabilities;
use tokio::io::{AsyncRead, AsyncWrite};

impl Session {
    pub(crate) fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        host: String,
        extended: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        self.txn = None;
        let hostname = &self.shared.config.hostname;
        let client: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if extended {
            let caps = Capabilities {
                max_size: self.shared.config.max_message_size,
                starttls: self.tls.is_none() && self.starttls_available,
                auth: self.tls.is_some(),
                require_tls: self.tls.is_some(),
            };
            conn.reply(&caps.reply(hostname, &client));
        } else {
            conn.reply(&mailroom_proto::Reply::plain(
                250,
                format!("{hostname} Hello {client}"),
            ));
        }
        self.helo = Some(client);
        Flow::Continue
    }
}
