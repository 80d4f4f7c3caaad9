//! DMARC aggregate and TLS-RPT report intake: the reporting addresses Mailroom
//! suggests in a domain's `_dmarc` and `_smtp._tls` records (`dmarc@<label>.<domain>`
//! and `tls-rpt@<label>.<domain>`, where `<label>.<domain>` is the return-path
//! subdomain whose MX already names the intake listener), which tenant each belongs
//! to, and what a report sent there becomes: counters through the store's report role,
//! each report counted once.

use crate::aggregate::parse_aggregate;
use crate::pipeline::{Intake, IntakeError};
use mailroom_model::{TenantId, now_millis};
use mailroom_store::{ReceivedReport, ReportRecorded, ReportStore, StoreError};
use std::sync::Arc;

/// Local part of the address suggested in `_dmarc` records (`rua=`).
pub const DMARC_LOCAL: &str = "dmarc";
/// Local part of the address suggested in `_smtp._tls` records (`rua=`).
pub const TLSRPT_LOCAL: &str = "tls-rpt";

/// A reporting address the listener accepted: the tenant's domain it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportAddress {
    /// The tenant's domain (lowercase), without the return-path label.
    pub domain: String,
    pub tenant_id: TenantId,
}

#[derive(Clone)]
pub(crate) struct ReportIntake {
    store: Arc<dyn ReportStore>,
    /// `domains.return_path_label`: reports go to `<local>@<label>.<domain>`.
    label: String,
}

impl Intake {
    /// Also takes DMARC / TLS-RPT reports at `dmarc@` and `tls-rpt@` of each domain's
    /// return-path subdomain `<label>.<domain>`.
    pub fn with_reports(mut self, store: Arc<dyn ReportStore>, label: &str) -> Self {
        self.reports = Some(ReportIntake {
            store,
            label: label.to_ascii_lowercase(),
        });
        self
    }

    /// The domain behind `address` if it is a reporting address of a known domain.
    pub async fn check_report_address(
        &self,
        address: &str,
    ) -> Result<Option<ReportAddress>, StoreError> {
        let Some(r) = &self.reports else {
            return Ok(None);
        };
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let Some((local, host)) = address.rsplit_once('@') else {
            return Ok(None);
        };
        if ![DMARC_LOCAL, TLSRPT_LOCAL]
            .iter()
            .any(|l| l.eq_ignore_ascii_case(local))
        {
            return Ok(None);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let Some(domain) = host
            .strip_prefix(&r.label)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|d| !d.is_empty())
        else {
            return Ok(None);
        };
        Ok(r.store
            .report_domain(domain)
            .await?
            .map(|tenant_id| ReportAddress {
                domain: domain.to_string(),
                tenant_id,
            }))
    }

    /// Parses and records a report sent to `to`. `Ok(false)`: a report already
    /// recorded (a retry), nothing changed.
    pub async fn process_report(
        &self,
        to: &ReportAddress,
        raw: &[u8],
    ) -> Result<bool, IntakeError> {
        let Some(r) = &self.reports else {
            return Err(IntakeError::Report(crate::AggregateError::NoReport));
        };
        let report = parse_aggregate(raw, &to.domain)?;
        let recorded = r
            .store
            .record_report(&ReceivedReport {
                kind: report.kind,
                org: report.org,
                report_id: report.report_id,
                domain: to.domain.clone(),
                received_at: now_millis(),
                dmarc: report.dmarc,
                tls: report.tls,
            })
            .await?;
        Ok(recorded == ReportRecorded::Recorded)
    }
}
