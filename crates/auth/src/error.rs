//! [`AuthError`]: everything that can go wrong in signing, sealing and verifying, as one
//! typed error for callers. DNS outcomes of record checks are not errors: they are the
//! typed results of `checks`.

use crate::keys::KeyError;

/// Why a message could not be signed, verified or sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A key or selector was unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `sign` was given no keys.
    #[error("no DKIM keys given")]
    NoKeys,
    /// The signing domain is not an ASCII DNS name (give IDNA A-labels).
    #[error("invalid signing domain {0:?}")]
    Domain(String),
    /// The message has no `From:` header, which DKIM must sign (RFC 6376 §5.4).
    #[error("message has no From header")]
    NoFrom,
    /// The header section is not a sequence of `Name: value` fields.
    #[error("malformed message header (line {line})")]
    MalformedHeader {
        /// 1-based line number in the message.
        line: usize,
    },
    /// The message could not be parsed for verification.
    #[error("message could not be parsed")]
    Unparseable,
    /// `mail-auth` refused to sign or seal.
    #[error("signing failed: {0}")]
    Signing(String),
    /// ARC defines `rsa-sha256` only (RFC 8617 §4.1.3): sealing needs an RSA key.
    #[error("ARC sealing needs an RSA key")]
    ArcNeedsRsa,
    /// The message's ARC chain already failed (`cv=fail`): a new set must not be
    /// added (RFC 8617 §5.1.2).
    #[error("ARC chain already failed; the message cannot be sealed")]
    ArcChainFailed,
    /// The DNS resolver for verification could not be built.
    #[error("DNS resolver: {0}")]
    Resolver(String),
}
