//! The SMTP client the delivery engine uses to hand a stored message to a
//! recipient's mail exchanger or to a smarthost (RFC 5321, with PIPELINING,
//! STARTTLS, AUTH PLAIN/LOGIN, SIZE, 8BITMIME, SMTPUTF8 and DSN parameters).
//!
//! It owns the client side of one connection: opening it ([`Connection::open`]),
//! sending transactions with one outcome per recipient ([`Connection::send`]),
//! and closing it. It does not resolve MX records, choose TLS policy per
//! destination, retry, or classify replies: that is the delivery engine's work.
//!
//! Module map. Pure, no I/O (the reply type and its bounded parser are
//! `mailroom_proto::reply`): `ehlo`
//! (extensions), `body` (CRLF normalisation and dot-stuffing), `command`
//! (command lines and input checks), `transaction` (envelope → bytes, replies →
//! outcomes), `config`, `envelope`, `error`. I/O: `transport` (bounded,
//! timed reads and writes, STARTTLS upgrade), `tls` (rustls configurations),
//! `connection` (greeting, EHLO, STARTTLS, AUTH), `send` (the transaction
//! driver, RSET, QUIT), `batch` (several transactions pipelined on one
//! connection, for VERP). The session is generic over its stream, so tests can
//! run it on an in-memory pipe.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mailroom_smtp_client::ClientError> {
//! use mailroom_smtp_client::{ClientConfig, Connection, Envelope, Rcpt, TlsMode};
//! let mut cfg = ClientConfig::new("relay.example.org");
//! cfg.tls = TlsMode::Opportunistic;
//! let addr = "192.0.2.10:25".parse().unwrap();
//! let mut conn = Connection::open(addr, "mx.example.net", &cfg).await?;
//! let rcpts = [Rcpt::new("a@example.net"), Rcpt::new("b@example.net")];
//! let outcomes = conn.send(&Envelope::new("bounces@example.org", &rcpts, b"Subject: hi\r\n\r\nhello\r\n")).await?;
//! for (rcpt, reply) in rcpts.iter().zip(&outcomes) {
//!     println!("{}: {reply}", rcpt.address);
//! }
//! conn.quit().await;
//! # Ok(()) }
//! ```

mod batch;
mod body;
mod command;
mod config;
mod connection;
mod dane;
mod ehlo;
mod envelope;
mod error;
mod send;
mod tls;
pub use tls::insecure_client_config;
mod transaction;
mod transport;

pub use batch::TransactionResult;
pub use body::{DATA_END, prepare_body};
pub use config::{ClientConfig, Timeouts, TlsMode};
pub use connection::Connection;
pub use dane::{DaneTlsa, Tlsa};
pub use ehlo::Extensions;
pub use envelope::{Envelope, Rcpt};
pub use error::{ClientError, Phase};
/// Replies are `mailroom_proto`'s: one type for what the server writes and what the
/// client reads.
pub use mailroom_proto::reply::{
    EnhancedCode, MAX_REPLY_LINE, MAX_REPLY_LINES, Reply, ReplyError, ReplyParser, parse_reply,
};

/// `open` and `send` futures must be `Send`, so the delivery engine can spawn them.
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send(conn: &mut Connection, env: &Envelope<'_>, cfg: &ClientConfig) {
    fn is_send<T: Send>(_: T) {}
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 25));
    is_send(Connection::open(addr, "mx.test", cfg));
    is_send(conn.send(env));
    is_send(conn.reset());
    is_send(conn.send_batch(std::slice::from_ref(env)));
}
