//! TLS-RPT (RFC 8460) reports, pure: a day's counters ([`TlsResultCount`]) become one
//! JSON report per policy domain (§4.4), gzipped; the `rua` of `_smtp._tls.<domain>`
//! says where it goes (§3); [`report_mail`] writes the `multipart/report;
//! report-type=tlsrpt` message for a `mailto:` destination (§5.3). Sending (by mail
//! through ingest, by HTTPS POST) and the daily schedule belong to the binary's task.

use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;
use mailroom_store::TlsResultCount;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;

/// Who writes the reports (the operator), as the report and its mail show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info` (an address or URL).
    pub contact: String,
    /// The submitter's host name (`TLS-Report-Submitter`, the report-id's right side).
    pub host: String,
}

/// One domain's report for one day.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainReport {
    /// The policy domain (lowercase).
    pub domain: String,
    pub report_id: String,
    /// The RFC 8460 §4.4 JSON document.
    pub json: Value,
    /// Unix seconds of the day's start and end (for the attachment's file name).
    pub begin: i64,
    pub end: i64,
}

/// The day's reports, one per policy domain, domains in order. `day`: `YYYY-MM-DD`.
pub fn build_reports(day: &str, counts: &[TlsResultCount], by: &Submitter) -> Vec<DomainReport> {
    let begin = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default();
    let end = begin + 86_399;
    // domain → (policy-type, policy-string) → counts
    type Key = (String, String);
    let mut domains: BTreeMap<&str, BTreeMap<Key, Vec<&TlsResultCount>>> = BTreeMap::new();
    for c in counts {
        domains
            .entry(c.result.domain.as_str())
            .or_default()
            .entry((c.result.policy_type.clone(), c.result.policy_string.clone()))
            .or_default()
            .push(c);
    }
    domains
        .into_iter()
        .map(|(domain, policies)| {
            let report_id = format!("{day}.{domain}@{}", by.host);
            let policies: Vec<Value> = policies
                .into_iter()
                .map(|((ptype, pstring), rows)| policy_json(domain, &ptype, &pstring, &rows))
                .collect();
            let json = json!({
                "organization-name": by.organization,
                "date-range": {
                    "start-datetime": format!("{day}T00:00:00Z"),
                    "end-datetime": format!("{day}T23:59:59Z"),
                },
                "contact-info": by.contact,
                "report-id": report_id,
                "policies": policies,
            });
            DomainReport {
                domain: domain.to_string(),
                report_id,
                json,
                begin,
                end,
            }
        })
        .collect()
}

fn policy_json(domain: &str, ptype: &str, pstring: &str, rows: &[&TlsResultCount]) -> Value {
    let mut ok = 0i64;
    let mut failed = 0i64;
    // (result-type, mx) → count
    let mut details: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in rows {
        if r.result.result_type == "success" {
            ok += r.count;
        } else {
            failed += r.count;
            *details
                .entry((r.result.result_type.as_str(), r.result.mx_host.as_str()))
                .or_default() += r.count;
        }
    }
    let mut policy = json!({
        "policy-type": ptype,
        "policy-domain": domain,
    });
    if !pstring.is_empty() {
        policy["policy-string"] = json!(pstring.lines().collect::<Vec<_>>());
    }
    if ptype == "sts" {
        let mx: Vec<&str> = pstring
            .lines()
            .filter_map(|l| l.strip_prefix("mx:").map(str::trim))
            .collect();
        if !mx.is_empty() {
            policy["mx-host"] = json!(mx);
        }
    }
    let failure_details: Vec<Value> = details
        .into_iter()
        .map(|((rt, mx), n)| {
            let mut d = json!({ "result-type": rt, "failed-session-count": n });
            if !mx.is_empty() {
                d["receiving-mx-hostname"] = json!(mx);
            }
            d
        })
        .collect();
    let mut out = json!({
        "policy": policy,
        "summary": {
            "total-successful-session-count": ok,
            "total-failure-session-count": failed,
        },
    });
    if !failure_details.is_empty() {
        out["failure-details"] = json!(failure_details);
    }
    out
}

/// The report as sent: JSON, gzipped (§5.1).
pub fn gzip_json(json: &Value) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(json.to_string().as_bytes());
    gz.finish().unwrap_or_default()
}

/// Where a domain wants its reports (§3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rua {
    Mailto(String),
    Https(String),
}

/// The `rua` destinations of the `_smtp._tls` TXT records: exactly one record that
/// starts with `v=TLSRPTv1` counts (§3); anything else gives none. Unknown schemes
/// are skipped.
pub fn parse_rua(records: &[String]) -> Vec<Rua> {
    let ours: Vec<&String> = records
        .iter()
        .filter(|r| {
            r.trim_start()
                .to_ascii_lowercase()
                .starts_with("v=tlsrptv1")
        })
        .collect();
    let [record] = ours.as_slice() else {
        return Vec::new();
    };
    record
        .split(';')
        .filter_map(|field| field.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("rua"))
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|uri| {
            let uri = uri.trim();
            let lower = uri.to_ascii_lowercase();
            if lower.starts_with("mailto:") {
                let addr = uri[7..].split('?').next().unwrap_or_default().trim();
                (addr.contains('@')).then(|| Rua::Mailto(addr.to_string()))
            } else if lower.starts_with("https://") {
                Some(Rua::Https(uri.to_string()))
            } else {
                None
            }
        })
        .collect()
}

/// The report mail (§5.3): `multipart/report; report-type="tlsrpt"`, a short text part
/// and the gzipped JSON as `application/tlsrpt+gzip`. `date`: RFC 5322 date text.
pub fn report_mail(
    report: &DomainReport,
    by: &Submitter,
    from: &str,
    to: &str,
    date: &str,
) -> Vec<u8> {
    let boundary = format!("tlsrpt-{}", report.begin);
    let gz = gzip_json(&report.json);
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz);
    let mut body = String::new();
    let mut line = |s: &str| {
        body.push_str(s);
        body.push_str("\r\n");
    };
    line(&format!("From: <{from}>"));
    line(&format!("To: <{to}>"));
    line(&format!("Date: {date}"));
    line(&format!(
        "Subject: Report Domain: {} Submitter: {} Report-ID: <{}>",
        report.domain, by.host, report.report_id
    ));
    line(&format!("Message-ID: <tlsrpt.{}>", report.report_id));
    line(&format!("TLS-Report-Domain: {}", report.domain));
    line(&format!("TLS-Report-Submitter: {}", by.host));
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\""
    ));
    line("");
    line("This is a multipart message in MIME format.");
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: text/plain; charset=\"us-ascii\"");
    line("Content-Transfer-Encoding: 7bit");
    line("");
    line(&format!(
        "This is an aggregate TLS report from {} for {}.",
        by.host, report.domain
    ));
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: application/tlsrpt+gzip");
    line("Content-Transfer-Encoding: base64");
    line(&format!(
        "Content-Disposition: attachment; filename=\"{}!{}!{}!{}.json.gz\"",
        by.host, report.domain, report.begin, report.end
    ));
    line("");
    for chunk in b64.as_bytes().chunks(76) {
        line(std::str::from_utf8(chunk).unwrap_or_default());
    }
    line(&format!("--{boundary}--"));
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_store::TlsResult;
    use std::io::Read as _;

    fn count(
        domain: &str,
        ptype: &str,
        pstring: &str,
        mx: &str,
        rt: &str,
        n: i64,
    ) -> TlsResultCount {
        TlsResultCount {
            result: TlsResult {
                domain: domain.into(),
                day: "2026-12-05".into(),
                policy_type: ptype.into(),
                policy_string: pstring.into(),
                mx_host: mx.into(),
                result_type: rt.into(),
            },
            count: n,
        }
    }

    fn by() -> Submitter {
        Submitter {
            organization: "Example Ops".into(),
            contact: "postmaster@mx.example".into(),
            host: "mx.example".into(),
        }
    }

    #[test]
    fn one_report_per_domain_with_summaries_and_details() {
        let sts = "version: STSv1\nmode: enforce\nmx: mx1.b.test\nmax_age: 86400";
        let counts = vec![
            count("b.test", "sts", sts, "mx1.b.test", "success", 7),
            count("b.test", "sts", sts, "mx1.b.test", "certificate-expired", 2),
            count("b.test", "sts", sts, "mx2.b.test", "validation-failure", 1),
            count(
                "a.test",
                "tlsa",
                "_25._tcp.mx.a.test TLSA 3 1 1 ab",
                "mx.a.test",
                "success",
                3,
            ),
        ];
        let reports = build_reports("2026-12-05", &counts, &by());
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].domain, "a.test");
        let b = &reports[1].json;
        assert_eq!(b["report-id"], "2026-12-05.b.test@mx.example");
        assert_eq!(b["date-range"]["start-datetime"], "2026-12-05T00:00:00Z");
        assert_eq!(b["date-range"]["end-datetime"], "2026-12-05T23:59:59Z");
        let p = &b["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-string"][1], "mode: enforce");
        assert_eq!(p["policy"]["mx-host"], json!(["mx1.b.test"]));
        assert_eq!(p["summary"]["total-successful-session-count"], 7);
        assert_eq!(p["summary"]["total-failure-session-count"], 3);
        assert_eq!(p["failure-details"].as_array().unwrap().len(), 2);
        assert_eq!(reports[1].end - reports[1].begin, 86_399);
        let a = &reports[0].json["policies"][0];
        assert!(a.get("failure-details").is_none());
    }

    #[test]
    fn gzip_round_trips() {
        let j = json!({"x": 1});
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gzip_json(&j)[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, j.to_string());
    }

    #[test]
    fn rua_parsing() {
        let got = parse_rua(&[
            "v=spf1 -all".into(),
            "v=TLSRPTv1; rua=mailto:rpt@b.test,https://r.b.test/tlsrpt, ftp://x".into(),
        ]);
        assert_eq!(
            got,
            vec![
                Rua::Mailto("rpt@b.test".into()),
                Rua::Https("https://r.b.test/tlsrpt".into())
            ]
        );
        // Two TLSRPT records: none counts.
        assert!(
            parse_rua(&[
                "v=TLSRPTv1; rua=mailto:a@b".into(),
                "v=TLSRPTv1; rua=mailto:c@d".into()
            ])
            .is_empty()
        );
        assert!(parse_rua(&[]).is_empty());
    }

    #[test]
    fn mail_is_a_multipart_report() {
        let counts = vec![count(
            "a.test",
            "no-policy-found",
            "",
            "mx.a.test",
            "success",
            1,
        )];
        let r = &build_reports("2026-12-05", &counts, &by())[0];
        let mail = String::from_utf8(report_mail(
            r,
            &by(),
            "tlsrpt@ops.test",
            "rpt@a.test",
            "Sat, 6 Dec 2026 00:00:00 +0000",
        ))
        .unwrap();
        assert!(mail.contains("Content-Type: multipart/report; report-type=\"tlsrpt\""));
        assert!(mail.contains("Content-Type: application/tlsrpt+gzip"));
        assert!(mail.contains("TLS-Report-Domain: a.test\r\n"));
        assert!(mail.contains("filename=\"mx.example!a.test!1796428800!1796515199.json.gz\""));
    }
}
