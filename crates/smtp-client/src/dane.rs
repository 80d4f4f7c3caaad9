//! DANE for SMTP (RFC 7672 §3): a rustls [`ServerCertVerifier`] that accepts the
//! server's certificate chain exactly when a usable TLSA record matches it.
//!
//! - DANE-EE(3): the end-entity certificate (selector 0) or its public key (selector
//!   1) matches; no name, expiry or chain check (RFC 7672 §3.1.1).
//! - DANE-TA(2): a certificate the server sent in its chain matches; the chain from
//!   the end entity to that certificate must validate (webpki, with that certificate
//!   as the only trust anchor) and the end entity must name one of the reference
//!   identifiers (the MX host, or the TLSA base domain after CNAME) (§3.1.2, §3.2.2).
//!
//! Matching types 0 (exact), 1 (SHA-256), 2 (SHA-512). Records of other usages,
//! selectors or matching types are not usable and are left out by the caller
//! ([`DaneTlsa::usable`]). Handshake signatures are checked with the provider's
//! algorithms as for any TLS. No I/O.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha512};

/// One TLSA record's fields (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether RFC 7672 lets an SMTP client use this record: DANE-TA(2) or
    /// DANE-EE(3), selector 0 or 1, matching 0, 1 or 2 (PKIX usages 0 and 1 are
    /// "unusable" for SMTP, §3.1.3).
    pub fn is_usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    /// Whether the certificate `der` matches this record's selector and data.
    fn matches(&self, der: &[u8]) -> bool {
        let selected: &[u8] = match self.selector {
            0 => der,
            1 => match spki(der) {
                Some(spki) => spki,
                None => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// The SubjectPublicKeyInfo (DER, as in the certificate) of a certificate.
fn spki(der: &[u8]) -> Option<&[u8]> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw)
}

/// The usable TLSA records of an MX host and the names its certificate may carry
/// under DANE-TA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneTlsa {
    /// Usable records only (see [`Tlsa::is_usable`]); never empty when used.
    pub records: Vec<Tlsa>,
    /// Reference identifiers for DANE-TA: the MX host name and the TLSA base domain
    /// (the CNAME target), lowercase, without trailing dot.
    pub names: Vec<String>,
}

impl DaneTlsa {
    /// Keeps the usable records of `records`; `None` when none is usable.
    pub fn usable(records: Vec<Tlsa>, names: Vec<String>) -> Option<Self> {
        let records: Vec<Tlsa> = records.into_iter().filter(Tlsa::is_usable).collect();
        (!records.is_empty()).then_some(Self { records, names })
    }
}

/// The verifier for one connection to one MX host.
#[derive(Debug)]
pub(crate) struct DaneVerifier {
    tlsa: DaneTlsa,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    pub(crate) fn new(tlsa: DaneTlsa, provider: Arc<CryptoProvider>) -> Self {
        Self { tlsa, provider }
    }

    /// DANE-TA: the chain from `end_entity` to `anchor` validates and names a
    /// reference identifier.
    fn chain_to(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(anchor.clone().into_owned())
            .map_err(|e| format!("trust anchor: {e}"))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let mut last = "no reference identifier".to_string();
        for name in &self.tlsa.names {
            let Ok(server_name) = ServerName::try_from(name.clone()) else {
                continue;
            };
            match verifier.verify_server_cert(end_entity, intermediates, &server_name, &[], now) {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .tlsa
            .records
            .iter()
            .any(|t| t.usage == 3 && t.matches(end_entity))
        {
            return Ok(ServerCertVerified::assertion());
        }
        let mut why =
            "DANE: no TLSA record matches the certificate chain (tlsa-invalid)".to_string();
        for t in self.tlsa.records.iter().filter(|t| t.usage == 2) {
            for anchor in intermediates.iter().filter(|c| t.matches(c)) {
                match self.chain_to(anchor, end_entity, intermediates, now) {
                    Ok(()) => return Ok(ServerCertVerified::assertion()),
                    Err(e) => {
                        why = format!(
                            "DANE: DANE-TA matched but the chain failed (tlsa-invalid): {e}"
                        )
                    }
                }
            }
        }
        Err(rustls::Error::General(why))
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    struct Chain {
        ca: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
    }

    fn chain(names: &[&str]) -> Chain {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        Chain {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
        }
    }

    fn verifier(records: Vec<Tlsa>, names: &[&str]) -> DaneVerifier {
        DaneVerifier::new(
            DaneTlsa {
                records,
                names: names.iter().map(|n| n.to_string()).collect(),
            },
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
    }

    fn check(v: &DaneVerifier, c: &Chain, with_ca: bool) -> Result<(), String> {
        let name = ServerName::try_from("ignored.example").unwrap();
        let inter = if with_ca { vec![c.ca.clone()] } else { vec![] };
        v.verify_server_cert(&c.leaf, &inter, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn tlsa(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    #[test]
    fn dane_ee_matches_key_or_certificate_by_every_matching_type() {
        let c = chain(&["other-name.example"]);
        let key = spki(&c.leaf).unwrap().to_vec();
        for record in [
            tlsa(3, 1, 1, Sha256::digest(&key).to_vec()),
            tlsa(3, 1, 2, Sha512::digest(&key).to_vec()),
            tlsa(3, 1, 0, key.clone()),
            tlsa(3, 0, 1, Sha256::digest(c.leaf.as_ref()).to_vec()),
            tlsa(3, 0, 0, c.leaf.to_vec()),
        ] {
            // DANE-EE: no name check (the certificate names something else).
            assert_eq!(
                check(&verifier(vec![record.clone()], &["mx.example"]), &c, false),
                Ok(()),
                "{record:?}"
            );
        }
    }

    #[test]
    fn wrong_digest_is_refused() {
        let c = chain(&["mx.example"]);
        let err = check(
            &verifier(vec![tlsa(3, 1, 1, vec![0; 32])], &["mx.example"]),
            &c,
            true,
        )
        .unwrap_err();
        assert!(err.contains("tlsa-invalid"), "{err}");
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_the_name() {
        let c = chain(&["mx.example"]);
        let ta = tlsa(2, 1, 1, Sha256::digest(spki(&c.ca).unwrap()).to_vec());
        assert_eq!(
            check(&verifier(vec![ta.clone()], &["mx.example"]), &c, true),
            Ok(())
        );
        // Also by the TLSA base name (CNAME target).
        assert_eq!(
            check(
                &verifier(vec![ta.clone()], &["alias.example", "mx.example"]),
                &c,
                true
            ),
            Ok(())
        );
        // The name must match.
        let err = check(&verifier(vec![ta.clone()], &["mx.other"]), &c, true).unwrap_err();
        assert!(err.contains("chain failed"), "{err}");
        // The server must send the anchor.
        assert!(check(&verifier(vec![ta], &["mx.example"]), &c, false).is_err());
        // A TA record never matches the leaf itself as EE.
        let leaf_as_ta = tlsa(2, 0, 1, Sha256::digest(c.leaf.as_ref()).to_vec());
        assert!(check(&verifier(vec![leaf_as_ta], &["mx.example"]), &c, true).is_err());
    }

    #[test]
    fn only_dane_usages_are_usable() {
        assert!(tlsa(3, 1, 1, vec![1]).is_usable());
        assert!(tlsa(2, 0, 2, vec![1]).is_usable());
        assert!(!tlsa(1, 1, 1, vec![1]).is_usable());
        assert!(!tlsa(0, 1, 1, vec![1]).is_usable());
        assert!(!tlsa(3, 2, 1, vec![1]).is_usable());
        assert!(!tlsa(3, 1, 3, vec![1]).is_usable());
        assert_eq!(DaneTlsa::usable(vec![tlsa(1, 1, 1, vec![1])], vec![]), None);
        assert_eq!(
            DaneTlsa::usable(vec![tlsa(1, 1, 1, vec![1]), tlsa(3, 1, 1, vec![2])], vec![])
                .unwrap()
                .records
                .len(),
            1
        );
    }
}
