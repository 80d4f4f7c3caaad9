//! [`StaticResolver`]: an in-memory [`Resolver`] for unit tests of callers (route
//! planning, delivery) that need DNS answers without sockets. It answers the way DNS
//! would: unknown names are NXDOMAIN, known names without MX (or TXT, CNAME) are
//! NODATA.

use crate::hickory::ip_literal;
use crate::mx::{mx_answer, normalize_host};
use crate::{DnsError, MxAnswer, Resolver, Security, TlsaAnswer, TlsaRecord};
use std::collections::HashMap;
use std::net::IpAddr;

/// What one name holds.
#[derive(Clone, Debug, Default)]
struct Entry {
    /// `(preference, exchange)`; `"."` is the Null MX marker.
    mx: Vec<(u16, String)>,
    ips: Vec<IpAddr>,
    /// Each TXT record's text (its character-strings already joined).
    txt: Vec<String>,
    /// Target of a CNAME at this name; TXT lookups follow it.
    cname: Option<String>,
    /// TLSA records of this host as an SMTP server, and how DNSSEC judged them.
    tlsa: Option<(Security, Vec<TlsaRecord>)>,
    /// How DNSSEC judged the name's MX RRset (or address records); unset: insecure.
    mx_security: Option<Security>,
    /// When set, every lookup of the name fails this way, whatever it holds.
    error: Option<DnsError>,
}

/// An in-memory resolver built in code:
///
/// ```
/// use mailroom_dns::{DnsError, StaticResolver};
/// let dns = StaticResolver::new()
///     .with_mx("example.com", 10, "mx1.example.com")
///     .with_ip("mx1.example.com", [192, 0, 2, 1])
///     .with_null_mx("nomail.example")
///     .with_error("broken.example", DnsError::ServFail("SERVFAIL".into()));
/// ```
///
/// Names are matched case-insensitively, with or without a trailing dot. MX ties are
/// shuffled like the real resolver's.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    names: HashMap<String, Entry>,
}

impl StaticResolver {
    /// No names at all: every lookup is NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        self.names.entry(normalize_host(name)).or_default()
    }

    /// Declares that `name` exists, without records of its own (MX gives
    /// [`MxAnswer::NoRecords`], addresses an empty list).
    pub fn with_name(mut self, name: &str) -> Self {
        self.entry(name);
        self
    }

    /// Adds an MX record `domain MX preference exchange`.
    pub fn with_mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        self.entry(domain)
            .mx
            .push((preference, exchange.to_string()));
        self
    }

    /// Publishes RFC 7505 Null MX (`MX 0 .`) for `domain`.
    pub fn with_null_mx(mut self, domain: &str) -> Self {
        self.entry(domain).mx.push((0, ".".to_string()));
        self
    }

    /// Adds an A or AAAA record for `host`.
    pub fn with_ip(mut self, host: &str, ip: impl Into<IpAddr>) -> Self {
        self.entry(host).ips.push(ip.into());
        self
    }

    /// Adds a TXT record `name TXT text` (the whole record's text, as the resolver
    /// returns it).
    pub fn with_txt(mut self, name: &str, text: &str) -> Self {
        self.entry(name).txt.push(text.to_string());
        self
    }

    /// Sets `name CNAME target` (one per name, as DNS allows).
    pub fn with_cname(mut self, name: &str, target: &str) -> Self {
        self.entry(name).cname = Some(normalize_host(target));
        self
    }

    /// Marks the MX RRset (or, without MX, the addresses) of `domain` as DNSSEC-judged
    /// `security` (unmarked names are insecure, like a non-validating resolver's).
    pub fn with_mx_security(mut self, domain: &str, security: Security) -> Self {
        self.entry(domain).mx_security = Some(security);
        self
    }

    /// Publishes TLSA records for SMTP at `host` (`_25._tcp.<host>`) with the DNSSEC
    /// status a validating resolver would give them (`Bogus`: the records are not
    /// returned, as a validating resolver would not return them).
    pub fn with_tlsa(mut self, host: &str, security: Security, records: Vec<TlsaRecord>) -> Self {
        self.entry(host).tlsa = Some((security, records));
        self
    }

    /// Makes every lookup of `name` fail with `error`.
    pub fn with_error(mut self, name: &str, error: DnsError) -> Self {
        self.entry(name).error = Some(error);
        self
    }

    fn lookup(&self, name: &str) -> Result<&Entry, DnsError> {
        let entry = self
            .names
            .get(&normalize_host(name))
            .ok_or(DnsError::NxDomain)?;
        match &entry.error {
            Some(e) => Err(e.clone()),
            None => Ok(entry),
        }
    }
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let entry = self.lookup(domain)?;
        Ok(mx_answer(entry.mx.iter().cloned(), &mut rand::rng()))
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let entry = self.lookup(host)?;
        // IPv4 first, then IPv6, as the hickory resolver returns them.
        let (mut v4, v6): (Vec<IpAddr>, Vec<IpAddr>) =
            entry.ips.iter().partition(|ip| ip.is_ipv4());
        v4.extend(v6);
        Ok(v4)
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let mut entry = self.lookup(name)?;
        // Follow a chain of CNAMEs, as a recursive resolver would (bounded, so a loop
        // in a test's data ends).
        for _ in 0..MAX_CNAME_CHAIN {
            match &entry.cname {
                Some(target) => entry = self.lookup(target)?,
                None => return Ok(entry.txt.clone()),
            }
        }
        Err(DnsError::ServFail("CNAME chain too long".to_string()))
    }

    async fn mx_security(&self, domain: &str) -> Result<Security, DnsError> {
        Ok(self
            .lookup(domain)?
            .mx_security
            .unwrap_or(Security::Insecure))
    }

    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError> {
        let base = normalize_host(host);
        let Some((security, records)) = self.lookup(host)?.tlsa.clone() else {
            return Ok(TlsaAnswer::insecure(&base));
        };
        Ok(match security {
            Security::Bogus => TlsaAnswer {
                security,
                records: Vec::new(),
                base,
                bogus_reason: Some("EDE 6 (DNSSEC bogus)".into()),
            },
            Security::Secure | Security::Insecure => TlsaAnswer {
                security,
                records,
                base,
                bogus_reason: None,
            },
        })
    }

    async fn cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        Ok(self.lookup(name)?.cname.clone())
    }
}

/// How many CNAMEs a TXT lookup follows before giving up.
const MAX_CNAME_CHAIN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MxHost;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn dns() -> StaticResolver {
        StaticResolver::new()
            .with_mx("Example.com.", 20, "MX2.example.com.")
            .with_mx("example.com", 10, "mx1.example.com")
            .with_ip("mx1.example.com", Ipv6Addr::LOCALHOST)
            .with_ip("mx1.example.com", [192, 0, 2, 1])
            .with_null_mx("nomail.example")
            .with_ip("bare.example", [192, 0, 2, 9])
            .with_name("empty.example")
            .with_error("broken.example", DnsError::ServFail("SERVFAIL".into()))
    }

    #[test]
    fn mx_sorted_and_normalised() {
        let got = block_on(dns().mx("EXAMPLE.COM")).unwrap();
        assert_eq!(
            got,
            MxAnswer::Hosts(vec![
                MxHost {
                    preference: 10,
                    exchange: "mx1.example.com".into()
                },
                MxHost {
                    preference: 20,
                    exchange: "mx2.example.com".into()
                },
            ])
        );
    }

    #[test]
    fn null_mx_nodata_nxdomain_and_errors() {
        let dns = dns();
        assert_eq!(block_on(dns.mx("nomail.example")), Ok(MxAnswer::NullMx));
        assert_eq!(block_on(dns.mx("bare.example")), Ok(MxAnswer::NoRecords));
        assert_eq!(block_on(dns.mx("nowhere.example")), Err(DnsError::NxDomain));
        assert_eq!(
            block_on(dns.ips("broken.example")),
            Err(DnsError::ServFail("SERVFAIL".into()))
        );
        assert_eq!(block_on(dns.ips("empty.example")), Ok(vec![]));
    }

    #[test]
    fn ips_v4_first_and_literals() {
        let dns = dns();
        assert_eq!(
            block_on(dns.ips("mx1.example.com.")).unwrap(),
            vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(
            block_on(dns.ips("[192.0.2.7]")).unwrap(),
            vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]
        );
    }

    #[test]
    fn txt_and_cname() {
        let dns = StaticResolver::new()
            .with_txt("example.com", "v=spf1 -all")
            .with_txt("example.com", "hello")
            .with_cname("s1._domainkey.example.com", "S1.Keys.Example.NET.")
            .with_txt("s1.keys.example.net", "v=DKIM1; p=abc")
            .with_cname("loop1.example", "loop2.example")
            .with_cname("loop2.example", "loop1.example")
            .with_error("broken.example", DnsError::Timeout);
        assert_eq!(
            block_on(dns.txt("EXAMPLE.com.")).unwrap(),
            vec!["v=spf1 -all".to_string(), "hello".to_string()]
        );
        assert_eq!(
            block_on(dns.cname("s1._domainkey.example.com")).unwrap(),
            Some("s1.keys.example.net".to_string())
        );
        assert_eq!(
            block_on(dns.txt("s1._domainkey.example.com")).unwrap(),
            vec!["v=DKIM1; p=abc".to_string()]
        );
        assert_eq!(block_on(dns.cname("example.com")), Ok(None));
        assert_eq!(
            block_on(dns.txt("s1.keys.example.net.")).map(|t| t.len()),
            Ok(1)
        );
        assert_eq!(
            block_on(dns.txt("nowhere.example")),
            Err(DnsError::NxDomain)
        );
        assert_eq!(block_on(dns.txt("broken.example")), Err(DnsError::Timeout));
        assert!(matches!(
            block_on(dns.txt("loop1.example")),
            Err(DnsError::ServFail(_))
        ));
    }

    #[test]
    fn usable_as_shared_trait_object() {
        let shared: std::sync::Arc<dyn Resolver> = std::sync::Arc::new(dns());
        assert_eq!(block_on(shared.mx("nomail.example")), Ok(MxAnswer::NullMx));
    }
}
