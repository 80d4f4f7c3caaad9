//! DATA and BDAT on the intake listener: the body through the smuggling-safe receiver
//! (size-limited), then to the intake pipeline: `250` once the report is recorded (or
//! recognised as needing nothing), `550 5.6.0` for mail that is neither a bounce nor a
//! feedback report, `451` when the store fails. At a reporting address the body is a
//! DMARC / TLS-RPT report instead: `250` once counted, `552 5.3.4` / `550 5.6.0` /
//! `550 5.7.1` naming what is wrong with it.

use super::{Flow, IntakeSession, Txn};
use crate::session::Conn;
use mailroom_intake::aggregate::MAX_UNPACKED;
use mailroom_intake::{AggregateError, IntakeError, ReportAddress};
use mailroom_proto::{BodyLimits, DataReceiver, Reply, reply};
use tokio::io::{AsyncRead, AsyncWrite};

impl IntakeSession {
    fn limits(&self) -> BodyLimits {
        BodyLimits {
            max_size: self.handle.max_message_size,
            max_line: self.shared.config.max_text_line,
        }
    }

    fn data_refusal(&self) -> Option<Reply> {
        match &self.txn {
            None => Some(reply::need_mail()),
            Some(t) if t.recipients.is_empty() && t.report.is_none() => Some(reply::need_rcpt()),
            Some(_) => None,
        }
    }

    pub(super) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Flow {
        if self.txn.as_ref().is_some_and(|t| t.bdat.is_some()) {
            conn.reply(&reply::data_and_bdat_mixed());
            return Flow::Continue;
        }
        if let Some(r) = self.data_refusal() {
            conn.reply(&r);
            return Flow::Continue;
        }
        conn.reply(&reply::start_data());
        let limits = self.limits();
        let mut rx = DataReceiver::data(limits);
        if let Err(stop) = conn.read_data(&mut rx).await {
            super::stopped(conn, stop).await;
            return Flow::Close;
        }
        let Some(txn) = self.txn.take() else {
            return Flow::Continue;
        };
        match rx.finish() {
            Ok(body) => self.hand_over(txn, body, conn).await,
            Err(fault) => {
                conn.reply(&fault.reply(&limits));
                Flow::Continue
            }
        }
    }

    pub(super) async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        size: usize,
        last: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        let refusal = self.data_refusal();
        let limits = self.limits();
        // The chunk is read even when it will be refused: its bytes are not commands.
        let rx = match (&refusal, self.txn.as_mut()) {
            (None, Some(txn)) => Some(
                txn.bdat
                    .get_or_insert_with(|| DataReceiver::chunked(limits)),
            ),
            _ => None,
        };
        if let Err(stop) = conn.read_chunk(size, rx).await {
            super::stopped(conn, stop).await;
            return Flow::Close;
        }
        if let Some(r) = refusal {
            conn.reply(&r);
            return Flow::Continue;
        }
        if !last {
            conn.reply(&reply::chunk_ok(size));
            return Flow::Continue;
        }
        let Some(mut txn) = self.txn.take() else {
            return Flow::Continue;
        };
        let rx = txn
            .bdat
            .take()
            .unwrap_or_else(|| DataReceiver::chunked(limits));
        match rx.finish() {
            Ok(body) => self.hand_over(txn, body, conn).await,
            Err(fault) => {
                conn.reply(&fault.reply(&limits));
                Flow::Continue
            }
        }
    }

    async fn hand_over<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        txn: Txn,
        body: Vec<u8>,
        conn: &mut Conn<S>,
    ) -> Flow {
        if let Some(to) = &txn.report {
            let r = self.hand_over_report(to, &txn, &body).await;
            conn.reply(&r);
            return Flow::Continue;
        }
        let r = match self.handle.pipeline.process(&txn.recipients, &body).await {
            Ok(done) => {
                tracing::info!(
                    peer = %self.peer, sender = %txn.params.address, bounces = done.bounces,
                    complaints = done.complaints, ignored = done.ignored, "intake: report received"
                );
                reply::report_received()
            }
            Err(IntakeError::Unrecognized(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "intake: message refused");
                reply::report_not_recognized()
            }
            Err(IntakeError::Report(e)) => refusal(&e),
            Err(IntakeError::Storage(e)) => {
                tracing::warn!(peer = %self.peer, error = %e, "intake: recording failed");
                reply::storage_unavailable()
            }
        };
        conn.reply(&r);
        Flow::Continue
    }

    /// A DMARC / TLS-RPT report for `to`: `250` once its counters are recorded (or it
    /// was recorded before), a `5xx` naming what is wrong with it, `451` when the store
    /// fails.
    async fn hand_over_report(&self, to: &ReportAddress, txn: &Txn, body: &[u8]) -> Reply {
        match self.handle.pipeline.process_report(to, body).await {
            Ok(fresh) => {
                tracing::info!(
                    peer = %self.peer, sender = %txn.params.address, domain = %to.domain,
                    duplicate = !fresh, "intake: aggregate report received"
                );
                reply::report_received()
            }
            Err(IntakeError::Report(e)) => {
                tracing::info!(peer = %self.peer, domain = %to.domain, error = %e, "intake: aggregate report refused");
                refusal(&e)
            }
            Err(IntakeError::Unrecognized(e)) => reply::aggregate_report_refused(e.to_string()),
            Err(IntakeError::Storage(e)) => {
                tracing::warn!(peer = %self.peer, error = %e, "intake: recording the report failed");
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
