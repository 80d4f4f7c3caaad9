//! HickoryResolver against the in-process DNS server of mailroom-testkit, over real
//! loopback UDP and TCP: every answer kind the delivery side and the domain checks
//! rely on (MX, A/AAAA, TXT, CNAME), and the ways DNS fails. Each test is bounded in time.

use mailroom_dns::{
    DnsError, HickoryResolver, MxAnswer, MxHost, NameserverOptions, Resolver, ResolverInitError,
};
use mailroom_testkit::{TestZone, serve_dns, spawn_dns};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// No test may take longer than this, whatever hickory does.
const TEST_BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test exceeded its time bound")
}

fn host(preference: u16, exchange: &str) -> MxHost {
    MxHost {
        preference,
        exchange: exchange.to_string(),
    }
}

#[tokio::test]
async fn mx_sorted_by_preference() {
    bounded(async {
        let (dns, server) = serve_dns(
            TestZone::new()
                .mx("example.test", 30, "MX3.Example.Test")
                .mx("example.test", 10, "mx1.example.test")
                .mx("example.test", 20, "mx2.example.test"),
        )
        .await;
        let answer = dns.mx("example.test").await.unwrap();
        assert_eq!(
            answer,
            MxAnswer::Hosts(vec![
                host(10, "mx1.example.test"),
                host(20, "mx2.example.test"),
                host(30, "mx3.example.test"),
            ])
        );
        // Asked as an absolute name: no search domain was tried.
        let queries = server.queries();
        assert!(!queries.is_empty());
        assert!(
            queries.iter().all(|q| q == "example.test. MX"),
            "{queries:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn mx_ties_are_shuffled() {
    bounded(async {
        let (dns, _server) = serve_dns(
            TestZone::new()
                .mx("example.test", 10, "a.example.test")
                .mx("example.test", 10, "b.example.test")
                .mx("example.test", 5, "first.example.test"),
        )
        .await;
        let mut seconds = std::collections::HashSet::new();
        // The cache answers the repeats; the shuffle happens on every call.
        for _ in 0..64 {
            let MxAnswer::Hosts(hosts) = dns.mx("example.test").await.unwrap() else {
                panic!("expected hosts");
            };
            assert_eq!(hosts[0], host(5, "first.example.test"));
            seconds.insert(hosts[1].exchange.clone());
        }
        assert_eq!(seconds.len(), 2, "equal preferences always in one order");
    })
    .await;
}

#[tokio::test]
async fn null_mx() {
    bounded(async {
        let (dns, _server) = serve_dns(TestZone::new().null_mx("nomail.test")).await;
        assert_eq!(dns.mx("nomail.test").await, Ok(MxAnswer::NullMx));
    })
    .await;
}

#[tokio::test]
async fn a_only_domain_is_implicit_mx() {
    bounded(async {
        let (dns, _server) = serve_dns(TestZone::new().a("bare.test", Ipv4Addr::LOCALHOST)).await;
        assert_eq!(dns.mx("bare.test").await, Ok(MxAnswer::NoRecords));
        assert_eq!(
            dns.ips("bare.test").await,
            Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        );
    })
    .await;
}

#[tokio::test]
async fn nxdomain() {
    bounded(async {
        let (dns, _server) = serve_dns(
            TestZone::new()
                .a("exists.test", Ipv4Addr::LOCALHOST)
                .nxdomain("gone.test"),
        )
        .await;
        for name in ["gone.test", "never-mentioned.test"] {
            let err = dns.mx(name).await.unwrap_err();
            assert_eq!(err, DnsError::NxDomain, "{name}");
            assert!(err.is_permanent());
            assert_eq!(dns.ips(name).await, Err(DnsError::NxDomain), "{name}");
        }
    })
    .await;
}

#[tokio::test]
async fn servfail_is_temporary() {
    bounded(async {
        let (dns, _server) = serve_dns(TestZone::new().servfail("broken.test")).await;
        let err = dns.mx("broken.test").await.unwrap_err();
        assert_eq!(err, DnsError::ServFail("SERVFAIL".to_string()));
        assert!(!err.is_permanent());
        assert_eq!(
            dns.ips("broken.test").await,
            Err(DnsError::ServFail("SERVFAIL".to_string()))
        );
    })
    .await;
}

#[tokio::test]
async fn silent_server_times_out() {
    bounded(async {
        let (addr, server) = spawn_dns(TestZone::new().timeout("slow.test")).await;
        let dns = HickoryResolver::with_nameserver_options(
            &[addr],
            NameserverOptions {
                timeout: Duration::from_millis(500),
                attempts: 1,
            },
        )
        .unwrap();
        let started = Instant::now();
        let err = dns.mx("slow.test").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err, DnsError::Timeout);
        assert!(!err.is_permanent());
        assert!(
            took >= Duration::from_millis(400),
            "gave up early: {took:?}"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
        // hickory retransmits over UDP within one try (every 333 ms at least), so the
        // server may see the question more than once; never over TCP.
        let queries = server.queries();
        assert!(!queries.is_empty());
        assert!(queries.iter().all(|q| q == "slow.test. MX"), "{queries:?}");
        assert!(server.tcp_queries().is_empty());
    })
    .await;
}

#[tokio::test]
async fn aaaa_and_both_families() {
    bounded(async {
        let (dns, _server) = serve_dns(
            TestZone::new()
                .aaaa("v6.test", Ipv6Addr::LOCALHOST)
                .a("dual.test", Ipv4Addr::new(127, 0, 0, 2))
                .aaaa("dual.test", Ipv6Addr::LOCALHOST)
                .mx("dual.test", 10, "v6.test"),
        )
        .await;
        assert_eq!(
            dns.ips("v6.test").await,
            Ok(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)])
        );
        assert_eq!(
            dns.ips("DUAL.test.").await,
            Ok(vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ])
        );
        // Exists (has an MX) but has no address: an empty list, not an error.
        assert_eq!(dns.ips("dual.test").await.map(|v| v.len()), Ok(2));
        let (dns2, _s) = serve_dns(TestZone::new().mx("mxonly.test", 10, "v6.test")).await;
        assert_eq!(dns2.ips("mxonly.test").await, Ok(vec![]));
    })
    .await;
}

#[tokio::test]
async fn large_answers_fall_back_to_tcp_on_the_same_port() {
    bounded(async {
        // 200 A records (~3.2 kB) exceed hickory's 1232-octet EDNS UDP size: the UDP
        // reply is truncated and the resolver must ask again over TCP.
        let zone = (0..200u8).fold(TestZone::new(), |z, i| {
            z.a("big.test", Ipv4Addr::new(127, 0, 1, i))
        });
        let (dns, server) = serve_dns(zone).await;
        let ips = dns.ips("big.test").await.unwrap();
        assert_eq!(ips.len(), 200);
        assert_eq!(server.tcp_queries(), vec!["big.test. A".to_string()]);
    })
    .await;
}

#[tokio::test]
async fn cache_is_kept_and_respects_the_zone() {
    bounded(async {
        let (dns, server) = serve_dns(
            TestZone::new()
                .mx("example.test", 10, "mx1.example.test")
                .a("mx1.example.test", Ipv4Addr::LOCALHOST),
        )
        .await;
        let first = dns.mx("example.test").await.unwrap();
        let asked = server.query_count();
        let second = dns.mx("example.test.").await.unwrap();
        assert_eq!(first, second);
        assert_eq!(
            server.query_count(),
            asked,
            "second lookup should be cached"
        );
        // Negative answers are cached too (TTL from the SOA minimum).
        assert_eq!(dns.mx("nope.test").await, Err(DnsError::NxDomain));
        let asked = server.query_count();
        assert_eq!(dns.mx("nope.test").await, Err(DnsError::NxDomain));
        assert_eq!(server.query_count(), asked, "NXDOMAIN should be cached");
    })
    .await;
}

#[tokio::test]
async fn skips_a_dead_nameserver() {
    bounded(async {
        // A loopback UDP port with nothing behind it (bound, then released).
        let dead: SocketAddr = {
            let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            s.local_addr().unwrap()
        };
        let (live, _server) = spawn_dns(TestZone::new().null_mx("nomail.test")).await;
        let dns = HickoryResolver::with_nameservers(&[dead, live], Duration::from_secs(2)).unwrap();
        assert_eq!(dns.mx("nomail.test").await, Ok(MxAnswer::NullMx));
    })
    .await;
}

#[tokio::test]
async fn zone_text_end_to_end() {
    bounded(async {
        let zone = TestZone::parse(
            "example.test. MX 10 mx1.example.test.\n\
             example.test. MX 5 mx0.example.test.\n\
             mx1.example.test. A 127.0.0.1\n\
             broken.test. SERVFAIL\n",
        )
        .unwrap();
        let (dns, _server) = serve_dns(zone).await;
        assert_eq!(
            dns.mx("example.test").await,
            Ok(MxAnswer::Hosts(vec![
                host(5, "mx0.example.test"),
                host(10, "mx1.example.test")
            ]))
        );
        assert_eq!(
            dns.ips("mx1.example.test").await,
            Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        );
        assert!(matches!(
            dns.mx("broken.test").await,
            Err(DnsError::ServFail(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn bad_input_answers_without_asking() {
    bounded(async {
        let (dns, server) = serve_dns(TestZone::new()).await;
        assert_eq!(dns.mx("a..b").await, Err(DnsError::NxDomain));
        assert_eq!(dns.mx("").await, Err(DnsError::NxDomain));
        assert_eq!(
            dns.ips("[192.0.2.1]").await,
            Ok(vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))])
        );
        assert_eq!(server.query_count(), 0);
    })
    .await;
}

#[tokio::test]
async fn txt_records_joined_and_nodata() {
    bounded(async {
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let (dns, _server) = serve_dns(
            TestZone::new()
                .txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
                .txt("example.test", "mailroom-verification=abc")
                .txt("s1._domainkey.example.test", &long)
                .mx("mxonly.test", 10, "mx.example.test")
                .servfail("broken.test"),
        )
        .await;
        let mut found = dns.txt("Example.Test.").await.unwrap();
        found.sort();
        assert_eq!(
            found,
            vec![
                "mailroom-verification=abc".to_string(),
                "v=spf1 ip4:127.0.0.1 -all".to_string()
            ]
        );
        // Over 255 octets: published as several character-strings, read back as one.
        assert_eq!(dns.txt("s1._domainkey.example.test").await, Ok(vec![long]));
        assert_eq!(dns.txt("mxonly.test").await, Ok(vec![]));
        assert_eq!(dns.txt("nowhere.test").await, Err(DnsError::NxDomain));
        assert_eq!(
            dns.txt("broken.test").await,
            Err(DnsError::ServFail("SERVFAIL".to_string()))
        );
    })
    .await;
}

#[tokio::test]
async fn cname_target_and_txt_through_it() {
    bounded(async {
        let (dns, _server) = serve_dns(
            TestZone::new()
                .cname(
                    "s1._domainkey.example.test",
                    "S1.Example.Test.Keys.Op.Test.",
                )
                .txt("s1.example.test.keys.op.test", "v=DKIM1; k=ed25519; p=abc")
                .txt("plain.example.test", "hello")
                .servfail("broken.test"),
        )
        .await;
        assert_eq!(
            dns.cname("s1._domainkey.example.test").await,
            Ok(Some("s1.example.test.keys.op.test".to_string()))
        );
        assert_eq!(
            dns.txt("s1._domainkey.example.test").await,
            Ok(vec!["v=DKIM1; k=ed25519; p=abc".to_string()])
        );
        assert_eq!(dns.cname("plain.example.test").await, Ok(None));
        assert_eq!(dns.cname("nowhere.test").await, Err(DnsError::NxDomain));
        assert!(matches!(
            dns.cname("broken.test").await,
            Err(DnsError::ServFail(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn zone_can_change_while_serving() {
    bounded(async {
        let (dns, server) = serve_dns(TestZone::new().ttl(0).txt("example.test", "one")).await;
        assert_eq!(dns.txt("example.test").await, Ok(vec!["one".to_string()]));
        server.set_zone(
            TestZone::new()
                .ttl(0)
                .a("example.test", Ipv4Addr::LOCALHOST),
        );
        assert_eq!(dns.txt("example.test").await, Ok(vec![]));
    })
    .await;
}

#[test]
fn needs_a_nameserver() {
    assert!(matches!(
        HickoryResolver::with_nameservers(&[], Duration::from_secs(1)),
        Err(ResolverInitError::NoNameservers)
    ));
}

/// Only builds (no query leaves the machine), and is decided either way: with an
/// `/etc/resolv.conf` that lists a name server the system resolver builds; without one
/// (file missing, or no `nameserver` line) it is the typed configuration error, never a
/// resolver with no servers.
#[tokio::test]
async fn system_configuration_builds() {
    let conf = std::fs::read_to_string("/etc/resolv.conf");
    let has_nameserver = conf.as_ref().is_ok_and(|text| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some("nameserver"))
    });
    match (HickoryResolver::system(), has_nameserver) {
        (Ok(_), true) => {}
        (Err(ResolverInitError::SystemConfig(msg)), false) => {
            assert!(!msg.is_empty(), "the error says nothing");
        }
        (result, _) => panic!("/etc/resolv.conf {conf:?}: system() gave {result:?}"),
    }
}
