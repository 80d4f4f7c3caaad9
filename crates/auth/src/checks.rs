//! Checking what a tenant really published against [`ExpectedRecord`]s, through the
//! `mailroom_dns::Resolver` trait: one record ([`check_record`]) and domain ownership
//! ([`verify_domain`]). Comparisons are semantic where DNS panels differ (SPF
//! mechanisms, DKIM `p=` without whitespace, names in any case), exact elsewhere. DNS
//! failures are a typed temporary outcome, never "missing". Does not store results or
//! schedule re-checks.

use crate::records::{
    ExpectedRecord, RecordKind, RecordOptions, RecordType, normalize, verification_name,
    verification_value,
};
use mailroom_dns::{DnsError, MxAnswer, Resolver};

/// What DNS holds for one expected record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordCheck {
    /// Published as expected (for SPF and DMARC: semantically).
    Correct,
    /// Nothing relevant at the name.
    Missing,
    /// Something relevant but different; what was found.
    WrongValue(String),
    /// DNS did not answer (SERVFAIL, timeout): check again later.
    Temporary(String),
}

/// Why ownership verification failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// No verification record at all.
    Missing,
    /// A verification record with another token.
    WrongValue { found: String },
    /// The right record at the wrong name: typically the apex, or the domain appended
    /// twice by a DNS panel that adds the zone itself (`_mailroom.example.com.example.com`).
    FoundAtWrongName { name: String },
}

/// The outcome of [`verify_domain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    Verified,
    Failed(FailReason),
    /// DNS did not answer: the domain's state should not change.
    TemporaryFailure(String),
}

/// Checks one expected record.
pub async fn check_record<R: Resolver + ?Sized>(
    resolver: &R,
    expected: &ExpectedRecord,
) -> RecordCheck {
    match expected.rtype {
        RecordType::Cname => match resolver.cname(&expected.name).await {
            Ok(Some(target)) if target == normalize(&expected.value) => RecordCheck::Correct,
            Ok(Some(target)) => RecordCheck::WrongValue(target),
            Ok(None) | Err(DnsError::NxDomain) => RecordCheck::Missing,
            Err(e) => RecordCheck::Temporary(e.to_string()),
        },
        RecordType::Mx => check_mx(resolver, expected).await,
        RecordType::Txt => match resolver.txt(&expected.name).await {
            Ok(found) => compare_txt(expected, &found),
            Err(DnsError::NxDomain) => RecordCheck::Missing,
            Err(e) => RecordCheck::Temporary(e.to_string()),
        },
    }
}

/// Checks every record, in order.
pub async fn check_records<R: Resolver + ?Sized>(
    resolver: &R,
    expected: &[ExpectedRecord],
) -> Vec<RecordCheck> {
    let mut out = Vec::with_capacity(expected.len());
    for record in expected {
        out.push(check_record(resolver, record).await);
    }
    out
}

/// Verifies that `domain` published `token` at `_mailroom.<domain>`.
pub async fn verify_domain<R: Resolver + ?Sized>(
    resolver: &R,
    domain: &str,
    token: &str,
) -> Verification {
    verify_domain_with(resolver, domain, token, &RecordOptions::default()).await
}

/// [`verify_domain`] with the operator's verification label.
pub async fn verify_domain_with<R: Resolver + ?Sized>(
    resolver: &R,
    domain: &str,
    token: &str,
    options: &RecordOptions,
) -> Verification {
    let domain = normalize(domain);
    let name = verification_name(&domain, options);
    let expected = ExpectedRecord {
        kind: RecordKind::Verification,
        rtype: RecordType::Txt,
        name: name.clone(),
        value: verification_value(token),
    };
    match check_record(resolver, &expected).await {
        RecordCheck::Correct => return Verification::Verified,
        RecordCheck::WrongValue(found) => {
            return Verification::Failed(FailReason::WrongValue { found });
        }
        RecordCheck::Temporary(reason) => return Verification::TemporaryFailure(reason),
        RecordCheck::Missing => {}
    }
    // Where people put it by mistake. Failures here only mean we cannot say more.
    for wrong in [domain.clone(), format!("{name}.{domain}")] {
        if let Ok(found) = resolver.txt(&wrong).await
            && found.iter().any(|t| t.trim() == expected.value)
        {
            return Verification::Failed(FailReason::FoundAtWrongName { name: wrong });
        }
    }
    Verification::Failed(FailReason::Missing)
}

async fn check_mx<R: Resolver + ?Sized>(resolver: &R, expected: &ExpectedRecord) -> RecordCheck {
    let want = expected
        .value
        .split_whitespace()
        .last()
        .map(normalize)
        .unwrap_or_default();
    match resolver.mx(&expected.name).await {
        Ok(MxAnswer::Hosts(hosts)) => {
            if hosts.iter().any(|h| h.exchange == want) {
                RecordCheck::Correct
            } else {
                RecordCheck::WrongValue(
                    hosts
                        .iter()
                        .map(|h| h.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }
        }
        Ok(MxAnswer::NullMx) => RecordCheck::WrongValue("0 .".to_string()),
        Ok(MxAnswer::NoRecords) | Err(DnsError::NxDomain) => RecordCheck::Missing,
        Err(e) => RecordCheck::Temporary(e.to_string()),
    }
}

/// Compares the TXT records found at the name with what is expected, by kind.
fn compare_txt(expected: &ExpectedRecord, found: &[String]) -> RecordCheck {
    match expected.kind {
        RecordKind::Spf | RecordKind::ReturnPathSpf => compare_spf(&expected.value, found),
        RecordKind::Dkim => compare_dkim(&expected.value, found),
        RecordKind::Dmarc => {
            let dmarc: Vec<&String> = found
                .iter()
                .filter(|t| has_version(t, "v=DMARC1"))
                .collect();
            match dmarc.as_slice() {
                [] => RecordCheck::Missing,
                [one] => {
                    if tag(one, "p").is_some() {
                        RecordCheck::Correct
                    } else {
                        RecordCheck::WrongValue((*one).clone())
                    }
                }
                // More than one DMARC record makes DMARC ignore them all.
                many => RecordCheck::WrongValue(join(many)),
            }
        }
        RecordKind::TlsRpt => {
            let tlsrpt: Vec<&String> = found
                .iter()
                .filter(|t| has_version(t, "v=TLSRPTv1"))
                .collect();
            match tlsrpt.as_slice() {
                [] => RecordCheck::Missing,
                // RFC 8460 §3: a record needs `rua`; two records mean no policy.
                [one] if tag(one, "rua").is_some() => RecordCheck::Correct,
                [one] => RecordCheck::WrongValue((*one).clone()),
                many => RecordCheck::WrongValue(join(many)),
            }
        }
        RecordKind::Verification | RecordKind::ReturnPathMx => {
            if found.iter().any(|t| t.trim() == expected.value.trim()) {
                return RecordCheck::Correct;
            }
            let prefix = expected.value.split('=').next().unwrap_or_default();
            match found
                .iter()
                .find(|t| t.trim().starts_with(prefix) && !prefix.is_empty())
            {
                Some(other) => RecordCheck::WrongValue(other.clone()),
                None => RecordCheck::Missing,
            }
        }
    }
}

/// SPF: exactly one `v=spf1` record, holding every mechanism the expected record
/// has (qualifier `+` or none), whatever else it holds.
fn compare_spf(expected: &str, found: &[String]) -> RecordCheck {
    let spf: Vec<&String> = found.iter().filter(|t| has_version(t, "v=spf1")).collect();
    let one = match spf.as_slice() {
        [] => return RecordCheck::Missing,
        [one] => *one,
        // RFC 7208 §4.5: more than one record is a permanent error.
        many => return RecordCheck::WrongValue(join(many)),
    };
    let published: Vec<String> = one
        .split_whitespace()
        .skip(1)
        .map(canonical_mechanism)
        .collect();
    let wanted = expected
        .split_whitespace()
        .skip(1)
        .filter(|m| !m.to_ascii_lowercase().ends_with("all"));
    for mechanism in wanted {
        if !published.contains(&canonical_mechanism(mechanism)) {
            return RecordCheck::WrongValue(one.clone());
        }
    }
    RecordCheck::Correct
}

/// A mechanism in one spelling: lowercase, no `+`, `ip4:a.b.c.d/32` as `ip4:a.b.c.d`,
/// IPv6 addresses in their canonical text form.
fn canonical_mechanism(m: &str) -> String {
    let m = m.trim().to_ascii_lowercase();
    let m = m.strip_prefix('+').unwrap_or(&m).to_string();
    for (prefix, full) in [("ip4:", "/32"), ("ip6:", "/128")] {
        if let Some(rest) = m.strip_prefix(prefix) {
            let rest = rest.strip_suffix(full).unwrap_or(rest);
            let (addr, len) = match rest.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (rest, None),
            };
            let addr = addr
                .parse::<std::net::IpAddr>()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.to_string());
            return match len {
                Some(l) => format!("{prefix}{addr}/{l}"),
                None => format!("{prefix}{addr}"),
            };
        }
    }
    m
}

/// DKIM: a record whose `p=` (whitespace removed) is the expected one; `k=` must
/// agree when both give it.
fn compare_dkim(expected: &str, found: &[String]) -> RecordCheck {
    let want_p = tag(expected, "p").map(strip_ws).unwrap_or_default();
    let want_k = tag(expected, "k").map(|k| k.to_ascii_lowercase());
    let keys: Vec<&String> = found
        .iter()
        .filter(|t| has_version(t, "v=DKIM1") || tag(t, "p").is_some())
        .collect();
    for record in &keys {
        let p = tag(record, "p").map(strip_ws).unwrap_or_default();
        let k = tag(record, "k").map(|k| k.to_ascii_lowercase());
        // k= defaults to rsa (RFC 6376 §3.6.1).
        let k_ok = want_k.as_deref().unwrap_or("rsa") == k.as_deref().unwrap_or("rsa");
        if p == want_p && !p.is_empty() && k_ok {
            return RecordCheck::Correct;
        }
    }
    match keys.first() {
        Some(other) => RecordCheck::WrongValue((*other).clone()),
        None => RecordCheck::Missing,
    }
}

/// Whether a TXT record starts with `version` (`v=spf1`, `v=DKIM1`), case-insensitive
/// and followed by the end, a space or `;`.
fn has_version(text: &str, version: &str) -> bool {
    let t = text.trim_start();
    t.len() >= version.len()
        && t.is_char_boundary(version.len())
        && t[..version.len()].eq_ignore_ascii_case(version)
        && matches!(
            t[version.len()..].chars().next(),
            None | Some(' ' | ';' | '\t')
        )
}

/// The value of a `tag=value` in a `;`-separated record.
fn tag<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn strip_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn join(records: &[&String]) -> String {
    records
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(kind: RecordKind, value: &str) -> ExpectedRecord {
        ExpectedRecord {
            kind,
            rtype: RecordType::Txt,
            name: "example.com".into(),
            value: value.into(),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn spf_is_compared_by_mechanism() {
        let want = txt(RecordKind::Spf, "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 ~all");
        let ok = s(&[
            "google-site-verification=x",
            "V=SPF1 mx +ip4:192.0.2.1/32 ip6:2001:DB8:0::1 include:other -all",
        ]);
        assert_eq!(compare_txt(&want, &ok), RecordCheck::Correct);
        assert_eq!(compare_txt(&want, &s(&["hello"])), RecordCheck::Missing);
        assert!(matches!(
            compare_txt(&want, &s(&["v=spf1 ip4:192.0.2.2 -all"])),
            RecordCheck::WrongValue(_)
        ));
        // A network wider than one address is not the same mechanism.
        assert!(matches!(
            compare_txt(&want, &s(&["v=spf1 ip4:192.0.2.1/24 ip6:2001:db8::1 -all"])),
            RecordCheck::WrongValue(_)
        ));
        // -ip4 does not authorise.
        assert!(matches!(
            compare_txt(&want, &s(&["v=spf1 -ip4:192.0.2.1 ip6:2001:db8::1 -all"])),
            RecordCheck::WrongValue(_)
        ));
        assert!(matches!(
            compare_txt(
                &want,
                &s(&["v=spf1 ip4:192.0.2.1 ip6:2001:db8::1", "v=spf1 -all"])
            ),
            RecordCheck::WrongValue(_)
        ));
        // "v=spf10" is not SPF.
        assert_eq!(
            compare_txt(&want, &s(&["v=spf10 ip4:192.0.2.1"])),
            RecordCheck::Missing
        );
        let inc = txt(
            RecordKind::ReturnPathSpf,
            "v=spf1 include:spf.op.example -all",
        );
        assert_eq!(
            compare_txt(&inc, &s(&["v=spf1 include:SPF.op.example ~all"])),
            RecordCheck::Correct
        );
    }

    #[test]
    fn dkim_compares_p_without_whitespace() {
        let want = txt(RecordKind::Dkim, "v=DKIM1; k=ed25519; p=ABCDEF==");
        assert_eq!(
            compare_txt(&want, &s(&["v=DKIM1;k=ed25519;  p=ABC DEF=="])),
            RecordCheck::Correct
        );
        assert!(matches!(
            compare_txt(&want, &s(&["v=DKIM1; k=ed25519; p=XYZ"])),
            RecordCheck::WrongValue(_)
        ));
        // Same p= under another k= (default rsa) is wrong.
        assert!(matches!(
            compare_txt(&want, &s(&["v=DKIM1; p=ABCDEF=="])),
            RecordCheck::WrongValue(_)
        ));
        assert_eq!(compare_txt(&want, &s(&["unrelated"])), RecordCheck::Missing);
        let rsa = txt(RecordKind::Dkim, "v=DKIM1; k=rsa; p=MIIB");
        assert_eq!(compare_txt(&rsa, &s(&["p=MIIB"])), RecordCheck::Correct);
    }

    #[test]
    fn dmarc_any_valid_policy() {
        let want = txt(RecordKind::Dmarc, "v=DMARC1; p=none");
        assert_eq!(
            compare_txt(&want, &s(&["v=DMARC1; p=reject; rua=mailto:a@b"])),
            RecordCheck::Correct
        );
        assert!(matches!(
            compare_txt(&want, &s(&["v=DMARC1; rua=mailto:a@b"])),
            RecordCheck::WrongValue(_)
        ));
        assert!(matches!(
            compare_txt(&want, &s(&["v=DMARC1; p=none", "v=DMARC1; p=reject"])),
            RecordCheck::WrongValue(_)
        ));
        assert_eq!(compare_txt(&want, &s(&[])), RecordCheck::Missing);
    }

    /// TLS-RPT: one `v=TLSRPTv1` record with a `rua` (any address will do).
    #[test]
    fn tlsrpt_one_record_with_rua() {
        let want = txt(
            RecordKind::TlsRpt,
            "v=TLSRPTv1; rua=mailto:tls-rpt@rp.example.com",
        );
        assert_eq!(
            compare_txt(&want, &s(&["v=TLSRPTv1; rua=https://r.example/tls"])),
            RecordCheck::Correct
        );
        assert!(matches!(
            compare_txt(&want, &s(&["v=TLSRPTv1;"])),
            RecordCheck::WrongValue(_)
        ));
        assert!(matches!(
            compare_txt(
                &want,
                &s(&["v=TLSRPTv1; rua=mailto:a@b", "v=TLSRPTv1; rua=mailto:c@d"])
            ),
            RecordCheck::WrongValue(_)
        ));
        assert_eq!(
            compare_txt(&want, &s(&["v=spf1 -all"])),
            RecordCheck::Missing
        );
    }

    #[test]
    fn verification_token() {
        let want = txt(RecordKind::Verification, "mailroom-verification=abc");
        assert_eq!(
            compare_txt(&want, &s(&["x", " mailroom-verification=abc "])),
            RecordCheck::Correct
        );
        assert_eq!(
            compare_txt(&want, &s(&["mailroom-verification=old"])),
            RecordCheck::WrongValue("mailroom-verification=old".into())
        );
        assert_eq!(
            compare_txt(&want, &s(&["v=spf1 -all"])),
            RecordCheck::Missing
        );
    }

    #[test]
    fn mechanisms_canonicalised() {
        assert_eq!(canonical_mechanism("+IP4:192.0.2.1/32"), "ip4:192.0.2.1");
        assert_eq!(
            canonical_mechanism("ip6:2001:DB8:0:0::1/128"),
            "ip6:2001:db8::1"
        );
        assert_eq!(
            canonical_mechanism("ip6:2001:db8::/32"),
            "ip6:2001:db8::/32"
        );
        assert_eq!(canonical_mechanism("-all"), "-all");
        assert!(!has_version("v=é", "v=spf1"));
    }
}
