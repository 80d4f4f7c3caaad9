//! The SMTP submission server: listeners with connection limits, TLS (STARTTLS and
//! implicit), and sessions that are generic over the stream, one file per stage. A
//! finished message is handed to `ingest`; this crate runs no deliveries and issues no
//! SQL. The bounce intake listener (`intake`) hands reports to `mailroom_intake`.

mod config;
pub mod intake;
mod listener;
pub mod session;

pub use config::SmtpConfig;
pub use intake::{IntakeHandle, serve_intake_connection};
pub use listener::{Listener, ListenerKind, Shared, serve_listener};
pub use session::{Session, TlsInfo, serve_connection};
