//! The bench's TLS client: it accepts any server certificate (a load generator aimed
//! at a relay with a self-signed certificate). The configuration is the SMTP client's
//! (`mailroom_smtp_client::insecure_client_config`): one verifier in the project.

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// A connector for the bench: the SMTP client's configuration that accepts any
/// certificate (aws-lc-rs, safe default protocol versions, handshake signatures checked).
pub fn insecure_connector() -> anyhow::Result<TlsConnector> {
    let config = mailroom_smtp_client::insecure_client_config().map_err(anyhow::Error::msg)?;
    Ok(TlsConnector::from(config))
}

/// The TLS server name for `host` (an IP address or a DNS name).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| anyhow::anyhow!("--target host {host:?} is not a valid TLS server name: {e}"))
}
