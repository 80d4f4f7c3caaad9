//! Where a recipient domain's mail goes: a static route, or its MX hosts in preference
//! order (implicit MX when there is none), as a list of socket addresses to try.
//! Null MX, NXDOMAIN and addresses Mailroom must not connect to (its own listeners;
//! loopback/private ranges unless allowed) end in a permanent verdict; DNS trouble in a
//! temporary one.

use crate::config::{DeliveryConfig, StaticRoute};
use mailroom_dns::{DnsError, MxAnswer, Resolver};
use mailroom_smtp_client::TlsMode;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Host name for TLS (SNI, verification) and reporting.
    pub host: String,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub tls: TlsMode,
    pub auth: Option<(String, String)>,
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// Permanent: bounce with this enhanced code and text.
    Permanent((u8, u16, u16), String),
    /// Temporary: defer with this enhanced code and text.
    Temporary((u8, u16, u16), String),
}

pub fn static_route<'a>(cfg: &'a DeliveryConfig, domain: &str) -> Option<&'a StaticRoute> {
    cfg.routes
        .iter()
        .find(|r| r.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
        .or_else(|| {
            cfg.routes
                .iter()
                .find(|r| r.domains.iter().any(|d| d == "*"))
        })
}

/// The key under which a domain's work is queued: a static route is one destination
/// for all its domains, otherwise each domain is its own. `own`: the domain has
/// shaping limits of its own (`[shaping.domains."x"]`); through a route it then has a
/// queue of its own on that route, `route:host:port/domain`, where the shaper applies
/// them (its connections, messages per connection, rate and TLS floor).
pub fn destination_key(cfg: &DeliveryConfig, domain: &str, own: bool) -> String {
    match static_route(cfg, domain) {
        Some(r) if own => format!(
            "route:{}:{}/{}",
            r.host,
            r.port,
            domain.to_ascii_lowercase()
        ),
        Some(r) => format!("route:{}:{}", r.host, r.port),
        None => domain.to_string(),
    }
}

pub(crate) fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_own(cfg: &DeliveryConfig, addr: SocketAddr) -> bool {
    cfg.own_listeners.iter().any(|own| {
        own.port() == addr.port()
            && (own.ip() == addr.ip()
                || own.ip().is_unspecified()
                || (own.ip().is_loopback() && addr.ip().is_loopback()))
    })
}

async fn host_ips(resolver: &dyn Resolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![ip]);
    }
    resolver.ips(host).await
}

fn dns_error(e: &DnsError, what: &str) -> RouteError {
    match e {
        DnsError::NxDomain => RouteError::Permanent(
            (5, 1, 2),
            format!("{what}: domain does not exist (NXDOMAIN)"),
        ),
        DnsError::ServFail(why) => {
            RouteError::Temporary((4, 4, 3), format!("{what}: DNS failure ({why})"))
        }
        DnsError::Timeout => RouteError::Temporary((4, 4, 3), format!("{what}: DNS timeout")),
    }
}

pub async fn plan(
    cfg: &DeliveryConfig,
    resolver: &dyn Resolver,
    domain: &str,
) -> Result<Plan, RouteError> {
    let (hosts, port, tls, auth) = match static_route(cfg, domain) {
        Some(r) => (vec![r.host.clone()], r.port, r.tls, r.auth.clone()),
        None => {
            let hosts = match resolver.mx(domain).await {
                Ok(MxAnswer::Hosts(list)) => list.into_iter().map(|h| h.exchange).collect(),
                Ok(MxAnswer::NullMx) => {
                    return Err(RouteError::Permanent(
                        (5, 1, 10),
                        format!("{domain} does not accept mail (Null MX)"),
                    ));
                }
                Ok(MxAnswer::NoRecords) => vec![domain.to_string()],
                Err(e) => return Err(dns_error(&e, domain)),
            };
            (hosts, cfg.mx_port, cfg.mx_tls, None)
        }
    };
    let mut targets = Vec::new();
    let mut refused = None;
    let mut last_error = None;
    for host in &hosts {
        match host_ips(resolver, host).await {
            Ok(ips) => {
                for ip in ips {
                    let addr = SocketAddr::new(ip, port);
                    if is_own(cfg, addr) {
                        refused = Some(RouteError::Permanent(
                            (5, 4, 6),
                            format!("mail for {domain} loops back to myself ({addr})"),
                        ));
                    } else if forbidden(ip) && !cfg.allow_private {
                        refused.get_or_insert(RouteError::Permanent(
                            (5, 4, 4),
                            format!("{host} resolves to a non-public address ({ip}); refused"),
                        ));
                    } else {
                        targets.push(Target {
                            addr,
                            host: host.clone(),
                        });
                    }
                }
            }
            Err(e) => last_error = Some(dns_error(&e, host)),
        }
    }
    if targets.is_empty() {
        // A temporary DNS failure on some host wins over a refusal: it may resolve later.
        return Err(match (last_error, refused) {
            (Some(e @ RouteError::Temporary(..)), _) => e,
            (_, Some(r)) => r,
            (Some(e), None) => e,
            (None, None) => {
                RouteError::Temporary((4, 4, 4), format!("no address found for {domain}"))
            }
        });
    }
    Ok(Plan { targets, tls, auth })
}
