//! The typed outcomes of a lookup: what an MX query found ([`MxAnswer`]) and what went
//! wrong ([`DnsError`]). No I/O here; every resolver implementation returns these.

use std::fmt;

/// One mail exchanger of a domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MxHost {
    /// Lower is tried first (RFC 5321 §5.1).
    pub preference: u16,
    /// Host name in lowercase ASCII (IDNA A-labels), without the trailing dot, so it can
    /// be used directly for address lookups, TLS server names and reporting.
    pub exchange: String,
}

impl fmt::Display for MxHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.preference, self.exchange)
    }
}

/// What an MX query for a domain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// Mail exchangers sorted by preference, ties in random order (RFC 5321 §5.1).
    /// Never empty.
    Hosts(Vec<MxHost>),
    /// RFC 7505 Null MX: the domain's only MX is "." — it accepts no mail.
    NullMx,
    /// The domain exists but has no MX record (NOERROR/NODATA): deliver to the domain's
    /// own A/AAAA addresses (implicit MX, RFC 5321 §5.1).
    NoRecords,
}

/// How far an answer can be trusted, as a DNSSEC-validating resolver judged it
/// (RFC 4035 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Validated from a trust anchor down (the AD bit of a validating resolver).
    Secure,
    /// Provably unsigned, or from a resolver that does not validate: DANE does not apply.
    Insecure,
    /// Signed but failing validation (a validating resolver's SERVFAIL with an
    /// extended DNS error saying so, RFC 8914): never to be used, never a reason to
    /// fall back to less security.
    Bogus,
}

impl Security {
    /// `secure`, `insecure` or `bogus`.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
            Security::Bogus => "bogus",
        }
    }
}

/// One TLSA record (RFC 6698 §2.1), fields as published.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 whole certificate, 1 SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    /// Certificate association data.
    pub data: Vec<u8>,
}

impl fmt::Display for TlsaRecord {
    /// Presentation form: `3 1 1 0a1b…` (hex in lowercase).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        self.data.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What a TLSA lookup for an SMTP server found (RFC 7672 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaAnswer {
    /// The DNSSEC status of the answer that counted.
    pub security: Security,
    /// The records (empty: none published, or bogus).
    pub records: Vec<TlsaRecord>,
    /// The TLSA base domain the records were found at: the MX host, or the target of
    /// its (secure) CNAME. Also a reference identifier for DANE-TA name checks.
    pub base: String,
    /// For a bogus answer, what the resolver said (its extended DNS error).
    pub bogus_reason: Option<String>,
}

impl TlsaAnswer {
    /// No usable DNSSEC: what a resolver that does not validate always says.
    pub fn insecure(base: &str) -> Self {
        Self {
            security: Security::Insecure,
            records: Vec::new(),
            base: base.to_string(),
            bogus_reason: None,
        }
    }
}

/// Why a lookup gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN). Also returned for a name that cannot be a
    /// DNS name at all (an empty label, a label over 63 octets, invalid IDNA), since
    /// no later attempt can find it either.
    #[error("name does not exist (NXDOMAIN)")]
    NxDomain,
    /// SERVFAIL, REFUSED, any other error response code, or a transport failure
    /// (connection refused, malformed reply). Worth retrying later.
    #[error("DNS failure: {0}")]
    ServFail(String),
    /// No name server answered in time.
    #[error("DNS timeout")]
    Timeout,
}

impl DnsError {
    /// True when asking again later cannot change the answer. Exhaustive on purpose: a
    /// new variant must decide here before anything compiles.
    pub fn is_permanent(&self) -> bool {
        match self {
            DnsError::NxDomain => true,
            DnsError::ServFail(_) => false,
            DnsError::Timeout => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nxdomain_is_permanent() {
        assert!(DnsError::NxDomain.is_permanent());
        assert!(!DnsError::ServFail("SERVFAIL".into()).is_permanent());
        assert!(!DnsError::Timeout.is_permanent());
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            DnsError::ServFail("REFUSED".into()).to_string(),
            "DNS failure: REFUSED"
        );
        assert_eq!(
            MxHost {
                preference: 10,
                exchange: "mx.example.com".into()
            }
            .to_string(),
            "10 mx.example.com"
        );
    }
}
