//! Rows of the report-intake role ([`crate::ReportStore`]): DMARC aggregate reports
//! (RFC 7489 appendix C) and TLS-RPT reports (RFC 8460) received for tenants' domains,
//! reduced to counters per domain, day, source and reporting organisation.

/// Which kind of report a [`ReceivedReport`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    Dmarc,
    TlsRpt,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Dmarc => "dmarc",
            ReportKind::TlsRpt => "tlsrpt",
        }
    }
}

/// One DMARC counter row: what a reporter saw from one source address on one day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmarcRow {
    /// The tenant's domain the report is about (lowercase).
    pub domain: String,
    /// UTC day `YYYY-MM-DD` of the report's date range.
    pub day: String,
    /// The sending address the receiver saw.
    pub source_ip: String,
    /// The reporting organisation (`org_name`).
    pub org: String,
    pub messages: i64,
    pub spf_pass: i64,
    pub spf_fail: i64,
    pub dkim_pass: i64,
    pub dkim_fail: i64,
    /// DMARC result: aligned SPF or aligned DKIM passed.
    pub dmarc_pass: i64,
    pub dmarc_fail: i64,
}

/// One TLS-RPT counter row: sessions of one result type toward the domain's MX.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsRptRow {
    pub domain: String,
    pub day: String,
    pub org: String,
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// `success`, or an RFC 8460 failure result type.
    pub result_type: String,
    pub count: i64,
}

/// A parsed report to record: its identity (counted once) and its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedReport {
    pub kind: ReportKind,
    pub org: String,
    /// The reporter's `report_id` (DMARC) or `report-id` (TLS-RPT).
    pub report_id: String,
    pub domain: String,
    pub received_at: i64,
    pub dmarc: Vec<DmarcRow>,
    pub tls: Vec<TlsRptRow>,
}

/// What recording a report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportRecorded {
    Recorded,
    /// This reporter's report with this id was recorded before: nothing changed.
    Duplicate,
}

/// A domain's rows over a range of days, ordered by day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainReportRows {
    pub dmarc: Vec<DmarcRow>,
    pub tls: Vec<TlsRptRow>,
}
