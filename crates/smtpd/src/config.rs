//! Settings of the SMTP server (filled from the `[smtp]` configuration section).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// Name used in the greeting, EHLO reply and trace headers.
    pub hostname: String,
    /// Largest accepted message in bytes; advertised with SIZE.
    pub max_message_size: usize,
    /// Recipients per message; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command line, including CRLF.
    pub max_command_line: usize,
    /// Longest text line in a message body, excluding CRLF.
    pub max_text_line: usize,
    /// How long to wait for the client's next command (or data chunk).
    pub command_timeout: Duration,
    /// Upper bound on a whole session.
    pub session_timeout: Duration,
    /// Unrecognised or malformed commands tolerated before the session is closed.
    pub max_errors: u32,
    /// Failed AUTH attempts tolerated in one session before it is closed.
    pub max_auth_failures: u32,
    /// All connections at once.
    pub max_connections: usize,
    /// Connections from one client address at once.
    pub max_connections_per_ip: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_text_line: 998,
            command_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            max_errors: 10,
            max_auth_failures: 3,
            max_connections: 1000,
            max_connections_per_ip: 100,
        }
    }
}
