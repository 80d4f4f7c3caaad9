//! The server certificate: the configured PEM files, the one ACME issued
//! (`[tls.acme]`, `acme.rs`; until the first arrives, the self-signed one), or a
//! self-signed certificate generated into the data directory (so clients can pin it across restarts). The
//! generated one is valid for a year and replaced when it is older than
//! `REGENERATE_AFTER_DAYS` (testssl rates multi-century certificates HIGH, rightly:
//! a key that never expires is never rotated). The listeners ask [`LiveCert`] at each
//! handshake, so a reload (`reload.rs`) replaces the certificate without a restart.

use anyhow::{Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// The certificate the listeners present, replaceable while they run: a configuration
/// reload reads the files again and swaps it in; handshakes already under way keep the
/// one they started with.
#[derive(Debug)]
pub struct LiveCert(RwLock<Arc<CertifiedKey>>);

impl LiveCert {
    /// Puts `key` in force for every handshake from now on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The acceptor for every TLS listener, and the handle that swaps its certificate.
pub fn acceptor(config: &crate::config::Config) -> Result<(TlsAcceptor, Arc<LiveCert>)> {
    let live = Arc::new(LiveCert(RwLock::new(certified_key(config)?)));
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(live.clone());
    // Our order (rustls's: AEAD suites with forward secrecy, strongest first), not
    // whatever a client prefers first.
    server.ignore_client_order = true;
    Ok((TlsAcceptor::from(Arc::new(server)), live))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads (or generates) the certificate chain and key the configuration names, and
/// checks that they belong together.
pub fn certified_key(config: &crate::config::Config) -> Result<Arc<CertifiedKey>> {
    if config.tls.acme.is_some() {
        match crate::acme_order::stored(&config.data_dir) {
            Ok(Some(stored)) => return Ok(stored.key),
            // The renewal task orders one; meanwhile the self-signed one serves.
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"),
                "the stored ACME certificate is unusable; serving the self-signed one until a new one is issued"),
        }
    }
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
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert_file {} holds no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("tls.key_file {} is not a PEM private key", key.display()))?;
    let certified = CertifiedKey::from_der(certs, key, &provider())
        .context("the TLS certificate and key (tls.cert_file, tls.key_file) do not match")?;
    Ok(Arc::new(certified))
}

fn generate_if_missing(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() && !too_old(&cert_path) {
        return Ok((cert_path, key_path));
    }
    crate::files::create_private_dir(dir)?;
    let names = vec![
        hostname.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let mut params =
        rcgen::CertificateParams::new(names).context("self-signed certificate names")?;
    let today = chrono::Utc::now().date_naive();
    let ymd = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(today - chrono::Days::new(1));
    params.not_after = ymd(today + chrono::Days::new(VALID_DAYS));
    let key = rcgen::KeyPair::generate().context("generating a TLS key")?;
    let cert = params
        .self_signed(&key)
        .context("generating a self-signed certificate")?;
    crate::files::write_private(&key_path, key.serialize_pem().as_bytes())?;
    crate::files::write_private(&cert_path, cert.pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok((cert_path, key_path))
}

/// Validity of a generated certificate.
const VALID_DAYS: u64 = 365;
/// A generated certificate is replaced at the first start after this many days.
const REGENERATE_AFTER_DAYS: u64 = 330;

/// Whether the generated certificate at `path` is due for replacement (by the age of
/// the file: it was written when it was generated).
fn too_old(path: &Path) -> bool {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    age.is_some_and(|a| a.as_secs() > REGENERATE_AFTER_DAYS * 86_400)
}
