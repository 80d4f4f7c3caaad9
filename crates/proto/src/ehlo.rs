//! The EHLO reply: which extensions are offered depends on the session (TLS state,
//! whether TLS is configured), so it is computed here from a few flags.

use crate::Reply;

#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    pub max_size: usize,
    /// STARTTLS is offered on a plain connection that can be upgraded.
    pub starttls: bool,
    /// AUTH is offered only under TLS.
    pub auth: bool,
    /// REQUIRETLS (RFC 8689) is offered, only under TLS: a message may ask to travel
    /// only over validated TLS from here on.
    pub require_tls: bool,
}

impl Capabilities {
    pub fn reply(&self, hostname: &str, client: &str) -> Reply {
        let mut lines: Vec<std::borrow::Cow<'static, str>> =
            vec![format!("{hostname} Hello {client}").into()];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.max_size).into());
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("CHUNKING".into());
        lines.push("DSN".into());
        if self.starttls {
            lines.push("STARTTLS".into());
        }
        if self.auth {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        if self.require_tls {
            lines.push("REQUIRETLS".into());
        }
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }
}
