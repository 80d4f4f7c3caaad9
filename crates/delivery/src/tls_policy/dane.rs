//! DANE for SMTP (RFC 7672) as a delivery decision: what the TLSA lookup of one MX
//! host means for the connection to it. Pure over the resolver's answer
//! ([`decide`]); the lookup itself is [`lookup_hosts`]. The certificate check is the
//! smtp-client's DANE verifier.
//!
//! - secure, with usable records (DANE-TA/DANE-EE): verified TLS against them, which
//!   overrides MTA-STS for that host (RFC 8461 §2);
//! - secure, records present but none usable: TLS required, unauthenticated (§2.2);
//! - bogus, or the lookup failed (SERVFAIL, timeout): do not connect now — never fall
//!   back to less security on an answer that may have been tampered with (§2.1.1);
//! - insecure, or no records, or NXDOMAIN: DANE does not apply.
//!
//! All of it only when the MX hosts themselves were learnt securely (RFC 7672 §2.2.1,
//! [`lookup_domain`]): an insecure MX RRset (or, without MX, insecure address records
//! of the domain) means no DANE for the destination; a bogus or failed one defers.

use mailroom_dns::{DnsError, Resolver, Security, TlsaAnswer};
use mailroom_smtp_client::{DaneTlsa, Tlsa};
use std::collections::HashMap;

/// What DANE says of one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaneHost {
    /// Verify the certificate against these records. `text`: the records in
    /// presentation form, one per line, for TLS-RPT's policy-string.
    Usable { tlsa: DaneTlsa, text: String },
    /// Secure TLSA records, none usable: STARTTLS is mandatory, unauthenticated.
    Unusable { text: String },
    /// Do not connect now: the answer is bogus or the lookup failed. `result_type`
    /// is the TLS-RPT failure (`dnssec-invalid`, `tlsa-invalid`).
    Refused {
        why: String,
        result_type: &'static str,
    },
}

/// The decision for `host` from its TLSA lookup; `None`: DANE does not apply.
pub fn decide(host: &str, answer: Result<TlsaAnswer, DnsError>) -> Option<DaneHost> {
    let answer = match answer {
        Ok(a) => a,
        Err(DnsError::NxDomain) => return None,
        Err(e) => {
            return Some(DaneHost::Refused {
                why: format!("TLSA lookup for _25._tcp.{host} failed: {e}"),
                result_type: "dnssec-invalid",
            });
        }
    };
    match answer.security {
        Security::Insecure => None,
        Security::Bogus => Some(DaneHost::Refused {
            why: format!(
                "TLSA answer for _25._tcp.{} is DNSSEC-bogus{}",
                answer.base,
                answer
                    .bogus_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            result_type: "dnssec-invalid",
        }),
        Security::Secure if answer.records.is_empty() => None,
        Security::Secure => {
            let text = answer
                .records
                .iter()
                .map(|r| format!("_25._tcp.{} TLSA {r}", answer.base))
                .collect::<Vec<_>>()
                .join("\n");
            let records = answer
                .records
                .into_iter()
                .map(|r| Tlsa {
                    usage: r.usage,
                    selector: r.selector,
                    matching: r.matching,
                    data: r.data,
                })
                .collect();
            let mut names = vec![host.to_ascii_lowercase()];
            if answer.base != names[0] {
                names.push(answer.base.clone());
            }
            Some(match DaneTlsa::usable(records, names) {
                Some(tlsa) => DaneHost::Usable { tlsa, text },
                None => DaneHost::Unusable { text },
            })
        }
    }
}

/// Why DANE holds a whole destination back: its MX RRset is bogus, or whether it is
/// secure could not be learnt. `why` names DANE for the attempt's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRefused {
    pub why: String,
}

/// The DANE decision for each MX host of `domain` (see [`lookup_hosts`]), or nothing
/// at all when the MX RRset is insecure (RFC 7672 §2.2.1: only MX host names
/// obtained securely may be used as TLSA base domains); an error when it is bogus or
/// its status could not be had (do not connect now).
pub async fn lookup_domain<'a>(
    resolver: &dyn Resolver,
    domain: &str,
    hosts: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, DaneHost>, DomainRefused> {
    match resolver.mx_security(domain).await {
        Ok(Security::Secure) => Ok(lookup_hosts(resolver, hosts).await),
        Ok(Security::Insecure) | Err(DnsError::NxDomain) => Ok(HashMap::new()),
        Ok(Security::Bogus) => Err(DomainRefused {
            why: format!(
                "DANE: the MX answer of {domain} is DNSSEC-bogus; not sent until DNSSEC answers cleanly"
            ),
        }),
        Err(e) => Err(DomainRefused {
            why: format!(
                "DANE: whether the MX answer of {domain} is DNSSEC-signed could not be learnt ({e}); not sent until it can"
            ),
        }),
    }
}

/// The DANE decision of each distinct host (hosts where DANE does not apply are left
/// out). Lookups run one after the other: an MX set is small.
pub async fn lookup_hosts<'a>(
    resolver: &dyn Resolver,
    hosts: impl Iterator<Item = &'a str>,
) -> HashMap<String, DaneHost> {
    let mut out = HashMap::new();
    for host in hosts {
        let host = host.to_ascii_lowercase();
        if out.contains_key(&host) {
            continue;
        }
        if let Some(d) = decide(&host, resolver.tlsa(&host).await) {
            out.insert(host, d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_dns::TlsaRecord;

    fn answer(security: Security, records: Vec<TlsaRecord>) -> TlsaAnswer {
        TlsaAnswer {
            security,
            records,
            base: "mx.example".into(),
            bogus_reason: None,
        }
    }

    fn rec(usage: u8) -> TlsaRecord {
        TlsaRecord {
            usage,
            selector: 1,
            matching: 1,
            data: vec![0xab, 0x01],
        }
    }

    #[test]
    fn secure_usable_records_are_used() {
        let d = decide(
            "MX.example",
            Ok(answer(Security::Secure, vec![rec(3), rec(1)])),
        );
        let Some(DaneHost::Usable { tlsa, text }) = d else {
            panic!("{d:?}")
        };
        assert_eq!(tlsa.records.len(), 1, "PKIX-EE is not usable for SMTP");
        assert_eq!(tlsa.names, vec!["mx.example".to_string()]);
        assert!(
            text.contains("_25._tcp.mx.example TLSA 3 1 1 ab01"),
            "{text}"
        );
    }

    #[test]
    fn unusable_insecure_bogus_and_failures() {
        assert!(matches!(
            decide("mx.example", Ok(answer(Security::Secure, vec![rec(1)]))),
            Some(DaneHost::Unusable { .. })
        ));
        assert_eq!(
            decide("mx.example", Ok(answer(Security::Insecure, vec![rec(3)]))),
            None
        );
        assert_eq!(
            decide("mx.example", Ok(answer(Security::Secure, vec![]))),
            None
        );
        assert_eq!(decide("mx.example", Err(DnsError::NxDomain)), None);
        for failure in [
            Ok(answer(Security::Bogus, vec![])),
            Err(DnsError::ServFail("SERVFAIL".into())),
            Err(DnsError::Timeout),
        ] {
            assert!(
                matches!(
                    decide("mx.example", failure),
                    Some(DaneHost::Refused {
                        result_type: "dnssec-invalid",
                        ..
                    })
                ),
                "must refuse"
            );
        }
    }

    #[test]
    fn cname_target_is_a_reference_identifier() {
        let mut a = answer(Security::Secure, vec![rec(2)]);
        a.base = "target.example".into();
        let Some(DaneHost::Usable { tlsa, .. }) = decide("mx.example", Ok(a)) else {
            panic!()
        };
        assert_eq!(tlsa.names, vec!["mx.example", "target.example"]);
    }

    /// RFC 7672 §2.2.1: the same secure, usable TLSA records count only when the MX
    /// RRset that named the host was itself secure.
    #[tokio::test]
    async fn dane_only_for_securely_learnt_mx_hosts() {
        let tlsa = vec![TlsaRecord {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab; 32],
        }];
        let dns = |mx: Option<Security>| {
            let r = mailroom_dns::StaticResolver::new()
                .with_mx("d.example", 10, "mx.d.example")
                .with_tlsa("mx.d.example", Security::Secure, tlsa.clone());
            match mx {
                Some(s) => r.with_mx_security("d.example", s),
                None => r,
            }
        };
        let hosts = || ["mx.d.example", "MX.d.example"].into_iter();
        let secure = lookup_domain(&dns(Some(Security::Secure)), "d.example", hosts()).await;
        let secure = secure.expect("secure MX");
        assert_eq!(secure.len(), 1);
        assert!(matches!(
            secure.get("mx.d.example"),
            Some(DaneHost::Usable { .. })
        ));
        for insecure in [Some(Security::Insecure), None] {
            let found = lookup_domain(&dns(insecure), "d.example", hosts()).await;
            assert_eq!(found, Ok(HashMap::new()), "insecure MX: no DANE");
        }
        let bogus = lookup_domain(&dns(Some(Security::Bogus)), "d.example", hosts()).await;
        assert!(bogus.is_err_and(|e| e.why.contains("DNSSEC-bogus")));
        let failing = mailroom_dns::StaticResolver::new()
            .with_error("d.example", DnsError::ServFail("SERVFAIL".into()));
        let failed = lookup_domain(&failing, "d.example", hosts()).await;
        assert!(failed.is_err_and(|e| e.why.contains("SERVFAIL")));
    }
}
