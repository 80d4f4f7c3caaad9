//! [`HickoryResolver`]: the production [`Resolver`], a hickory stub resolver over plain
//! UDP with TCP fallback on truncation (MX, A/AAAA, TXT, CNAME), either on the system's name servers or on an
//! explicit list (socket addresses, ports included). Owns the mapping from hickory's
//! errors to [`DnsError`]; keeps hickory's TTL-respecting cache as is.

use crate::mx::{mx_answer, normalize_host};
use crate::secure::{SecureLookup, SecureQuery};
use crate::{DnsError, MxAnswer, Resolver, Security, TlsaAnswer, TlsaRecord};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a [`HickoryResolver`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverInitError {
    /// `with_nameservers` was given an empty list.
    #[error("no DNS name servers given")]
    NoNameservers,
    /// The system configuration (`/etc/resolv.conf`) could not be read or parsed.
    #[error("reading the system DNS configuration: {0}")]
    SystemConfig(String),
    /// hickory refused the configuration.
    #[error("building the DNS resolver: {0}")]
    Build(String),
}

/// How patient a resolver on explicit name servers is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameserverOptions {
    /// How long one try may take, across all the configured servers together.
    pub timeout: Duration,
    /// Tries per query in total, the first included (0 counts as 1). Timeouts,
    /// SERVFAIL and transport errors are retried; NXDOMAIN and NODATA never are.
    pub attempts: usize,
}

impl Default for NameserverOptions {
    /// 5 s per try, 2 tries: a lookup gives up after about 10 s.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// A [`Resolver`] on hickory. Cheap to clone: clones share one cache and one set of
/// connections.
#[derive(Clone)]
pub struct HickoryResolver {
    inner: TokioResolver,
    /// Outer bound on one lookup, on top of hickory's own per-try timeout, so no lookup
    /// can outlive its configuration whatever happens inside hickory.
    deadline: Duration,
    /// The name servers queried (for [`trust_ad`](HickoryResolver::trust_ad)).
    servers: Vec<SocketAddr>,
    /// Set by [`trust_ad`](HickoryResolver::trust_ad) (`dns.dnssec = true`): TLSA
    /// lookups go to these validating resolvers and their AD bit is believed.
    secure: Option<SecureQuery>,
}

impl fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HickoryResolver")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl HickoryResolver {
    /// Uses the operating system's configuration (`/etc/resolv.conf`: name servers,
    /// timeout, attempts) and the hosts file. Search domains are never applied: every
    /// name is queried as absolute.
    pub fn system() -> Result<Self, ResolverInitError> {
        let builder = TokioResolver::builder_tokio()
            .map_err(|e| ResolverInitError::SystemConfig(e.to_string()))?;
        let inner = builder
            .build()
            .map_err(|e| ResolverInitError::Build(e.to_string()))?;
        // The same file again, for the servers' addresses (hickory does not show them).
        let servers = hickory_resolver::system_conf::read_system_conf()
            .map(|(config, _)| server_addrs(config.name_servers()))
            .unwrap_or_default();
        Ok(Self::from_inner(inner, servers))
    }

    /// Queries exactly `addrs` (IP and port each), over UDP with TCP fallback on
    /// truncation, `timeout` per try and the default number of tries (see
    /// [`NameserverOptions`]). The hosts file is not consulted.
    pub fn with_nameservers(
        addrs: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Self, ResolverInitError> {
        Self::with_nameserver_options(
            addrs,
            NameserverOptions {
                timeout,
                ..NameserverOptions::default()
            },
        )
    }

    /// As [`with_nameservers`](Self::with_nameservers), with the number of tries too.
    pub fn with_nameserver_options(
        addrs: &[SocketAddr],
        options: NameserverOptions,
    ) -> Result<Self, ResolverInitError> {
        if addrs.is_empty() {
            return Err(ResolverInitError::NoNameservers);
        }
        let servers = addrs
            .iter()
            .map(|addr| {
                // hickory 0.26 keeps the port on each connection, not on the server.
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(servers);
        let mut opts = ResolverOpts::default();
        opts.timeout = options.timeout;
        // hickory counts retries after the first try.
        opts.attempts = options.attempts.saturating_sub(1);
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ResolverInitError::Build(e.to_string()))?;
        Ok(Self::from_inner(inner, addrs.to_vec()))
    }

    fn from_inner(inner: TokioResolver, servers: Vec<SocketAddr>) -> Self {
        let opts = inner.options();
        let tries = u32::try_from(opts.attempts.saturating_add(1)).unwrap_or(u32::MAX);
        let deadline = opts
            .timeout
            .saturating_mul(tries)
            .saturating_add(Duration::from_secs(1));
        Self {
            inner,
            deadline,
            servers,
            secure: None,
        }
    }

    /// Believes the AD bit of the configured name servers for TLSA lookups (DANE):
    /// they must be validating resolvers reached over a trusted path (see
    /// [`SecureQuery`] for why Mailroom does not validate in process).
    pub fn trust_ad(mut self) -> Self {
        self.secure = Some(SecureQuery::new(
            self.servers.clone(),
            self.inner.options().timeout,
        ));
        self
    }

    /// One security-aware TLSA query at `_25._tcp.<base>`.
    async fn tlsa_at(&self, sq: &SecureQuery, base: &str) -> Result<TlsaAnswer, DnsError> {
        let name = Name::from_ascii(format!("_25._tcp.{base}.")).map_err(|_| DnsError::NxDomain)?;
        match sq.query(&name, RecordType::TLSA).await? {
            SecureLookup::Bogus(why) => Ok(TlsaAnswer {
                security: Security::Bogus,
                records: Vec::new(),
                base: base.to_string(),
                bogus_reason: Some(why),
            }),
            SecureLookup::Answer { security, answers } => Ok(TlsaAnswer {
                security,
                records: answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TLSA(t) => Some(TlsaRecord {
                            usage: u8::from(t.cert_usage),
                            selector: u8::from(t.selector),
                            matching: u8::from(t.matching),
                            data: t.cert_data.clone(),
                        }),
                        _ => None,
                    })
                    .collect(),
                base: base.to_string(),
                bogus_reason: None,
            }),
        }
    }

    /// One query; `Ok(None)` is NOERROR with no records of that type (NODATA).
    async fn query(&self, name: &Name, rtype: RecordType) -> Result<Option<Vec<RData>>, DnsError> {
        let lookup = self.inner.lookup(name.clone(), rtype);
        match tokio::time::timeout(self.deadline, lookup).await {
            Err(_elapsed) => Err(DnsError::Timeout),
            Ok(Ok(found)) => Ok(Some(
                found
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect(),
            )),
            Ok(Err(e)) => match classify(&e) {
                Failure::NoData => Ok(None),
                Failure::Error(e) => Err(e),
            },
        }
    }
}

#[async_trait::async_trait]
impl Resolver for HickoryResolver {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let name = absolute_name(domain)?;
        let records = self.query(&name, RecordType::MX).await?.unwrap_or_default();
        let pairs = records.into_iter().filter_map(|data| match data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        });
        Ok(mx_answer(pairs, &mut rand::rng()))
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let name = absolute_name(host)?;
        let (v4, v6) = tokio::join!(
            self.query(&name, RecordType::A),
            self.query(&name, RecordType::AAAA)
        );
        combine_families(v4, v6)
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let name = absolute_name(name)?;
        let records = self
            .query(&name, RecordType::TXT)
            .await?
            .unwrap_or_default();
        Ok(records
            .into_iter()
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(txt_text(txt.txt_data.iter().map(|s| &s[..]))),
                _ => None,
            })
            .collect())
    }

    async fn cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        let name = absolute_name(name)?;
        let records = self
            .query(&name, RecordType::CNAME)
            .await?
            .unwrap_or_default();
        Ok(records.into_iter().find_map(|data| match data {
            RData::CNAME(target) => Some(normalize_host(&target.0.to_ascii())),
            _ => None,
        }))
    }

    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError> {
        let host = normalize_host(host);
        let Some(sq) = &self.secure else {
            return Ok(TlsaAnswer::insecure(&host));
        };
        // RFC 7672 §2.2.2: when the host is a CNAME and the expansion is secure, the
        // TLSA records at the final target come first, then those at the host itself.
        let mut bases = Vec::new();
        let host_name = absolute_name(&host)?;
        if let Ok(SecureLookup::Answer {
            security: Security::Secure,
            answers,
        }) = sq.query(&host_name, RecordType::A).await
            && let Some(target) = answers.iter().rev().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(normalize_host(&c.0.to_ascii())),
                _ => None,
            })
        {
            bases.push(target);
        }
        bases.push(host.clone());
        let mut last = TlsaAnswer::insecure(&host);
        for base in bases {
            let found = self.tlsa_at(sq, &base).await?;
            if found.security == Security::Bogus
                || (found.security == Security::Secure && !found.records.is_empty())
            {
                return Ok(found);
            }
            last = found;
        }
        Ok(last)
    }

    async fn mx_security(&self, domain: &str) -> Result<Security, DnsError> {
        let Some(sq) = &self.secure else {
            return Ok(Security::Insecure);
        };
        let name = absolute_name(domain)?;
        // The MX RRset; with none (NODATA), the domain's own address records, which
        // then stand for the MX host (RFC 7672 §2.2.1).
        for rtype in [RecordType::MX, RecordType::A] {
            match sq.query(&name, rtype).await? {
                SecureLookup::Bogus(_) => return Ok(Security::Bogus),
                SecureLookup::Answer { security, answers } => {
                    if answers.iter().any(|r| r.record_type() == rtype) {
                        return Ok(security);
                    }
                    if rtype == RecordType::A || security == Security::Insecure {
                        // No records at all: judged as the denial was.
                        return Ok(security);
                    }
                }
            }
        }
        Ok(Security::Insecure)
    }
}

/// Each name server's address and the port of its first connection.
fn server_addrs(servers: &[NameServerConfig]) -> Vec<SocketAddr> {
    servers
        .iter()
        .filter_map(|ns| {
            ns.connections
                .first()
                .map(|c| SocketAddr::new(ns.ip, c.port))
        })
        .collect()
}

/// One TXT record as text: its character-strings joined without separator.
fn txt_text<'a>(strings: impl Iterator<Item = &'a [u8]>) -> String {
    let bytes: Vec<u8> = strings.flatten().copied().collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a failed hickory lookup means to us.
enum Failure {
    /// NOERROR without records of the asked type: not an error for the caller.
    NoData,
    Error(DnsError),
}

fn classify(e: &NetError) -> Failure {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NoError => Failure::NoData,
            ResponseCode::NXDomain => Failure::Error(DnsError::NxDomain),
            code => Failure::Error(DnsError::ServFail(rcode_text(code))),
        },
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => {
            Failure::Error(DnsError::ServFail(rcode_text(*code)))
        }
        NetError::Timeout => Failure::Error(DnsError::Timeout),
        NetError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Failure::Error(DnsError::Timeout)
        }
        other => Failure::Error(DnsError::ServFail(other.to_string())),
    }
}

/// The mnemonic operators know (`SERVFAIL`, `REFUSED`), not hickory's prose.
fn rcode_text(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::NotAuth => "NOTAUTH".to_string(),
        other => format!("response code {}", u16::from(other)),
    }
}

/// Merges the A and AAAA outcomes: any address found wins (a failure of the other
/// family only loses that family); otherwise NXDOMAIN, then the first error, then an
/// empty list (the name exists without addresses).
fn combine_families(
    v4: Result<Option<Vec<RData>>, DnsError>,
    v6: Result<Option<Vec<RData>>, DnsError>,
) -> Result<Vec<IpAddr>, DnsError> {
    let addrs: Vec<IpAddr> = [&v4, &v6]
        .into_iter()
        .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref))
        .flatten()
        .filter_map(|data| match data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    if !addrs.is_empty() {
        return Ok(addrs);
    }
    match (v4, v6) {
        (Err(DnsError::NxDomain), _) | (_, Err(DnsError::NxDomain)) => Err(DnsError::NxDomain),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(_), Ok(_)) => Ok(Vec::new()),
    }
}

/// `1.2.3.4`, `::1`, or the address-literal forms `[1.2.3.4]` and `[IPv6:::1]`.
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

/// The name as an absolute DNS name, so no search domain is ever appended. A string
/// that cannot be a DNS name cannot exist: NXDOMAIN.
fn absolute_name(name: &str) -> Result<Name, DnsError> {
    let name = name.trim();
    if name.is_empty() || name == "." {
        return Err(DnsError::NxDomain);
    }
    let mut parsed = Name::from_utf8(name).map_err(|_| DnsError::NxDomain)?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{A, AAAA};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn names_are_absolute_and_idna() {
        let n = absolute_name("Exämple.COM").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_ascii().to_ascii_lowercase(), "xn--exmple-cua.com.");
        assert!(absolute_name("example.com.").unwrap().is_fqdn());
        assert_eq!(absolute_name(""), Err(DnsError::NxDomain));
        assert_eq!(absolute_name("a..b"), Err(DnsError::NxDomain));
        assert_eq!(absolute_name(&"x".repeat(64)), Err(DnsError::NxDomain));
    }

    #[test]
    fn ip_literals() {
        assert_eq!(
            ip_literal("192.0.2.1"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(
            ip_literal("[192.0.2.1]"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(ip_literal("[IPv6:2001:db8::1]"), "2001:db8::1".parse().ok());
        assert_eq!(ip_literal("::1"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ip_literal("mx.example.com"), None);
    }

    #[test]
    fn families_combine() {
        let a = || Ok(Some(vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))]));
        let aaaa = || Ok(Some(vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))]));
        assert_eq!(combine_families(a(), aaaa()).unwrap().len(), 2);
        assert_eq!(
            combine_families(a(), Err(DnsError::Timeout)).unwrap().len(),
            1
        );
        assert_eq!(combine_families(Ok(None), Ok(None)), Ok(vec![]));
        assert_eq!(
            combine_families(Err(DnsError::Timeout), Err(DnsError::NxDomain)),
            Err(DnsError::NxDomain)
        );
        assert_eq!(
            combine_families(Ok(None), Err(DnsError::Timeout)),
            Err(DnsError::Timeout)
        );
    }

    #[test]
    fn txt_strings_are_joined() {
        let parts: [&[u8]; 3] = [b"v=DKIM1; p=", b"abc", b"def"];
        assert_eq!(txt_text(parts.into_iter()), "v=DKIM1; p=abcdef");
        let bad: [&[u8]; 1] = [b"a\xffb"];
        assert_eq!(txt_text(bad.into_iter()), "a\u{fffd}b");
    }

    #[test]
    fn rcodes_read_as_mnemonics() {
        assert_eq!(rcode_text(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_text(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_text(ResponseCode::BADCOOKIE), "response code 23");
    }
}
