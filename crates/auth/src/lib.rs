//! Sender authentication for outgoing mail, on top of `mail-auth` (DKIM, ARC, SPF,
//! DMARC): DKIM keys and signing, ARC sealing of passed-on mail, and the DNS records a
//! tenant must publish with checks of what is really there. A library only: it
//! decides nothing about acceptance and stores nothing; `ingest`, `store` and `api`
//! call it.
//!
//! # Keys (`keys`)
//!
//! ```text
//! DkimKey::generate(KeyAlgorithm::{Ed25519, Rsa2048}) -> Result<DkimKey, KeyError>
//! DkimKey::to_pem(&self) -> String                       // the stored form (TEXT)
//! DkimKey::from_pem(&str) -> Result<DkimKey, KeyError>   // algorithm detected
//! DkimKey::from_pkcs8_der(&[u8]) -> Result<DkimKey, KeyError>
//! DkimKey::public_txt(&self) -> String     // "v=DKIM1; k=ed25519; p=…" / "k=rsa"
//! DkimKey::public_base64(&self) -> String  // the p= value
//! DkimKey::algorithm(&self) -> KeyAlgorithm
//! selector_for(KeyAlgorithm, year: u16, month: u8) -> String   // "mr202607e" / "…r"
//! validate_selector(&str) -> Result<String, KeyError>          // lowercased
//! ```
//!
//! Stored form: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Ed25519 is PKCS#8 v2
//! (v1 loads too), RSA is 2048-bit only. `p=` is the raw 32-octet key for Ed25519 and
//! the DER SubjectPublicKeyInfo for RSA.
//!
//! # Signing (`sign`)
//!
//! ```text
//! sign(message: &[u8], domain: &str, keys: &[(&str /*selector*/, &DkimKey)])
//!     -> Result<Vec<u8>, AuthError>       // one DKIM-Signature per key, prepended
//! signature_headers(message, domain, keys) -> Result<String, AuthError>  // just them
//! SIGNED_HEADERS: [&str; 10]
//! ```
//!
//! relaxed/relaxed; signs those of From, To, Cc, Subject, Date, Message-ID, Reply-To,
//! MIME-Version, Content-Type, Content-Transfer-Encoding that are present, and
//! over-signs From. `t=` comes from the system clock (`mail-auth` takes no clock).
//!
//! # Verifying and ARC sealing (`arc`)
//!
//! ```text
//! Authenticator::with_nameservers(&[SocketAddr], Duration) -> Result<Authenticator, AuthError>
//! Authenticator::system() -> Result<Authenticator, AuthError>
//! Authenticator::from_mail_auth(MessageAuthenticator) -> Authenticator
//! verify(&Authenticator, message, &SmtpContext { client_ip, helo, mail_from }, authserv_id)
//!     .await -> Result<AuthSummary { dkim: Vec<DkimCheck>, arc, spf, dmarc: Outcome,
//!                                    header: String /* Authentication-Results: … */ }, AuthError>
//! verify_and_seal(&Authenticator, message, &SmtpContext, authserv_id,
//!                 &ArcSealKey { domain, selector, key })
//!     .await -> Result<Sealed { message: Vec<u8>, summary: AuthSummary }, AuthError>
//! ```
//!
//! The seal (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) is
//! prepended to the message as received; the key must be RSA (RFC 8617).
//!
//! # Records and checks (`records`, `checks`)
//!
//! ```text
//! expected_records(domain, token, dkim: &[(&str, &DkimKey)], &RecordOptions)
//!     -> Vec<ExpectedRecord { kind: RecordKind, rtype: RecordType, name, value }>
//! render_zone_file(&[ExpectedRecord]) -> String          // BIND lines
//! check_record(&impl Resolver, &ExpectedRecord).await -> RecordCheck
//!     // Correct | Missing | WrongValue(found) | Temporary(reason)
//! check_records(&impl Resolver, &[ExpectedRecord]).await -> Vec<RecordCheck>
//! verify_domain(&impl Resolver, domain, token).await -> Verification
//!     // Verified | Failed(FailReason::{Missing, WrongValue{found}, FoundAtWrongName{name}})
//!     // | TemporaryFailure(reason)
//! verify_domain_with(&impl Resolver, domain, token, &RecordOptions).await -> Verification
//! ```
//!
//! `RecordOptions` holds the operator's choices: verification label (`_mailroom`),
//! return-path label (`bounces`) and MX host (else this server's `hostname`, reached
//! when it runs an intake listener), SPF as `include:` or egress addresses, an optional
//! DKIM CNAME zone, an optional DMARC `rua`. `record_problem` says which expected
//! record would not work as configured (an MX with nothing behind it, loopback-only SPF).
//!
//! Errors are typed ([`AuthError`], [`KeyError`]); no function panics on input.

mod arc;
mod checks;
mod error;
mod keys;
mod records;
mod sign;

pub use arc::{
    ArcSealKey, AuthSummary, Authenticator, DkimCheck, Outcome, Sealed, SmtpContext, verify,
    verify_and_seal,
};
pub use checks::{
    FailReason, RecordCheck, Verification, check_record, check_records, verify_domain,
    verify_domain_with,
};
pub use error::AuthError;
pub use keys::{DkimKey, KeyAlgorithm, KeyError, selector_for, validate_selector};
pub use records::{
    ExpectedRecord, RecordKind, RecordOptions, RecordType, SpfAuthorization, expected_records,
    record_problem, render_zone_file, return_path_host, return_path_problem, spf_mechanisms,
    spf_only_loopback, verification_name, verification_value,
};
pub use sign::{SIGNED_HEADERS, sign, signature_headers};
