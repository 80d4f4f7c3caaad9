//! DKIM keys: generation (Ed25519, RSA-2048), the text form the store keeps, the DNS
//! TXT value that publishes the public half, and selector names. Owns the mapping from
//! a stored key to a `mail-auth` signing key; does not sign (that is `sign`) and does
//! not store or rotate keys (the caller decides when to make a new one).
//!
//! **Stored form**: PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`, base64 in 64-column
//! lines, `\n` line ends). Ed25519 keys are written as PKCS#8 v2 (RFC 5958, with the
//! public key); v1 documents (as `openssl genpkey -algorithm ed25519` writes) load
//! too. RSA keys are PKCS#8 v1 `rsaEncryption`; only 2048-bit RSA keys load, since that
//! is the one RSA size this crate generates and publishes.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::crypto::{DkimKey as MailAuthKey, Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// The one RSA modulus size generated and accepted, in bits.
const RSA_BITS: usize = 2048;

/// Which kind of DKIM key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// `ed25519-sha256` (RFC 8463): short keys and signatures; not every verifier
    /// knows it yet, so sign with an RSA key beside it.
    Ed25519,
    /// `rsa-sha256` with a 2048-bit modulus (RFC 8301 recommends at least 2048).
    Rsa2048,
}

impl KeyAlgorithm {
    /// The `k=` tag value of the DNS record: `ed25519` or `rsa`.
    pub fn dns_k(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa",
        }
    }

    /// The one-letter suffix of generated selectors: `e` or `r`.
    fn selector_suffix(self) -> char {
        match self {
            KeyAlgorithm::Ed25519 => 'e',
            KeyAlgorithm::Rsa2048 => 'r',
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
        })
    }
}

/// Why a key could not be made, loaded or named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not one PEM `PRIVATE KEY` block with valid base64.
    #[error("not a PKCS#8 PEM private key: {0}")]
    Pem(&'static str),
    /// The DER inside is neither an Ed25519 nor an RSA PKCS#8 private key.
    #[error("unsupported or malformed private key (expected Ed25519 or RSA PKCS#8)")]
    Unsupported,
    /// An RSA key of another size than 2048 bits.
    #[error("RSA key of {0} bits; only 2048-bit RSA keys are supported")]
    RsaSize(usize),
    /// The crypto library failed to generate or load a key.
    #[error("crypto library: {0}")]
    Crypto(String),
    /// A selector that cannot be a DKIM selector (RFC 6376 §3.1: dot-separated DNS
    /// labels of letters, digits and hyphens, at most 63 octets each).
    #[error("invalid DKIM selector {0:?}")]
    Selector(String),
}

/// A DKIM private key with its public half, ready to sign.
///
/// Made with [`DkimKey::generate`] or loaded with [`DkimKey::from_pem`]; kept by the
/// caller as the string of [`DkimKey::to_pem`]. `Debug` never shows the private key.
pub struct DkimKey {
    algorithm: KeyAlgorithm,
    /// PKCS#8 DER of the private key: the stored form, before PEM armour.
    pkcs8: Vec<u8>,
    /// What `p=` publishes: the raw 32-octet key for Ed25519 (RFC 8463 §4.2), the
    /// DER SubjectPublicKeyInfo for RSA (what `openssl rsa -pubout` writes and every
    /// verifier reads).
    public: Vec<u8>,
    /// The parsed key `mail-auth` signs with, so signing does not parse it each time.
    signer: MailAuthKey,
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm)
            .field("public", &B64.encode(&self.public))
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// A new random key of `algorithm`. RSA-2048 generation takes tens to hundreds of
    /// milliseconds: do not call it on a latency-sensitive path.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let pkcs8 = match algorithm {
            KeyAlgorithm::Ed25519 => {
                Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                    .map_err(|e| KeyError::Crypto(e.to_string()))?
                    .as_ref()
                    .to_vec()
            }
            KeyAlgorithm::Rsa2048 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|e| KeyError::Crypto(e.to_string()))?;
                let der: Pkcs8V1Der<'static> =
                    pair.as_der().map_err(|e| KeyError::Crypto(e.to_string()))?;
                der.as_ref().to_vec()
            }
        };
        Self::from_pkcs8_der(&pkcs8)
    }

    /// Loads a key from PKCS#8 DER, finding out its algorithm.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let public = pair.public_key().as_ref().to_vec();
            let signer = Ed25519Key::from_pkcs8_maybe_unchecked_der(der)
                .map_err(|e| KeyError::Crypto(e.to_string()))?;
            return Ok(Self {
                algorithm: KeyAlgorithm::Ed25519,
                pkcs8: der.to_vec(),
                public,
                signer: MailAuthKey::Ed25519(signer),
            });
        }
        let pair = RsaKeyPair::from_pkcs8(der).map_err(|_| KeyError::Unsupported)?;
        let bits = pair.public_modulus_len() * 8;
        if bits != RSA_BITS {
            return Err(KeyError::RsaSize(bits));
        }
        let spki: PublicKeyX509Der<'static> = pair
            .public_key()
            .as_der()
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let signer =
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(Self {
            algorithm: KeyAlgorithm::Rsa2048,
            pkcs8: der.to_vec(),
            public: spki.as_ref().to_vec(),
            signer: MailAuthKey::Rsa(signer),
        })
    }

    /// Loads a key from the text of [`to_pem`](Self::to_pem) (surrounding whitespace
    /// and `\r\n` line ends are fine).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(&pem_decode(text)?)
    }

    /// The stored form: PKCS#8 PEM (see the module documentation).
    pub fn to_pem(&self) -> String {
        let b64 = B64.encode(&self.pkcs8);
        let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
        out.push_str(PEM_BEGIN);
        out.push('\n');
        for chunk in b64.as_bytes().chunks(64) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str(PEM_END);
        out.push('\n');
        out
    }

    /// Which kind of key this is.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as published in `p=`, base64.
    pub fn public_base64(&self) -> String {
        B64.encode(&self.public)
    }

    /// The TXT value to publish at `<selector>._domainkey.<domain>`:
    /// `v=DKIM1; k=ed25519; p=…` or `v=DKIM1; k=rsa; p=…`.
    pub fn public_txt(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.dns_k(),
            self.public_base64()
        )
    }

    /// The key `mail-auth` signs with.
    pub(crate) fn signer(&self) -> &MailAuthKey {
        &self.signer
    }
}

/// The selector Mailroom names a key made in `year`/`month` with: `mr<yyyymm>e` for
/// Ed25519, `mr<yyyymm>r` for RSA (e.g. `mr202607e`), so a rotation gets a new name
/// each month and the two algorithms never share one.
pub fn selector_for(algorithm: KeyAlgorithm, year: u16, month: u8) -> String {
    format!(
        "mr{year:04}{:02}{}",
        month.clamp(1, 12),
        algorithm.selector_suffix()
    )
}

/// Checks that `selector` can be a DKIM selector and returns it lowercased (DNS is
/// case-insensitive; one spelling keeps records and signatures alike).
pub fn validate_selector(selector: &str) -> Result<String, KeyError> {
    let bad = || KeyError::Selector(selector.to_string());
    if selector.is_empty() || selector.len() > 253 {
        return Err(bad());
    }
    for label in selector.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(selector.to_ascii_lowercase())
}

/// The DER inside one PEM `PRIVATE KEY` block.
fn pem_decode(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    let body = text
        .strip_prefix(PEM_BEGIN)
        .ok_or(KeyError::Pem("missing BEGIN PRIVATE KEY line"))?
        .strip_suffix(PEM_END)
        .ok_or(KeyError::Pem("missing END PRIVATE KEY line"))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if b64.is_empty() {
        return Err(KeyError::Pem("empty key"));
    }
    B64.decode(b64.as_bytes())
        .map_err(|_| KeyError::Pem("invalid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_round_trips_through_pem() {
        let key = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = DkimKey::from_pem(&pem).unwrap();
        assert_eq!(back.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(back.public_txt(), key.public_txt());
        // Raw 32-octet public key.
        assert_eq!(B64.decode(key.public_base64()).unwrap().len(), 32);
        assert!(key.public_txt().starts_with("v=DKIM1; k=ed25519; p="));
        // CRLF line ends and surrounding blank lines are tolerated.
        let crlf = format!("\r\n{}\r\n", pem.replace('\n', "\r\n"));
        assert_eq!(
            DkimKey::from_pem(&crlf).unwrap().public_txt(),
            key.public_txt()
        );
    }

    #[test]
    fn rsa_round_trips_through_pem() {
        let key = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let back = DkimKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(back.algorithm(), KeyAlgorithm::Rsa2048);
        assert_eq!(back.public_txt(), key.public_txt());
        let txt = key.public_txt();
        // A SubjectPublicKeyInfo of a 2048-bit key starts "MIIBIjAN".
        assert!(txt.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "{txt}");
        assert!(!format!("{key:?}").contains(&key.to_pem()[30..60]));
    }

    #[test]
    fn two_keys_differ() {
        let a = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let b = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_ne!(a.public_txt(), b.public_txt());
    }

    #[test]
    fn bad_stored_keys_are_typed_errors() {
        assert_eq!(
            DkimKey::from_pem("hello").unwrap_err(),
            KeyError::Pem("missing BEGIN PRIVATE KEY line")
        );
        assert_eq!(
            DkimKey::from_pem("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            KeyError::Pem("invalid base64")
        );
        assert_eq!(
            DkimKey::from_pem("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            KeyError::Pem("empty key")
        );
        assert_eq!(
            DkimKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            KeyError::Unsupported
        );
        let key = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let pem = key.to_pem();
        assert!(DkimKey::from_pem(&pem[..pem.len() - 10]).is_err());
    }

    #[test]
    fn other_rsa_sizes_are_refused() {
        let pair = RsaKeyPair::generate(KeySize::Rsa3072).unwrap();
        let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        assert_eq!(
            DkimKey::from_pkcs8_der(der.as_ref()).unwrap_err(),
            KeyError::RsaSize(3072)
        );
    }

    #[test]
    fn selectors() {
        assert_eq!(selector_for(KeyAlgorithm::Ed25519, 2026, 7), "mr202607e");
        assert_eq!(selector_for(KeyAlgorithm::Rsa2048, 2026, 12), "mr202612r");
        assert_eq!(validate_selector("MR202607e").unwrap(), "mr202607e");
        assert_eq!(validate_selector("a.b-c").unwrap(), "a.b-c");
        for bad in ["", "a..b", "-a", "a_b", "a b", "é", &"x".repeat(64)] {
            assert!(validate_selector(bad).is_err(), "{bad:?}");
        }
    }
}
