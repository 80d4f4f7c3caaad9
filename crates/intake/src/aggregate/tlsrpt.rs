//! TLS-RPT reports (RFC 8460 §4): the JSON report read with serde, reduced to one
//! counter row per policy type and result: `success` with the successful session
//! count, and each failure result type with its failed sessions (failures the
//! details do not account for count as `unspecified`).

use super::{AggregateError, AggregateReport, clean, same_domain};
use mailroom_store::{ReportKind, TlsRptRow};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Policies read from one report.
const MAX_POLICIES: usize = 10_000;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Report {
    organization_name: String,
    date_range: DateRange,
    report_id: String,
    #[serde(default)]
    policies: Vec<PolicyResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DateRange {
    start_datetime: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PolicyResult {
    policy: Policy,
    summary: Summary,
    #[serde(default)]
    failure_details: Vec<FailureDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Policy {
    policy_type: String,
    policy_domain: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Summary {
    total_successful_session_count: u64,
    total_failure_session_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FailureDetail {
    result_type: String,
    failed_session_count: u64,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn parse(json: &str, domain: &str) -> Result<AggregateReport, AggregateError> {
    let report: Report = serde_json::from_str(json)
        .map_err(|e| AggregateError::MalformedTlsRpt(clean(&e.to_string())))?;
    let malformed = |why: &str| AggregateError::MalformedTlsRpt(why.to_string());
    let org = clean(&report.organization_name);
    let report_id = clean(&report.report_id);
    if org.is_empty() || report_id.is_empty() {
        return Err(malformed(
            "organization-name and report-id must not be empty",
        ));
    }
    let start = chrono::DateTime::parse_from_rfc3339(report.date_range.start_datetime.trim())
        .map_err(|_| malformed("start-datetime is not an RFC 3339 date-time"))?;
    let day = start
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d")
        .to_string();
    if report.policies.len() > MAX_POLICIES {
        return Err(malformed("too many policies"));
    }
    let mut rows: BTreeMap<(String, String), i64> = BTreeMap::new();
    for p in &report.policies {
        if !same_domain(&p.policy.policy_domain, domain) {
            return Err(AggregateError::WrongDomain {
                found: clean(&p.policy.policy_domain.to_ascii_lowercase()),
                expected: domain.to_string(),
            });
        }
        let policy_type = clean(&p.policy.policy_type.to_ascii_lowercase());
        let mut add = |result: String, n: i64| {
            if n > 0 {
                let v = rows.entry((policy_type.clone(), result)).or_default();
                *v = v.saturating_add(n);
            }
        };
        add(
            "success".into(),
            count(p.summary.total_successful_session_count),
        );
        let mut detailed: i64 = 0;
        for f in &p.failure_details {
            let result = clean(&f.result_type.to_ascii_lowercase());
            if result.is_empty() {
                return Err(malformed("result-type must not be empty"));
            }
            detailed = detailed.saturating_add(count(f.failed_session_count));
            add(result, count(f.failed_session_count));
        }
        let total = count(p.summary.total_failure_session_count);
        add("unspecified".into(), total.saturating_sub(detailed));
    }
    Ok(AggregateReport {
        kind: ReportKind::TlsRpt,
        org: org.clone(),
        report_id,
        dmarc: Vec::new(),
        tls: rows
            .into_iter()
            .map(|((policy_type, result_type), count)| TlsRptRow {
                domain: domain.to_string(),
                day: day.clone(),
                org: org.clone(),
                policy_type,
                result_type,
                count,
            })
            .collect(),
    })
}
