//! The bench's TLS client: it accepts any server certificate (a load generator aimed
//! at a relay with a self-signed certificate). The configuration is the SMTP client's
//! (`mailroom_smtp_client::insecure_client_config`): one verifier in the project.
//! Also the sink's optional STARTTLS acceptor, from a certificate and key on disk.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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

/// A TLS acceptor for the sink: the certificate chain in `cert` (PEM, leaf first) and
/// the private key in `key` (PEM), aws-lc-rs, safe default protocol versions.
pub fn sink_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "cannot read certificates from --sink-tls-cert {}",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!("--sink-tls-cert {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read a private key from --sink-tls-key {}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--sink-tls-cert and --sink-tls-key do not make a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
