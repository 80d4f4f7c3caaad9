//! The [`Resolver`] trait: the only way the rest of Mailroom asks DNS anything, so a
//! test can hand the delivery side (MX, addresses) and the domain checks of `auth`
//! (TXT, CNAME) an in-memory resolver and a deployment a real one.

use crate::{DnsError, MxAnswer, Security, TlsaAnswer};
use std::net::IpAddr;
use std::sync::Arc;

/// Lookups the delivery side and the domain record checks need, with typed outcomes.
///
/// Names are taken as absolute (no search domains are ever appended), may be given
/// with or without a trailing dot, in any case, as A-labels or U-labels.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// MX records sorted by preference (ties in random order), or what happened.
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError>;

    /// A and AAAA addresses of a host: IPv4 first, then IPv6, each in the order DNS
    /// gave them. A host that exists but has neither gives `Ok` with an empty list.
    /// An IP literal is returned as is, without a query.
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError>;

    /// TXT records of a name, one string per record: the record's character-strings
    /// concatenated without separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2), bytes that
    /// are not UTF-8 replaced by U+FFFD. A name that exists without TXT records
    /// (NODATA) gives `Ok` with an empty list. A CNAME at the name is followed.
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError>;

    /// The CNAME target of a name (lowercase, no trailing dot), or `Ok(None)` when the
    /// name exists without a CNAME (NODATA).
    async fn cname(&self, name: &str) -> Result<Option<String>, DnsError>;

    /// The TLSA records of an SMTP server (RFC 7672 §2.2.2): at `_25._tcp.<host>`, or
    /// first at `_25._tcp.<target>` when `host` is a secure CNAME, with the DNSSEC
    /// status of the answer. A bogus answer is `Ok` with [`Security::Bogus`]; SERVFAIL
    /// and timeouts are errors (both mean: do not deliver now).
    ///
    /// The default is what a resolver that does not validate DNSSEC can honestly say:
    /// insecure, no records, so DANE never applies through it.
    ///
    /// [`Security::Bogus`]: crate::Security::Bogus
    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError> {
        Ok(TlsaAnswer::insecure(host))
    }

    /// The DNSSEC status of a domain's MX RRset, or, when it has no MX records, of its
    /// address records (RFC 7672 §2.2.1: DANE applies only to MX hosts learnt
    /// securely). `Ok(Security::Bogus)` when the answer failed validation; SERVFAIL
    /// and timeouts are errors.
    ///
    /// The default, for a resolver that does not validate: insecure.
    async fn mx_security(&self, domain: &str) -> Result<Security, DnsError> {
        let _ = domain;
        Ok(Security::Insecure)
    }
}

#[async_trait::async_trait]
impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        (**self).mx(domain).await
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        (**self).ips(host).await
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        (**self).txt(name).await
    }

    async fn cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        (**self).cname(name).await
    }

    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError> {
        (**self).tlsa(host).await
    }

    async fn mx_security(&self, domain: &str) -> Result<Security, DnsError> {
        (**self).mx_security(domain).await
    }
}
