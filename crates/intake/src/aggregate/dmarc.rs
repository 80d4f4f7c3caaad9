//! DMARC aggregate reports (RFC 7489 appendix C): the `<feedback>` XML read with
//! quick-xml's serde support (no DTDs, no entity expansion), reduced to one counter
//! row per source address: messages, SPF and DKIM results (any passing result in
//! `auth_results`) and the DMARC result (aligned SPF or DKIM passed, as evaluated).

use super::{AggregateError, AggregateReport, clean, day_of, same_domain};
use mailroom_store::{DmarcRow, ReportKind};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Records read from one report; Google and Microsoft send a few hundred at most.
const MAX_RECORDS: usize = 100_000;

#[derive(Deserialize)]
struct Feedback {
    report_metadata: Metadata,
    policy_published: Published,
    #[serde(default)]
    record: Vec<Record>,
}

#[derive(Deserialize)]
struct Metadata {
    org_name: String,
    report_id: String,
    date_range: DateRange,
}

#[derive(Deserialize)]
struct DateRange {
    begin: i64,
}

#[derive(Deserialize)]
struct Published {
    domain: String,
}

#[derive(Deserialize)]
struct Record {
    row: Row,
    #[serde(default)]
    auth_results: AuthResults,
}

#[derive(Deserialize)]
struct Row {
    source_ip: String,
    count: u64,
    policy_evaluated: Evaluated,
}

#[derive(Deserialize)]
struct Evaluated {
    #[serde(default)]
    dkim: String,
    #[serde(default)]
    spf: String,
}

#[derive(Deserialize, Default)]
struct AuthResults {
    #[serde(default)]
    dkim: Vec<AuthResult>,
    #[serde(default)]
    spf: Vec<AuthResult>,
}

#[derive(Deserialize)]
struct AuthResult {
    #[serde(default)]
    result: String,
}

fn passes(results: &[AuthResult]) -> bool {
    results
        .iter()
        .any(|r| r.result.trim().eq_ignore_ascii_case("pass"))
}

fn pass(result: &str) -> bool {
    result.trim().eq_ignore_ascii_case("pass")
}

pub(super) fn parse(xml: &str, domain: &str) -> Result<AggregateReport, AggregateError> {
    let feedback: Feedback = quick_xml::de::from_str(xml)
        .map_err(|e| AggregateError::MalformedDmarc(clean(&e.to_string())))?;
    let malformed = |why: &str| AggregateError::MalformedDmarc(why.to_string());
    let published = feedback.policy_published.domain.trim().to_ascii_lowercase();
    if !same_domain(&published, domain) {
        return Err(AggregateError::WrongDomain {
            found: clean(&published),
            expected: domain.to_string(),
        });
    }
    let meta = &feedback.report_metadata;
    let org = clean(&meta.org_name);
    let report_id = clean(&meta.report_id);
    if org.is_empty() || report_id.is_empty() {
        return Err(malformed("org_name and report_id must not be empty"));
    }
    let day = day_of(meta.date_range.begin).ok_or_else(|| malformed("date_range out of range"))?;
    if feedback.record.len() > MAX_RECORDS {
        return Err(malformed("too many records"));
    }
    let mut rows: BTreeMap<String, DmarcRow> = BTreeMap::new();
    for record in &feedback.record {
        let ip: std::net::IpAddr = record
            .row
            .source_ip
            .trim()
            .parse()
            .map_err(|_| malformed("source_ip is not an IP address"))?;
        let n = i64::try_from(record.row.count).unwrap_or(i64::MAX);
        let row = rows.entry(ip.to_string()).or_insert_with(|| DmarcRow {
            domain: domain.to_string(),
            day: day.clone(),
            source_ip: ip.to_string(),
            org: org.clone(),
            ..Default::default()
        });
        let add = |v: &mut i64| *v = v.saturating_add(n);
        add(&mut row.messages);
        add(if passes(&record.auth_results.spf) {
            &mut row.spf_pass
        } else {
            &mut row.spf_fail
        });
        add(if passes(&record.auth_results.dkim) {
            &mut row.dkim_pass
        } else {
            &mut row.dkim_fail
        });
        let evaluated = &record.row.policy_evaluated;
        add(if pass(&evaluated.dkim) || pass(&evaluated.spf) {
            &mut row.dmarc_pass
        } else {
            &mut row.dmarc_fail
        });
    }
    Ok(AggregateReport {
        kind: ReportKind::Dmarc,
        org,
        report_id,
        dmarc: rows.into_values().collect(),
        tls: Vec::new(),
    })
}
