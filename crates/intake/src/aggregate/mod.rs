//! Aggregate reports about a tenant's domain, sent to the reporting address Mailroom
//! suggests in its DMARC and TLS-RPT records: DMARC aggregate reports (RFC 7489
//! appendix C, XML, zipped or gzipped) in `dmarc`, TLS-RPT reports (RFC 8460, JSON,
//! gzipped) in `tlsrpt`, both found in the message and unpacked, within size limits, by
//! `unpack`. Pure: bytes in, counter rows or a typed refusal out; never panics.

mod dmarc;
mod tlsrpt;
mod unpack;

use mailroom_store::{DmarcRow, ReportKind, TlsRptRow};

pub use unpack::{MAX_UNPACKED, unpack};

/// Why a received report was refused. `Display` is the text the SMTP reply carries:
/// printable ASCII, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("not a parseable message")]
    NotAMessage,
    #[error("no DMARC aggregate or TLS-RPT report found in the message")]
    NoReport,
    #[error("report larger than {MAX_UNPACKED} bytes once decompressed")]
    TooLarge,
    #[error("report attachment is not a valid {0}")]
    BadArchive(&'static str),
    #[error("malformed DMARC aggregate report: {0}")]
    MalformedDmarc(String),
    #[error("malformed TLS-RPT report: {0}")]
    MalformedTlsRpt(String),
    #[error("report is about {found}, not {expected}")]
    WrongDomain { found: String, expected: String },
}

/// A report reduced to what is stored: who sent it, its id, and its counter rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateReport {
    pub kind: ReportKind,
    pub org: String,
    pub report_id: String,
    pub dmarc: Vec<DmarcRow>,
    pub tls: Vec<TlsRptRow>,
}

/// Parses a received message holding a DMARC aggregate or TLS-RPT report about
/// `domain` (lowercase; a report about one of its subdomains counts for it).
pub fn parse_aggregate(raw: &[u8], domain: &str) -> Result<AggregateReport, AggregateError> {
    let document = unpack(raw)?;
    let text = std::str::from_utf8(&document).map_err(|_| match sniff(&document) {
        Some(ReportKind::TlsRpt) => AggregateError::MalformedTlsRpt("not UTF-8".into()),
        _ => AggregateError::MalformedDmarc("not UTF-8".into()),
    })?;
    match sniff(&document) {
        Some(ReportKind::Dmarc) => dmarc::parse(text, domain),
        Some(ReportKind::TlsRpt) => tlsrpt::parse(text, domain),
        None => Err(AggregateError::NoReport),
    }
}

/// XML (`<`) is DMARC, a JSON object (`{`) TLS-RPT; anything else neither.
fn sniff(document: &[u8]) -> Option<ReportKind> {
    let start = document
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(document)
        .iter()
        .find(|b| !b.is_ascii_whitespace())?;
    match start {
        b'<' => Some(ReportKind::Dmarc),
        b'{' => Some(ReportKind::TlsRpt),
        _ => None,
    }
}

/// Reply-safe text: printable ASCII on one line, at most 160 characters.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(160)
        .collect()
}

/// Whether a report about `found` counts for the tenant's `domain`.
pub(crate) fn same_domain(found: &str, domain: &str) -> bool {
    let found = found.trim().trim_end_matches('.').to_ascii_lowercase();
    found == domain || found.ends_with(&format!(".{domain}"))
}

/// The UTC day of a Unix time in seconds, `YYYY-MM-DD`.
pub(crate) fn day_of(unix_secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix_secs, 0).map(|t| t.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests;
