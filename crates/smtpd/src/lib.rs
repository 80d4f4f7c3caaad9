//! The SMTP server: listeners with connection limits, TLS (STARTTLS and implicit),
//! and one session loop (`session`, generic over the stream, one file per stage) that
//! serves two kinds of session: `submission` hands finished messages to `ingest`;
//! `intake` (the bounce and report MX) hands them to `mailroom_intake`. This crate runs
//! no deliveries and issues no SQL.

mod config;
pub mod intake;
mod listener;
pub mod session;
mod submission;

pub use config::SmtpConfig;
pub use intake::{IntakeHandle, serve_intake_connection};
pub use listener::{Listener, ListenerKind, Shared, serve_listener};
pub use session::TlsInfo;
pub use submission::serve_connection;
