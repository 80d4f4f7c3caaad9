//! The server certificate: the configured PEM files, or a self-signed certificate
//! generated once into the data directory (so clients can pin it across restarts).

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub fn acceptor(config: &crate::config::Config) -> Result<TlsAcceptor> {
    let (cert, key) = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => generate_if_missing(&config.data_dir.join("tls"), &config.hostname)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("cannot read tls.cert_file {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "tls.cert_file {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("tls.key_file {} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn generate_if_missing(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let names = vec![
        hostname.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed certificate")?;
    crate::files::write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    crate::files::write_private(&cert_path, certified.cert.pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok((cert_path, key_path))
}
