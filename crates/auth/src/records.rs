//! What a tenant must publish in DNS for a sending domain, as data: the ownership
//! token, DKIM keys (TXT, or CNAME into the operator's zone), SPF, DMARC and TLS-RPT
//! suggestions (with Mailroom's report addresses when it takes reports) and the return-path (bounce) subdomain's MX and SPF. Also says which of them would not
//! work as published ([`record_problem`]: an MX with nothing behind it, an SPF naming
//! only loopback addresses) and renders them as BIND zone lines. Pure functions;
//! checking what is really published is `checks`.

use crate::keys::DkimKey;
use std::fmt;
use std::net::IpAddr;

/// Why a record exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The ownership token (`mailroom-verification=<token>`).
    Verification,
    /// A DKIM public key (or the CNAME pointing at it).
    Dkim,
    /// SPF of the domain itself.
    Spf,
    /// The DMARC policy (a suggestion: any valid DMARC record will do).
    Dmarc,
    /// MX of the return-path subdomain, so bounces reach the operator.
    ReturnPathMx,
    /// SPF of the return-path subdomain (the envelope sender SPF checks).
    ReturnPathSpf,
    /// The TLS-RPT policy (`_smtp._tls`, RFC 8460): where senders report TLS failures
    /// toward the domain's MX (a suggestion, only when Mailroom takes the reports).
    TlsRpt,
}

/// DNS record type of an [`ExpectedRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    Txt,
    Cname,
    Mx,
}

impl RecordType {
    /// `"TXT"`, `"CNAME"` or `"MX"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Txt => "TXT",
            RecordType::Cname => "CNAME",
            RecordType::Mx => "MX",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedRecord {
    pub kind: RecordKind,
    pub rtype: RecordType,
    /// Owner name, lowercase, without the trailing dot (`_mailroom.example.com`).
    pub name: String,
    /// The record data as a person types it into a DNS panel: TXT text unquoted,
    /// CNAME target and MX host without the trailing dot, MX as `<pref> <host>`.
    pub value: String,
}

/// How the domain authorises the operator's egress in SPF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpfAuthorization {
    /// `include:<name>`: the operator publishes its addresses at `name`.
    Include(String),
    /// `ip4:`/`ip6:` mechanisms for each egress address.
    Addresses(Vec<IpAddr>),
}

/// The operator's choices that shape a tenant's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    /// Label of the verification TXT under the domain; `_mailroom` gives
    /// `_mailroom.<domain>`.
    pub verification_label: String,
    /// Label of the return-path subdomain (`bounces` → `bounces.<domain>`); `None`
    /// publishes no return-path records.
    pub return_path_label: Option<String>,
    /// Host the return-path MX points at (the operator's bounce receiver). Without it
    /// the MX names `hostname`.
    pub return_path_mx: Option<String>,
    /// This server's name: the return-path MX points here when `return_path_mx` is
    /// unset.
    pub hostname: String,
    /// This server runs an intake listener, so an MX naming `hostname` reaches it.
    pub intake_listening: bool,
    /// How SPF authorises the operator.
    pub spf: SpfAuthorization,
    /// When set, DKIM keys are published by the operator at
    /// `<selector>.<domain>.<zone>` and the tenant adds a CNAME there, so the operator
    /// can rotate keys without the tenant.
    pub dkim_cname_zone: Option<String>,
    /// `rua=` address for DMARC aggregate reports (`mailto:` added if missing).
    pub dmarc_rua: Option<String>,
    /// The return-path receiver takes DMARC aggregate and TLS-RPT reports: the DMARC
    /// and TLS-RPT records suggest `rua=mailto:dmarc@<rp>` / `tls-rpt@<rp>` of the
    /// return-path subdomain `<rp>` (needs `return_path_label`).
    pub report_intake: bool,
}

impl Default for RecordOptions {
    /// `_mailroom`, `bounces` with an MX naming `localhost` and no intake (both
    /// reported by [`record_problem`]), SPF with `ip4:127.0.0.1` (a placeholder, also
    /// reported: real deployments set their egress), DKIM as TXT, no `rua`.
    fn default() -> Self {
        Self {
            verification_label: "_mailroom".to_string(),
            return_path_label: Some("bounces".to_string()),
            return_path_mx: None,
            hostname: "localhost".to_string(),
            intake_listening: false,
            spf: SpfAuthorization::Addresses(vec![IpAddr::from([127, 0, 0, 1])]),
            dkim_cname_zone: None,
            dmarc_rua: None,
            report_intake: false,
        }
    }
}

/// Local part of the DMARC `rua` address at the return-path subdomain (the intake
/// listener accepts it: `mailroom_intake::DMARC_LOCAL`).
pub const DMARC_REPORTS: &str = "dmarc";
/// Local part of the TLS-RPT `rua` address (`mailroom_intake::TLSRPT_LOCAL`).
pub const TLSRPT_REPORTS: &str = "tls-rpt";

/// The TXT text of the verification record for `token`.
pub fn verification_value(token: &str) -> String {
    format!("mailroom-verification={token}")
}

/// The owner name of the verification record.
pub fn verification_name(domain: &str, options: &RecordOptions) -> String {
    format!("{}.{}", options.verification_label, normalize(domain))
}

/// The SPF mechanisms that authorise the operator (`include:spf.op.example`,
/// `ip4:192.0.2.1`, `ip6:2001:db8::1`).
pub fn spf_mechanisms(spf: &SpfAuthorization) -> Vec<String> {
    match spf {
        SpfAuthorization::Include(name) => vec![format!("include:{}", normalize(name))],
        SpfAuthorization::Addresses(ips) => ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => format!("ip4:{v4}"),
                IpAddr::V6(v6) => format!("ip6:{v6}"),
            })
            .collect(),
    }
}

/// Everything `domain` must publish: verification, one DKIM record per
/// `(selector, key)`, SPF, DMARC, and the return-path MX and SPF whenever VERP is on
/// (`return_path_label`).
pub fn expected_records(
    domain: &str,
    token: &str,
    dkim: &[(&str, &DkimKey)],
    options: &RecordOptions,
) -> Vec<ExpectedRecord> {
    let domain = normalize(domain);
    let mut out = vec![ExpectedRecord {
        kind: RecordKind::Verification,
        rtype: RecordType::Txt,
        name: verification_name(&domain, options),
        value: verification_value(token),
    }];
    for (selector, key) in dkim {
        let selector = selector.to_ascii_lowercase();
        let name = format!("{selector}._domainkey.{domain}");
        out.push(match &options.dkim_cname_zone {
            Some(zone) => ExpectedRecord {
                kind: RecordKind::Dkim,
                rtype: RecordType::Cname,
                name,
                value: format!("{selector}.{domain}.{}", normalize(zone)),
            },
            None => ExpectedRecord {
                kind: RecordKind::Dkim,
                rtype: RecordType::Txt,
                name,
                value: key.public_txt(),
            },
        });
    }
    let mechanisms = spf_mechanisms(&options.spf).join(" ");
    // The domain's own SPF ends in ~all: it may send from elsewhere too, and a tenant
    // merging our mechanisms into an existing record keeps its own ending.
    out.push(ExpectedRecord {
        kind: RecordKind::Spf,
        rtype: RecordType::Txt,
        name: domain.clone(),
        value: format!("v=spf1 {mechanisms} ~all"),
    });
    // Reports to Mailroom's own intake (at the return-path subdomain, whose MX names
    // it), then to the operator's address.
    let report_host = options
        .return_path_label
        .as_ref()
        .filter(|_| options.report_intake)
        .map(|label| format!("{label}.{domain}"));
    let mut rua: Vec<String> = report_host
        .iter()
        .map(|h| format!("mailto:{DMARC_REPORTS}@{h}"))
        .collect();
    rua.extend(options.dmarc_rua.as_ref().map(|r| {
        if r.starts_with("mailto:") {
            r.clone()
        } else {
            format!("mailto:{r}")
        }
    }));
    let rua = (!rua.is_empty()).then(|| format!("; rua={}", rua.join(",")));
    out.push(ExpectedRecord {
        kind: RecordKind::Dmarc,
        rtype: RecordType::Txt,
        name: format!("_dmarc.{domain}"),
        value: format!("v=DMARC1; p=none{}", rua.unwrap_or_default()),
    });
    if let Some(host) = &report_host {
        out.push(ExpectedRecord {
            kind: RecordKind::TlsRpt,
            rtype: RecordType::Txt,
            name: format!("_smtp._tls.{domain}"),
            value: format!("v=TLSRPTv1; rua=mailto:{TLSRPT_REPORTS}@{host}"),
        });
    }
    if let Some(label) = &options.return_path_label {
        let rp = format!("{label}.{domain}");
        out.push(ExpectedRecord {
            kind: RecordKind::ReturnPathMx,
            rtype: RecordType::Mx,
            name: rp.clone(),
            value: format!("10 {}", normalize(return_path_host(options))),
        });
        // Only Mailroom sends with this envelope domain: -all.
        out.push(ExpectedRecord {
            kind: RecordKind::ReturnPathSpf,
            rtype: RecordType::Txt,
            name: rp,
            value: format!("v=spf1 {mechanisms} -all"),
        });
    }
    out
}

/// The host the return-path MX names: `return_path_mx`, else this server.
pub fn return_path_host(options: &RecordOptions) -> &str {
    options
        .return_path_mx
        .as_deref()
        .unwrap_or(&options.hostname)
}

/// Whether `host` could be an MX target on the Internet: a dotted name that is not
/// `localhost` and not an address literal.
fn public_host(host: &str) -> bool {
    let host = normalize(host);
    host.contains('.')
        && host.parse::<IpAddr>().is_err()
        && host != "localhost"
        && !host.ends_with(".localhost")
}

/// Whether SPF built from `spf` names only loopback (or unspecified) addresses, i.e.
/// authorises no address mail from this server really comes from.
pub fn spf_only_loopback(spf: &SpfAuthorization) -> bool {
    match spf {
        SpfAuthorization::Include(_) => false,
        SpfAuthorization::Addresses(ips) => {
            ips.iter().all(|ip| ip.is_loopback() || ip.is_unspecified())
        }
    }
}

/// Why the return-path MX at `name` would not bring bounces home (`None`: it would):
/// nothing receives them, or the MX host is not a public name.
pub fn return_path_problem(options: &RecordOptions, name: &str) -> Option<String> {
    let host = normalize(return_path_host(options));
    if options.return_path_mx.is_none() && !options.intake_listening {
        Some(format!(
            "nothing receives mail for {name}: this server's bounce intake is off \
             (intake.listen) and domains.return_path_mx names no other receiver, so bounces \
             and complaints sent to the return path are lost"
        ))
    } else if !public_host(&host) {
        Some(format!(
            "the MX host {host} is not a public DNS name: set domains.return_path_mx (or \
             hostname) to the name of the host running intake.listen"
        ))
    } else {
        None
    }
}

/// Why mail relying on `record` would not work as the operator configured it (`None`:
/// it would, once published): a return-path MX with nothing behind it, or an SPF record
/// naming only loopback addresses. The text names the configuration keys to set.
pub fn record_problem(record: &ExpectedRecord, options: &RecordOptions) -> Option<String> {
    match record.kind {
        RecordKind::ReturnPathMx => return_path_problem(options, &record.name),
        RecordKind::Spf | RecordKind::ReturnPathSpf if spf_only_loopback(&options.spf) => {
            Some(format!(
                "SPF names only loopback addresses ({}), so receivers fail SPF for mail from \
                 this server: set domains.egress_ips (or domains.spf_include) to its public \
                 egress addresses",
                spf_mechanisms(&options.spf).join(" ")
            ))
        }
        _ => None,
    }
}

/// BIND zone-file lines for `records`, one per record with absolute names; TXT text is
/// quoted (with `"` and `\` escaped) and split into strings of at most 255 octets.
pub fn render_zone_file(records: &[ExpectedRecord]) -> String {
    let mut out = String::new();
    for r in records {
        let data = match r.rtype {
            RecordType::Txt => txt_strings(&r.value),
            RecordType::Cname => format!("{}.", r.value),
            RecordType::Mx => format!("{}.", r.value),
        };
        out.push_str(&format!("{}.\tIN\t{}\t{}\n", r.name, r.rtype, data));
    }
    out
}

/// `"…" "…"`: quoted character-strings of at most 255 octets each (before escaping),
/// never splitting a UTF-8 sequence or an escape.
fn txt_strings(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut octets = 0;
    for c in text.chars() {
        if octets + c.len_utf8() > 255 {
            parts.push(std::mem::take(&mut current));
            octets = 0;
        }
        if c == '"' || c == '\\' {
            current.push('\\');
        }
        current.push(c);
        octets += c.len_utf8();
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lowercase, without a trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;

    fn find(records: &[ExpectedRecord], kind: RecordKind) -> Vec<&ExpectedRecord> {
        records.iter().filter(|r| r.kind == kind).collect()
    }

    #[test]
    fn defaults() {
        let key = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let records = expected_records(
            "Example.COM.",
            "tok123",
            &[("mr202607e", &key)],
            &RecordOptions::default(),
        );
        let v = find(&records, RecordKind::Verification)[0];
        assert_eq!(
            (v.rtype, v.name.as_str(), v.value.as_str()),
            (
                RecordType::Txt,
                "_mailroom.example.com",
                "mailroom-verification=tok123"
            )
        );
        let d = find(&records, RecordKind::Dkim)[0];
        assert_eq!(d.name, "mr202607e._domainkey.example.com");
        assert_eq!(d.value, key.public_txt());
        let spf = find(&records, RecordKind::Spf)[0];
        assert_eq!(
            (spf.name.as_str(), spf.value.as_str()),
            ("example.com", "v=spf1 ip4:127.0.0.1 ~all")
        );
        let dmarc = find(&records, RecordKind::Dmarc)[0];
        assert_eq!(
            (dmarc.name.as_str(), dmarc.value.as_str()),
            ("_dmarc.example.com", "v=DMARC1; p=none")
        );
        let mx = find(&records, RecordKind::ReturnPathMx)[0];
        assert_eq!(
            (mx.rtype, mx.name.as_str(), mx.value.as_str()),
            (RecordType::Mx, "bounces.example.com", "10 localhost")
        );
        let rp = find(&records, RecordKind::ReturnPathSpf)[0];
        assert_eq!(
            (rp.name.as_str(), rp.value.as_str()),
            ("bounces.example.com", "v=spf1 ip4:127.0.0.1 -all")
        );
    }

    /// The defaults do not work on the Internet, and the records say so, naming the keys.
    #[test]
    fn default_records_that_would_not_work_are_marked() {
        let options = RecordOptions::default();
        let records = expected_records("example.com", "t", &[], &options);
        let problem = |kind| record_problem(find(&records, kind)[0], &options);
        let mx = problem(RecordKind::ReturnPathMx).expect("MX without a receiver");
        assert!(mx.contains("bounces.example.com"), "{mx}");
        assert!(
            mx.contains("intake.listen") && mx.contains("domains.return_path_mx"),
            "{mx}"
        );
        for kind in [RecordKind::Spf, RecordKind::ReturnPathSpf] {
            let spf = problem(kind).expect("loopback SPF");
            assert!(
                spf.contains("ip4:127.0.0.1") && spf.contains("domains.egress_ips"),
                "{spf}"
            );
        }
        for kind in [RecordKind::Verification, RecordKind::Dmarc] {
            assert_eq!(problem(kind), None);
        }
    }

    #[test]
    fn return_path_mx_follows_intake_and_the_operator() {
        let egress = SpfAuthorization::Addresses(vec!["192.0.2.7".parse().unwrap()]);
        // Intake on this server: the MX names it, and works if its name is public.
        let options = RecordOptions {
            hostname: "MX1.Op.Example".into(),
            intake_listening: true,
            spf: egress.clone(),
            ..RecordOptions::default()
        };
        let records = expected_records("example.com", "t", &[], &options);
        let mx = find(&records, RecordKind::ReturnPathMx)[0];
        assert_eq!(mx.value, "10 mx1.op.example");
        assert!(
            records
                .iter()
                .all(|r| record_problem(r, &options).is_none())
        );
        // Intake on, but the server calls itself localhost.
        let local = RecordOptions {
            hostname: "localhost".into(),
            ..options.clone()
        };
        let records = expected_records("example.com", "t", &[], &local);
        let problem = record_problem(find(&records, RecordKind::ReturnPathMx)[0], &local).unwrap();
        assert!(problem.contains("localhost") && problem.contains("domains.return_path_mx"));
        // No intake here, but the operator names another receiver.
        let elsewhere = RecordOptions {
            return_path_mx: Some("bounce.op.example".into()),
            intake_listening: false,
            ..local
        };
        let records = expected_records("example.com", "t", &[], &elsewhere);
        assert_eq!(
            find(&records, RecordKind::ReturnPathMx)[0].value,
            "10 bounce.op.example"
        );
        assert!(
            records
                .iter()
                .all(|r| record_problem(r, &elsewhere).is_none())
        );
        // Loopback-only egress is still a problem; an include or a public address is not.
        assert!(spf_only_loopback(&SpfAuthorization::Addresses(vec![
            "::1".parse().unwrap(),
            "127.0.0.2".parse().unwrap()
        ])));
        assert!(!spf_only_loopback(&egress));
        assert!(!spf_only_loopback(&SpfAuthorization::Include(
            "spf.op.example".into()
        )));
    }

    #[test]
    fn operator_choices() {
        let key = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let options = RecordOptions {
            verification_label: "_mr-verify".into(),
            return_path_label: Some("rp".into()),
            return_path_mx: Some("Bounce.Op.Example.".into()),
            hostname: "localhost".into(),
            intake_listening: false,
            spf: SpfAuthorization::Include("spf.op.example".into()),
            dkim_cname_zone: Some("dkim.op.example".into()),
            dmarc_rua: Some("dmarc@op.example".into()),
            report_intake: false,
        };
        let records = expected_records("example.com", "t", &[("MR202607r", &key)], &options);
        assert_eq!(
            find(&records, RecordKind::Verification)[0].name,
            "_mr-verify.example.com"
        );
        let d = find(&records, RecordKind::Dkim)[0];
        assert_eq!(
            (d.rtype, d.name.as_str(), d.value.as_str()),
            (
                RecordType::Cname,
                "mr202607r._domainkey.example.com",
                "mr202607r.example.com.dkim.op.example"
            )
        );
        assert_eq!(
            find(&records, RecordKind::Spf)[0].value,
            "v=spf1 include:spf.op.example ~all"
        );
        assert_eq!(
            find(&records, RecordKind::Dmarc)[0].value,
            "v=DMARC1; p=none; rua=mailto:dmarc@op.example"
        );
        let mx = find(&records, RecordKind::ReturnPathMx)[0];
        assert_eq!(
            (mx.rtype, mx.name.as_str(), mx.value.as_str()),
            (RecordType::Mx, "rp.example.com", "10 bounce.op.example")
        );
        let none = RecordOptions {
            return_path_label: None,
            ..options
        };
        let records = expected_records("example.com", "t", &[], &none);
        assert!(find(&records, RecordKind::ReturnPathSpf).is_empty());
        assert!(find(&records, RecordKind::Dkim).is_empty());
        assert!(find(&records, RecordKind::TlsRpt).is_empty());
    }

    /// With report intake on, DMARC and TLS-RPT suggest the return-path subdomain's
    /// report addresses (the operator's `rua` kept after Mailroom's); without a
    /// return-path subdomain there is nowhere to suggest.
    #[test]
    fn report_addresses_at_the_return_path() {
        let options = RecordOptions {
            return_path_label: Some("rp".into()),
            intake_listening: true,
            dmarc_rua: Some("dmarc@op.example".into()),
            report_intake: true,
            ..RecordOptions::default()
        };
        let records = expected_records("Example.com", "t", &[], &options);
        assert_eq!(
            find(&records, RecordKind::Dmarc)[0].value,
            "v=DMARC1; p=none; rua=mailto:dmarc@rp.example.com,mailto:dmarc@op.example"
        );
        let t = find(&records, RecordKind::TlsRpt)[0];
        assert_eq!(
            (t.rtype, t.name.as_str(), t.value.as_str()),
            (
                RecordType::Txt,
                "_smtp._tls.example.com",
                "v=TLSRPTv1; rua=mailto:tls-rpt@rp.example.com"
            )
        );
        assert!(record_problem(t, &options).is_none());
        let no_verp = RecordOptions {
            return_path_label: None,
            dmarc_rua: None,
            ..options
        };
        let records = expected_records("example.com", "t", &[], &no_verp);
        assert_eq!(
            find(&records, RecordKind::Dmarc)[0].value,
            "v=DMARC1; p=none"
        );
        assert!(find(&records, RecordKind::TlsRpt).is_empty());
    }

    #[test]
    fn ipv6_egress() {
        let spf = SpfAuthorization::Addresses(vec![
            "192.0.2.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]);
        assert_eq!(
            spf_mechanisms(&spf),
            vec!["ip4:192.0.2.1", "ip6:2001:db8::1"]
        );
    }

    #[test]
    fn zone_file_splits_long_txt() {
        let key = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let options = RecordOptions {
            return_path_mx: Some("mx.op.example".into()),
            ..RecordOptions::default()
        };
        let records = expected_records("example.com", "tok", &[("s1", &key)], &options);
        let zone = render_zone_file(&records);
        let dkim_line = zone
            .lines()
            .find(|l| l.starts_with("s1._domainkey.example.com.\tIN\tTXT\t"))
            .unwrap();
        let data = dkim_line.rsplit('\t').next().unwrap();
        let strings: Vec<&str> = data.split("\" \"").collect();
        assert!(strings.len() >= 2, "{dkim_line}");
        let joined: String = strings.iter().map(|s| s.trim_matches('"')).collect();
        assert_eq!(joined, key.public_txt());
        assert!(strings.iter().all(|s| s.trim_matches('"').len() <= 255));
        assert!(zone.contains("bounces.example.com.\tIN\tMX\t10 mx.op.example.\n"));
        assert!(zone.contains("_mailroom.example.com.\tIN\tTXT\t\"mailroom-verification=tok\"\n"));
        assert_eq!(zone.lines().count(), records.len());
    }

    #[test]
    fn txt_quoting() {
        assert_eq!(txt_strings("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let s = "é".repeat(200);
        let q = txt_strings(&s);
        assert_eq!(q.matches("\" \"").count(), 1);
    }
}
