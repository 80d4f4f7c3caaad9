//! The [`Resolver`] trait: the only way the rest of Mailroom asks DNS anything, so a
//! test can hand the delivery side an in-memory resolver and a deployment a real one.

use crate::{DnsError, MxAnswer};
use std::net::IpAddr;
use std::sync::Arc;

/// Lookups the delivery side needs, with typed outcomes.
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
}

#[async_trait::async_trait]
impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        (**self).mx(domain).await
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        (**self).ips(host).await
    }
}
