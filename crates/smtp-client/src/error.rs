//! What can go wrong while opening a connection or sending one transaction.
//! Replies the server refused with are kept whole, so the delivery engine can
//! classify them; per-recipient refusals are not errors (see
//! [`Connection::send`](crate::Connection::send)).

use std::fmt;

use mailroom_proto::Reply;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Connect,
    Greeting,
    Command,
    DataEnd,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Command => "command",
            Phase::DataEnd => "end of data",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timeout waiting for {0}")]
    Timeout(Phase),
    /// The greeting was not 220 (for example 421 or 554).
    #[error("greeting refused: {0}")]
    Greeting(Reply),
    /// EHLO and HELO were refused, or EHLO after STARTTLS was.
    #[error("EHLO refused: {0}")]
    Ehlo(Reply),
    /// TLS was required (by [`TlsMode`](crate::TlsMode) or, for AUTH, by
    /// policy) but the server does not offer STARTTLS.
    #[error("STARTTLS not offered")]
    TlsUnavailable,
    /// STARTTLS was refused or its handshake (or certificate check) failed.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("AUTH refused: {0}")]
    Auth(Reply),
    /// MAIL FROM was refused: no recipient was tried.
    #[error("MAIL FROM refused: {0}")]
    Mail(Reply),
    /// The connection failed (reset, closed, ...) after it was established.
    #[error("I/O: {0}")]
    Io(std::io::Error),
    /// The server broke the protocol (malformed or oversized reply, unexpected
    /// reply, data after STARTTLS) or the connection is no longer usable.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server lacks an extension this transaction needs (SMTPUTF8, AUTH
    /// mechanism); another server might have it.
    #[error("server does not support {0}")]
    Unsupported(&'static str),
    /// The envelope or configuration cannot be put on the wire (control
    /// characters in an address, invalid DSN parameter, no recipients, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The server announced a SIZE limit (RFC 1870) smaller than the message:
    /// nothing was sent, the message cannot go to this server as it is.
    #[error("message size {size} exceeds the server's SIZE limit of {limit} bytes")]
    TooLarge {
        /// The message as it would go on the wire (dot-stuffed, CRLF).
        size: u64,
        /// The limit the server announced in its EHLO reply.
        limit: u64,
    },
}

impl ClientError {
    /// The server's reply, for the errors that carry one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Greeting(r)
            | ClientError::Ehlo(r)
            | ClientError::Auth(r)
            | ClientError::Mail(r) => Some(r),
            ClientError::Connect(_)
            | ClientError::Timeout(_)
            | ClientError::TlsUnavailable
            | ClientError::Tls(_)
            | ClientError::Io(_)
            | ClientError::Protocol(_)
            | ClientError::Unsupported(_)
            | ClientError::InvalidInput(_)
            | ClientError::TooLarge { .. } => None,
        }
    }
}
