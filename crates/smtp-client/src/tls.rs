//! rustls client configurations for STARTTLS, all on the aws-lc-rs provider:
//! one that checks certificates against webpki-roots (plus an optional extra
//! root), and one for opportunistic and "required but unverified" TLS that
//! accepts any certificate yet still checks the handshake signatures, so the
//! session keys belong to whoever holds the certificate's key. Also the TLS
//! server name to present and the version names reported to callers.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::TlsMode;
use crate::dane::{DaneTlsa, DaneVerifier};
use crate::error::ClientError;

type Shared = Result<Arc<rustls::ClientConfig>, String>;

static UNVERIFIED: OnceLock<Shared> = OnceLock::new();
static VERIFIED: OnceLock<Shared> = OnceLock::new();

/// The rustls configuration for `mode` (never called with [`TlsMode::None`]).
/// Configurations without an extra root are built once per process, so TLS
/// session resumption works across connections.
pub(crate) fn client_config(
    mode: TlsMode,
    extra_root: Option<&CertificateDer<'static>>,
    dane: Option<&DaneTlsa>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    if let (TlsMode::Verify, Some(dane)) = (mode, dane) {
        return dane_config(dane).map_err(ClientError::Tls);
    }
    let shared = match (mode, extra_root) {
        (TlsMode::Verify, Some(root)) => verified(Some(root)),
        (TlsMode::Verify, None) => VERIFIED.get_or_init(|| verified(None)).clone(),
        (TlsMode::None | TlsMode::Opportunistic | TlsMode::Required, _) => {
            UNVERIFIED.get_or_init(unverified).clone()
        }
    };
    shared.map_err(ClientError::Tls)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn verified(extra_root: Option<&CertificateDer<'static>>) -> Shared {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(root) = extra_root {
        roots
            .add(root.clone())
            .map_err(|e| format!("extra root certificate: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A configuration whose certificate check is the TLSA match (built per connection:
/// no session is resumed past a check made against other records).
fn dane_config(dane: &DaneTlsa) -> Shared {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DaneVerifier::new(dane.clone(), provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that accepts any certificate while still checking that the
/// handshake was signed by the presented key: what opportunistic TLS toward MX hosts
/// uses, and what the bench tool and tests use against self-signed servers.
pub fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    unverified()
}

fn unverified() -> Shared {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to present and, in [`TlsMode::Verify`], to check the certificate
/// against. Without verification an unusable name falls back to the peer's IP.
pub(crate) fn server_name(
    host: &str,
    peer: IpAddr,
    mode: TlsMode,
) -> Result<ServerName<'static>, ClientError> {
    let host = host.strip_suffix('.').unwrap_or(host);
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Ok(name),
        Err(e) if mode == TlsMode::Verify => Err(ClientError::Tls(format!(
            "invalid TLS server name {host:?}: {e}"
        ))),
        Err(_) => Ok(ServerName::IpAddress(peer.into())),
    }
}

/// "TLSv1.3" and the like.
pub(crate) fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1.0",
        _ => "TLS",
    }
}

/// Trusts any certificate chain; checks that the handshake was signed with
/// the key of the presented certificate, using the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn configs_build() {
        assert!(client_config(TlsMode::Verify, None, None).is_ok());
        assert!(client_config(TlsMode::Required, None, None).is_ok());
        let junk = CertificateDer::from(vec![1, 2, 3]);
        assert!(matches!(
            client_config(TlsMode::Verify, Some(&junk), None),
            Err(ClientError::Tls(_))
        ));
    }

    #[test]
    fn server_names() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            server_name("mx.example.org.", ip, TlsMode::Verify).unwrap(),
            ServerName::try_from("mx.example.org").unwrap()
        );
        assert!(server_name("", ip, TlsMode::Verify).is_err());
        assert_eq!(
            server_name("", ip, TlsMode::Required).unwrap(),
            ServerName::IpAddress(ip.into())
        );
    }
}
