//! Where webhooks may point: `http`/`https` URLs whose host resolves only to public
//! addresses. Loopback, private, link-local, unspecified, multicast, broadcast and
//! shared (CGNAT) ranges are refused, also when written as IPv4-mapped IPv6 or as a
//! decimal integer (`http://2130706433/` parses to 127.0.0.1), unless the operator
//! set `webhooks.allow_private`. Checked when a webhook is created or changed, and
//! again at every send through `GuardedResolver`, so a DNS answer that changes later
//! (rebinding) cannot reach the inside either.

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("user names and passwords in the URL are not allowed")]
    Credentials,
    #[error("{0} is a loopback, private, link-local or otherwise internal address")]
    Forbidden(IpAddr),
    #[error("the host {0} does not resolve")]
    Unresolvable(String),
    #[error("the host {0} is not in webhooks.allowed_hosts")]
    NotAllowedHost(String),
}

/// Parses and checks the form of a webhook URL (no DNS).
pub fn parse(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text.trim()).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if url.host().is_none() {
        return Err(UrlError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(url)
}

/// Whether an address is one a webhook must not reach.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) embeds an IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        let o = ip.octets();
        return internal_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || s[..6].iter().all(|x| *x == 0) // IPv4-compatible ::a.b.c.d (deprecated), ::1, ::
}

/// The host as an address, when the URL names one directly. The URL parser already
/// turned decimal, octal and hex IPv4 forms into dotted quads.
pub fn literal_host(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// Resolves the URL's host and refuses it if any address is internal (unless
/// `allow_private`). IP-literal hosts are checked without DNS.
pub async fn check(url: &Url, allow_private: bool) -> Result<(), UrlError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match literal_host(url) {
        Some(ip) => vec![ip],
        None => {
            let name = url.host_str().ok_or(UrlError::NoHost)?;
            tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| UrlError::Unresolvable(name.to_string()))?
                .map(|a| a.ip())
                .collect()
        }
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable(
            url.host_str().unwrap_or_default().to_string(),
        ));
    }
    if !allow_private && let Some(bad) = addrs.into_iter().find(|ip| is_internal(*ip)) {
        return Err(UrlError::Forbidden(bad));
    }
    Ok(())
}

/// reqwest's resolver for webhook requests: the system resolver, refusing names that
/// resolve to any internal address.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
                return Err(Box::new(UrlError::Forbidden(bad.ip()))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            if addrs.is_empty() {
                return Err(Box::new(UrlError::Unresolvable(host))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip} must be internal");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn url_forms() {
        assert_eq!(parse("ftp://example.com/").unwrap_err(), UrlError::Scheme);
        assert_eq!(parse("file:///etc/passwd").unwrap_err(), UrlError::Scheme);
        assert!(matches!(parse("not a url"), Err(UrlError::Invalid(_))));
        assert_eq!(
            parse("https://u:p@example.com/").unwrap_err(),
            UrlError::Credentials
        );
        assert!(parse("https://example.com/hook").is_ok());
    }

    #[tokio::test]
    async fn literal_and_decimal_hosts_are_refused() {
        for text in [
            "http://127.0.0.1/",
            "http://10.0.0.5:8080/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://localhost/",
        ] {
            let url = parse(text).expect(text);
            assert!(
                matches!(check(&url, false).await, Err(UrlError::Forbidden(_))),
                "{text} must be refused"
            );
            assert_eq!(
                check(&url, true).await,
                Ok(()),
                "{text} allowed when private is"
            );
        }
    }
}
