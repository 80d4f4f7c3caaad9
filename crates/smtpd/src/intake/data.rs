//! The end of an intake DATA or BDAT: hand the finished message to the intake
//! pipeline: `250` once the report is recorded (or recognised as needing nothing),
//! `550 5.6.0` for mail that is neither a bounce nor a feedback report, `451` when the
//! store fails. At a reporting address the body is a DMARC / TLS-RPT report instead:
//! `250` once counted, `552 5.3.4` / `550 5.6.0` / `550 5.7.1` naming what is wrong
//! with it. Receiving the body is the loop's (`crate::session`).

use super::{IntakeSession, Txn};
use crate::session::Core;
use mailroom_intake::aggregate::MAX_UNPACKED;
use mailroom_intake::{AggregateError, IntakeError, ReportAddress};
use mailroom_proto::{Reply, reply};

impl IntakeSession {
    pub(super) async fn hand_over(&self, core: &Core, txn: Txn, body: Vec<u8>) -> Reply {
        if let Some(to) = &txn.report {
            return self.hand_over_report(core, to, &txn, &body).await;
        }
        match self.handle.pipeline.process(&txn.recipients, &body).await {
            Ok(done) => {
                tracing::info!(
                    peer = %core.peer, sender = %txn.params.address, bounces = done.bounces,
                    complaints = done.complaints, ignored = done.ignored, "intake: report received"
                );
                reply::report_received()
            }
            Err(IntakeError::Unrecognized(e)) => {
                tracing::info!(peer = %core.peer, error = %e, "intake: message refused");
                reply::report_not_recognized()
            }
            Err(IntakeError::Report(e)) => refusal(&e),
            Err(IntakeError::Storage(e)) => {
                tracing::warn!(peer = %core.peer, error = %e, "intake: recording failed");
                reply::storage_unavailable()
            }
        }
    }

    /// A DMARC / TLS-RPT report for `to`: `250` once its counters are recorded (or it
    /// was recorded before), a `5xx` naming what is wrong with it, `451` when the store
    /// fails.
    async fn hand_over_report(
        &self,
        core: &Core,
        to: &ReportAddress,
        txn: &Txn,
        body: &[u8],
    ) -> Reply {
        match self.handle.pipeline.process_report(to, body).await {
            Ok(fresh) => {
                tracing::info!(
                    peer = %core.peer, sender = %txn.params.address, domain = %to.domain,
                    duplicate = !fresh, "intake: aggregate report received"
                );
                reply::report_received()
            }
            Err(IntakeError::Report(e)) => {
                tracing::info!(peer = %core.peer, domain = %to.domain, error = %e, "intake: aggregate report refused");
                refusal(&e)
            }
            Err(IntakeError::Unrecognized(e)) => reply::aggregate_report_refused(e.to_string()),
            Err(IntakeError::Storage(e)) => {
                tracing::warn!(peer = %core.peer, error = %e, "intake: recording the report failed");
                reply::storage_unavailable()
            }
        }
    }
}

/// The reply for a refused aggregate report: too large `552 5.3.4`, about another
/// domain `550 5.7.1`, anything else `550 5.6.0`, each naming the problem.
fn refusal(e: &AggregateError) -> Reply {
    match e {
        AggregateError::TooLarge => reply::aggregate_report_too_large(MAX_UNPACKED),
        AggregateError::WrongDomain { .. } => reply::aggregate_report_wrong_domain(e.to_string()),
        AggregateError::NotAMessage
        | AggregateError::NoReport
        | AggregateError::BadArchive(_)
        | AggregateError::MalformedDmarc(_)
        | AggregateError::MalformedTlsRpt(_) => reply::aggregate_report_refused(e.to_string()),
    }
}
