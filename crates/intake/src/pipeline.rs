//! The intake pipeline: which recipients the listener may accept (a VERP address of a
//! stored message, at that message's return-path domain), and what a received report
//! becomes: each failed recipient an async `bounced` outcome (hard → suppressed), each
//! complaint a `complained` event with a suppression; then the tenant's sender health
//! is checked. It needs only the intake role of the store (`IntakeStore`).

use crate::health::HealthMonitor;
use crate::parse::{ParseError, parse};
use crate::report::{Action, BounceReport, ComplaintReport, Report, ReportedRecipient};
use mailroom_model::verp::parse_verp;
use mailroom_model::{
    AsyncBounceDetail, ComplaintDetail, MessageId, ReplyDetail, TenantId, now_millis,
};
use mailroom_proto::classify::{BounceCategory, BounceClass, Verdict, classify};
use mailroom_store::{
    AsyncBounce, BounceTarget, Complaint, IntakeRecorded, IntakeStore, StoreError,
};
use std::sync::Arc;

/// A return-path address the listener accepted: the message and recipient it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BounceAddress {
    pub message_id: MessageId,
    pub idx: i64,
    pub tenant_id: TenantId,
    /// The stored recipient address the VERP address stands for.
    pub recipient: String,
}

/// What a late bounce said about one recipient, for the original sender's report.
#[derive(Clone, Debug)]
pub struct LateFailure<'a> {
    pub message_id: &'a MessageId,
    /// The recipient's index in its message.
    pub idx: i64,
    /// The reported enhanced status; reported as permanent (5.x.x).
    pub status: (u8, u16, u16),
    pub diagnostic: &'a str,
    pub remote_mta: Option<&'a str>,
}

/// Queues the original sender's failure report for a bounce learnt after delivery
/// (delivery's `LateReports`, which the binary wires in: intake does not depend on
/// delivery).
#[async_trait::async_trait]
pub trait LateReporter: Send + Sync {
    /// Queues the report if the sender asked for one; returns its id, or `None` when
    /// none is due.
    async fn failed(&self, f: &LateFailure<'_>) -> Result<Option<MessageId>, StoreError>;
}

/// What a report led to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    pub bounces: usize,
    pub complaints: usize,
    /// Reports that changed nothing: delays, successes, duplicates.
    pub ignored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Unrecognized(#[from] ParseError),
    /// A DMARC aggregate or TLS-RPT report that was refused.
    #[error("{0}")]
    Report(#[from] crate::aggregate::AggregateError),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

pub struct Intake {
    store: Arc<dyn IntakeStore>,
    health: Arc<HealthMonitor>,
    /// Failure reports to original senders for bounces recorded here (off: none).
    late_reports: Option<Arc<dyn LateReporter>>,
    /// DMARC / TLS-RPT report intake at the return-path subdomains (off: none).
    pub(crate) reports: Option<crate::reports::ReportIntake>,
}

impl Intake {
    /// `store`: anything with the intake role (`Arc<dyn Store>` upcasts to it).
    pub fn new(store: Arc<dyn IntakeStore>, health: Arc<HealthMonitor>) -> Self {
        Self {
            store,
            health,
            late_reports: None,
            reports: None,
        }
    }

    /// Sends the original sender a failure report (when it asked for one) for each
    /// bounce recorded here.
    pub fn with_late_reports(mut self, reports: Arc<dyn LateReporter>) -> Self {
        self.late_reports = Some(reports);
        self
    }

    /// The message and recipient behind `address`, if it is a VERP address of a
    /// stored message at that message's own return-path domain.
    pub async fn check_recipient(
        &self,
        address: &str,
    ) -> Result<Option<BounceAddress>, StoreError> {
        let Some((id, idx)) = parse_verp(address) else {
            return Ok(None);
        };
        let Some(target) = self.store.bounce_target(&id).await? else {
            return Ok(None);
        };
        Ok(address_of(&target, idx, address))
    }

    /// Parses and records a report received for `envelope` (the accepted recipients).
    pub async fn process(
        &self,
        envelope: &[BounceAddress],
        raw: &[u8],
    ) -> Result<Processed, IntakeError> {
        let report = parse(raw)?;
        let mut done = Processed::default();
        let mut tenants: Vec<TenantId> = Vec::new();
        match report {
            Report::Bounce(b) => {
                for target in envelope {
                    let Some(r) = pick(&b, target, envelope.len()) else {
                        continue;
                    };
                    let recorded = self
                        .store
                        .record_async_bounce(bounce(&b, r, target))
                        .await?;
                    if matches!(recorded, IntakeRecorded::Recorded { .. }) {
                        self.report_late(r, target).await;
                    }
                    count(recorded, &mut done.bounces, &mut done.ignored, &mut tenants);
                }
                if done.bounces == 0 && done.ignored == 0 {
                    done.ignored = 1;
                }
            }
            Report::Complaint(c) => {
                let target = self.complaint_target(&c, envelope).await?;
                if let Some(target) = target {
                    let recorded = self.store.record_complaint(complaint(&c, &target)).await?;
                    count(
                        recorded,
                        &mut done.complaints,
                        &mut done.ignored,
                        &mut tenants,
                    );
                }
            }
        }
        for t in tenants {
            if let Err(e) = self.health.check(&t).await {
                tracing::warn!(tenant = %t, error = %e, "sender health check failed");
            }
        }
        Ok(done)
    }

    /// Queues the original sender's failure report; a failure to queue it is logged
    /// (the bounce itself is recorded either way).
    async fn report_late(&self, r: &ReportedRecipient, target: &BounceAddress) {
        let Some(reports) = &self.late_reports else {
            return;
        };
        let failure = LateFailure {
            message_id: &target.message_id,
            idx: target.idx,
            status: r.status.unwrap_or((5, 0, 0)),
            diagnostic: &r.diagnostic,
            remote_mta: r.remote_mta.as_deref(),
        };
        if let Err(e) = reports.failed(&failure).await {
            tracing::warn!(message_id = %target.message_id, error = %e, "queueing the late bounce report failed");
        }
    }

    /// The original message's own handles first (its VERP Return-Path, X-Mailroom-Id,
    /// Mailroom's Received id), but only within the envelope's tenant; else the
    /// envelope's address.
    async fn complaint_target(
        &self,
        c: &ComplaintReport,
        envelope: &[BounceAddress],
    ) -> Result<Option<BounceAddress>, StoreError> {
        let Some(first) = envelope.first() else {
            return Ok(None);
        };
        let o = &c.original;
        for handle in [o.return_path.as_deref(), c.original_mail_from.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Some(t) = self.check_recipient(handle).await?
                && t.tenant_id == first.tenant_id
            {
                return Ok(Some(t));
            }
        }
        let id = o
            .mailroom_id
            .as_deref()
            .or(o.received_id.as_deref())
            .and_then(|i| MessageId::parse(&i.to_ascii_uppercase()));
        if let Some(id) = id
            && let Some(target) = self.store.bounce_target(&id).await?
            && target.tenant_id == first.tenant_id
        {
            let wanted: Vec<&str> = c
                .original_rcpt_to
                .iter()
                .map(String::as_str)
                .chain(o.to.iter().map(String::as_str))
                .collect();
            let found = target
                .recipients
                .iter()
                .find(|r| wanted.iter().any(|w| w.eq_ignore_ascii_case(&r.address)))
                .or(match target.recipients.as_slice() {
                    [only] => Some(only),
                    _ => None,
                });
            if let Some(r) = found {
                return Ok(Some(BounceAddress {
                    message_id: target.message_id.clone(),
                    idx: r.idx,
                    tenant_id: target.tenant_id.clone(),
                    recipient: r.address.clone(),
                }));
            }
        }
        Ok(Some(first.clone()))
    }
}

fn address_of(target: &BounceTarget, idx: i64, address: &str) -> Option<BounceAddress> {
    let domain = address.trim().trim_end_matches('>').rsplit_once('@')?.1;
    let return_path = target.return_path.as_deref()?;
    if !domain.eq_ignore_ascii_case(return_path) {
        return None;
    }
    let r = target.recipients.iter().find(|r| r.idx == idx)?;
    Some(BounceAddress {
        message_id: target.message_id.clone(),
        idx,
        tenant_id: target.tenant_id.clone(),
        recipient: r.address.clone(),
    })
}

fn count(
    r: IntakeRecorded,
    recorded: &mut usize,
    ignored: &mut usize,
    tenants: &mut Vec<TenantId>,
) {
    match r {
        IntakeRecorded::Recorded { tenant_id, .. } => {
            *recorded += 1;
            if !tenants.contains(&tenant_id) {
                tenants.push(tenant_id);
            }
        }
        IntakeRecorded::Duplicate | IntakeRecorded::NotFound => *ignored += 1,
    }
}

/// The failed recipient of the report that this envelope address is about: the one
/// with its address, or, when the envelope has one address, the first failure.
fn pick<'a>(
    b: &'a BounceReport,
    target: &BounceAddress,
    envelope_len: usize,
) -> Option<&'a ReportedRecipient> {
    let failed = || b.recipients.iter().filter(|r| r.action == Action::Failed);
    failed()
        .find(|r| {
            r.address
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(&target.recipient))
        })
        .or_else(|| {
            if envelope_len == 1 {
                failed().next()
            } else {
                None
            }
        })
}

/// An `Action: failed` is a failure even when its code reads temporary.
fn verdict(r: &ReportedRecipient) -> (BounceClass, BounceCategory) {
    let code = r
        .code
        .or(r.status.map(|(c, _, _)| u16::from(c) * 100 + 50))
        .unwrap_or(550);
    let code = if code / 100 == 5 { code } else { 550 };
    match classify(code, r.status.filter(|s| s.0 == 5), &r.diagnostic) {
        Verdict::Bounced(class, category) => (class, category),
        Verdict::Delivered | Verdict::Deferred => (BounceClass::Soft, BounceCategory::Other),
    }
}

fn bounce(b: &BounceReport, r: &ReportedRecipient, target: &BounceAddress) -> AsyncBounce {
    let (bounce_class, bounce_category) = verdict(r);
    let enhanced = r.status.map(|(c, s, d)| format!("{c}.{s}.{d}"));
    let detail = AsyncBounceDetail {
        is_async: true,
        bounce_category,
        bounce_class,
        format: b.format.as_str().into(),
        remote_mta: r.remote_mta.clone(),
        reply: ReplyDetail {
            code: r.code,
            enhanced,
            text: r.diagnostic.clone(),
        },
        reported_recipient: r.address.clone(),
        reporting_mta: b.reporting_mta.clone(),
    };
    AsyncBounce {
        message_id: target.message_id.clone(),
        idx: target.idx,
        at: now_millis(),
        reply: (!r.diagnostic.is_empty()).then(|| r.diagnostic.clone()),
        hard: bounce_class == BounceClass::Hard,
        detail,
    }
}

fn complaint(c: &ComplaintReport, target: &BounceAddress) -> Complaint {
    Complaint {
        message_id: target.message_id.clone(),
        idx: target.idx,
        at: now_millis(),
        detail: ComplaintDetail {
            arrival_date: c.arrival_date.clone(),
            feedback_type: c.feedback_type.clone(),
            reported_recipient: c.original_rcpt_to.clone(),
            reporting_mta: c.reporting_mta.clone(),
            source_ip: c.source_ip.clone(),
            user_agent: c.user_agent.clone(),
        },
    }
}
