//! The DANE lookup path of HickoryResolver (`trust_ad`, the `dns.dnssec = true` mode)
//! over real loopback UDP against the in-process server playing a validating
//! resolver: AD set → secure, AD clear → insecure, SERVFAIL with EDE 6 → bogus, plain
//! SERVFAIL → an error, a secure CNAME → the target's TLSA first; and without
//! `trust_ad` no answer is ever called secure.

use mailroom_dns::authority::Zone;
use mailroom_dns::{DnsError, HickoryResolver, Resolver, Security, TlsaRecord};
use mailroom_testkit::serve_dns;
use std::net::Ipv4Addr;

fn rec(usage: u8, selector: u8, matching: u8, data: &[u8]) -> TlsaRecord {
    TlsaRecord {
        usage,
        selector,
        matching,
        data: data.to_vec(),
    }
}

fn zone() -> Zone {
    Zone::new()
        .ttl(0)
        .a("mx.signed.test", Ipv4Addr::LOCALHOST)
        .tlsa("mx.signed.test", 3, 1, 1, &[0xab; 32])
        .tlsa("mx.signed.test", 2, 0, 2, &[0xcd; 64])
        .secure("_25._tcp.mx.signed.test")
        .a("mx.unsigned.test", Ipv4Addr::LOCALHOST)
        .tlsa("mx.unsigned.test", 3, 1, 1, &[0xab; 32])
        .bogus("_25._tcp.mx.bogus.test")
        .servfail("_25._tcp.mx.broken.test")
        .cname("mx.alias.test", "mx.target.test")
        .secure("mx.alias.test")
        .a("mx.target.test", Ipv4Addr::LOCALHOST)
        .tlsa("mx.target.test", 3, 0, 1, &[0x11; 32])
        .secure("_25._tcp.mx.target.test")
        .a("mx.nothing.test", Ipv4Addr::LOCALHOST)
        .secure("mx.nothing.test")
}

async fn resolver(trust: bool) -> (HickoryResolver, mailroom_dns::authority::DnsServerHandle) {
    let (r, handle) = serve_dns(zone()).await;
    (if trust { r.trust_ad() } else { r }, handle)
}

#[tokio::test]
async fn ad_bit_makes_records_secure() {
    let (r, server) = resolver(true).await;
    let found = r.tlsa("MX.Signed.test.").await.unwrap();
    assert_eq!(found.security, Security::Secure);
    assert_eq!(found.base, "mx.signed.test");
    assert_eq!(found.records.len(), 2);
    assert!(found.records.contains(&rec(3, 1, 1, &[0xab; 32])));
    assert!(found.records.contains(&rec(2, 0, 2, &[0xcd; 64])));
    assert!(
        server
            .queries()
            .contains(&"_25._tcp.mx.signed.test. TLSA".to_string())
    );
}

#[tokio::test]
async fn unsigned_records_are_insecure() {
    let (r, _server) = resolver(true).await;
    let found = r.tlsa("mx.unsigned.test").await.unwrap();
    assert_eq!(found.security, Security::Insecure);
    assert_eq!(found.records.len(), 1);
    // Nothing published at all, under a secure name: secure and empty.
    let none = r.tlsa("mx.nothing.test").await.unwrap();
    assert!(none.records.is_empty());
}

#[tokio::test]
async fn bogus_and_servfail() {
    let (r, _server) = resolver(true).await;
    let bogus = r.tlsa("mx.bogus.test").await.unwrap();
    assert_eq!(bogus.security, Security::Bogus);
    assert!(bogus.records.is_empty());
    assert_eq!(bogus.bogus_reason.as_deref(), Some("EDE 6 (DNSSEC bogus)"));
    assert!(matches!(
        r.tlsa("mx.broken.test").await,
        Err(DnsError::ServFail(_))
    ));
}

#[tokio::test]
async fn secure_cname_target_comes_first() {
    let (r, _server) = resolver(true).await;
    let found = r.tlsa("mx.alias.test").await.unwrap();
    assert_eq!(found.security, Security::Secure);
    assert_eq!(found.base, "mx.target.test");
    assert_eq!(found.records, vec![rec(3, 0, 1, &[0x11; 32])]);
}

#[tokio::test]
async fn without_trust_nothing_is_secure_and_nothing_is_asked() {
    let (r, server) = resolver(false).await;
    let found = r.tlsa("mx.signed.test").await.unwrap();
    assert_eq!(found.security, Security::Insecure);
    assert!(found.records.is_empty());
    assert!(!server.queries().iter().any(|q| q.ends_with("TLSA")));
}

/// RFC 7672 §2.2.1: the DNSSEC status of the MX RRset, or without MX of the domain's
/// address records; bogus is said, SERVFAIL is an error, and without `trust_ad` nothing
/// is secure.
#[tokio::test]
async fn mx_security_follows_the_ad_bit() {
    let zone = Zone::new()
        .ttl(0)
        .mx("signed.test", 10, "mx.signed.test")
        .secure("signed.test")
        .mx("unsigned.test", 10, "mx.unsigned.test")
        .bogus("bogus.test")
        .servfail("broken.test")
        .a("implicit.test", Ipv4Addr::LOCALHOST)
        .secure("implicit.test")
        .a("implicit-unsigned.test", Ipv4Addr::LOCALHOST);
    let (plain, server) = serve_dns(zone).await;
    let r = plain.clone().trust_ad();
    assert_eq!(r.mx_security("Signed.test.").await, Ok(Security::Secure));
    assert_eq!(r.mx_security("unsigned.test").await, Ok(Security::Insecure));
    assert_eq!(r.mx_security("bogus.test").await, Ok(Security::Bogus));
    assert!(matches!(
        r.mx_security("broken.test").await,
        Err(DnsError::ServFail(_))
    ));
    assert_eq!(r.mx_security("implicit.test").await, Ok(Security::Secure));
    assert!(server.queries().contains(&"implicit.test. A".to_string()));
    assert_eq!(
        r.mx_security("implicit-unsigned.test").await,
        Ok(Security::Insecure)
    );
    let before = server.queries().len();
    assert_eq!(
        plain.mx_security("signed.test").await,
        Ok(Security::Insecure)
    );
    assert_eq!(server.queries().len(), before, "no query without trust_ad");
}
