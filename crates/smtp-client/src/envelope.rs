//! What one transaction carries: the reverse path, the recipients with their
//! DSN parameters, and the stored message bytes. Borrowed, so the delivery
//! engine hands over what it loaded without copying.

/// One recipient of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rcpt<'a> {
    /// The address without angle brackets.
    pub address: &'a str,
    /// RFC 3461 NOTIFY value: `NEVER` or a comma list of `SUCCESS`, `FAILURE`,
    /// `DELAY`. Sent only when the server offers DSN.
    pub notify: Option<&'a str>,
    /// RFC 3461 ORCPT: `type;address` (`rfc822;user@example.com`), or a bare
    /// address taken as `rfc822`. Sent xtext-encoded, only when DSN is offered.
    pub orcpt: Option<&'a str>,
}

impl<'a> Rcpt<'a> {
    pub fn new(address: &'a str) -> Self {
        Self {
            address,
            notify: None,
            orcpt: None,
        }
    }
}

/// One message for a set of recipients on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Reverse path without angle brackets; empty for the null sender (`<>`).
    pub mail_from: &'a str,
    pub recipients: &'a [Rcpt<'a>],
    /// The message (headers and body) as stored: unstuffed, any line endings.
    pub body: &'a [u8],
    /// The message needs SMTPUTF8 (RFC 6531): sent as a MAIL parameter, and the
    /// send fails with [`ClientError::Unsupported`](crate::ClientError::Unsupported)
    /// if the server does not offer it.
    pub smtputf8: bool,
    /// The body has 8-bit bytes: `BODY=8BITMIME` when offered. When not
    /// offered the message is sent as is (as most MTAs do).
    pub eight_bit: bool,
    /// RFC 3461 RET: `FULL` or `HDRS`; sent only when DSN is offered.
    pub dsn_ret: Option<&'a str>,
    /// RFC 3461 ENVID, sent xtext-encoded only when DSN is offered.
    pub dsn_envid: Option<&'a str>,
    /// RFC 8689 REQUIRETLS: sent as a MAIL parameter; the send fails with
    /// [`ClientError::Unsupported`](crate::ClientError::Unsupported) if the server
    /// does not offer it or the session is not under TLS.
    pub require_tls: bool,
}

impl<'a> Envelope<'a> {
    /// A 7-bit message without DSN parameters.
    pub fn new(mail_from: &'a str, recipients: &'a [Rcpt<'a>], body: &'a [u8]) -> Self {
        Self {
            mail_from,
            recipients,
            body,
            smtputf8: false,
            eight_bit: false,
            dsn_ret: None,
            dsn_envid: None,
            require_tls: false,
        }
    }
}
