//! How a connection is opened: TLS policy, EHLO name, credentials, and the
//! timeout of each phase. Plain data; nothing here does I/O.

use std::fmt;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// Whether and how STARTTLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never STARTTLS, even if offered. The only mode in which AUTH is sent
    /// over plain text.
    None,
    /// STARTTLS when offered, without checking the certificate; plain text when
    /// it is not offered or refused. If the TLS handshake itself fails,
    /// [`Connection::open`](crate::Connection::open) connects once more and
    /// stays in plain text (the generic
    /// [`Connection::handshake`](crate::Connection::handshake) returns
    /// [`ClientError::Tls`](crate::ClientError::Tls) instead: it cannot reconnect).
    #[default]
    Opportunistic,
    /// STARTTLS must succeed; the certificate is not checked.
    Required,
    /// STARTTLS must succeed and the certificate must chain to a Mozilla root
    /// (webpki-roots) or [`ClientConfig::extra_root`] and name the server — or, when
    /// [`ClientConfig::dane`] is set, match one of its TLSA records.
    Verify,
}

/// Per-phase limits (RFC 5321 §4.5.3.2 gives the defaults). Smaller values are
/// allowed; a zero duration times out at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Waiting for the 220 greeting.
    pub greeting: Duration,
    /// Each command's reply (EHLO, STARTTLS and its handshake, AUTH, MAIL,
    /// RCPT, DATA, RSET, QUIT), each write, and each 64 KiB block of the body.
    pub command: Duration,
    /// Waiting for the reply after the final `.`.
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_end: Duration::from_secs(600),
        }
    }
}

/// Everything [`Connection::open`](crate::Connection::open) needs besides the address.
#[derive(Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO: a fully qualified domain name or an address
    /// literal like `[192.0.2.1]`.
    pub helo_name: String,
    pub tls: TlsMode,
    /// User name and password for AUTH PLAIN (or LOGIN), for smarthosts. Sent
    /// only after STARTTLS, unless `tls` is [`TlsMode::None`].
    pub auth: Option<(String, String)>,
    pub timeouts: Timeouts,
    /// One more trust anchor for [`TlsMode::Verify`], besides webpki-roots:
    /// a private CA, or a test certificate.
    pub extra_root: Option<CertificateDer<'static>>,
    /// Local address to bind before connecting (an egress pool's source address);
    /// `None` lets the system choose.
    pub source: Option<std::net::IpAddr>,
    /// DANE (RFC 7672): with [`TlsMode::Verify`], the certificate is checked against
    /// these TLSA records instead of the web PKI.
    pub dane: Option<crate::dane::DaneTlsa>,
}

impl ClientConfig {
    /// Opportunistic TLS, no AUTH, default timeouts.
    pub fn new(helo_name: impl Into<String>) -> Self {
        Self {
            helo_name: helo_name.into(),
            tls: TlsMode::default(),
            auth: None,
            timeouts: Timeouts::default(),
            extra_root: None,
            source: None,
            dane: None,
        }
    }
}

/// Leaves the password out.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("helo_name", &self.helo_name)
            .field("tls", &self.tls)
            .field("auth_user", &self.auth.as_ref().map(|(user, _)| user))
            .field("timeouts", &self.timeouts)
            .field("extra_root", &self.extra_root.is_some())
            .field("source", &self.source)
            .field("dane", &self.dane)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let mut cfg = ClientConfig::new("relay.example");
        cfg.auth = Some(("user".into(), "hunter2".into()));
        let shown = format!("{cfg:?}");
        assert!(shown.contains("user"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn default_timeouts_follow_rfc_5321() {
        let t = Timeouts::default();
        assert_eq!(t.greeting, Duration::from_secs(300));
        assert_eq!(t.data_end, Duration::from_secs(600));
    }
}
