//! Reports for failures learnt after delivery: a bounce that arrives later through the
//! intake listener turns a delivered recipient into a bounced one, and the original
//! sender, if it asked for failure reports (an explicit NOTIFY with FAILURE; not the null
//! sender; the tenant's bounce reports on), gets an RFC 3464 report like the one an
//! immediate refusal gives. Without NOTIFY no late report is sent: the sender was told
//! nothing is pending when the message was delivered, and the `bounced` event and
//! webhook already carry the news. The intake pipeline calls [`LateReports::failed`] once the
//! async bounce is recorded (never for a duplicate).

use crate::dsn::{Action, DsnRecipient};
use mailroom_model::{MessageId, now_millis};
use mailroom_store::{DynStore, StoreError};

/// What a late bounce said about one recipient.
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

/// Queues late failure reports to original senders.
pub struct LateReports {
    store: DynStore,
    /// Reporting-MTA and the report's Message-ID domain (the delivery HELO name).
    reporting_mta: String,
}

impl LateReports {
    pub fn new(store: DynStore, reporting_mta: impl Into<String>) -> Self {
        Self {
            store,
            reporting_mta: reporting_mta.into(),
        }
    }

    /// Queues a failure report for this recipient if its sender asked for one; returns
    /// the report's id, or `None` when none is due.
    pub async fn failed(&self, f: &LateFailure<'_>) -> Result<Option<MessageId>, StoreError> {
        let Some(view) = self.store.get_message(f.message_id).await? else {
            return Ok(None);
        };
        let Some(r) = usize::try_from(f.idx)
            .ok()
            .and_then(|i| view.recipients.get(i))
        else {
            return Ok(None);
        };
        let asked = r.dsn_notify.as_deref().is_some_and(|n| {
            n.split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("FAILURE"))
        });
        if view.mail_from.is_empty() || !asked {
            return Ok(None);
        }
        if let Some(t) = self.store.get_tenant(&view.tenant_id).await?
            && !t.bounce_reports
        {
            return Ok(None);
        }
        let body = self
            .store
            .load_body(f.message_id)
            .await?
            .unwrap_or_default();
        let now = now_millis();
        let recipient = DsnRecipient {
            address: r.address.clone(),
            orcpt: r.dsn_orcpt.clone(),
            action: Action::Failed,
            status: crate::report::status(Action::Failed, f.status),
            remote_mta: f.remote_mta.map(str::to_string),
            diagnostic: f.diagnostic.to_string(),
            last_attempt: now,
        };
        let message = crate::report::message(
            &self.reporting_mta,
            crate::report::Original {
                message_id: &view.id,
                tenant_id: &view.tenant_id,
                mail_from: &view.mail_from,
                received_at: view.received_at,
                dsn_envid: view.dsn_envid.as_deref(),
                dsn_ret: view.dsn_ret.as_deref(),
                smtputf8: !view.mail_from.is_ascii() || !r.address.is_ascii(),
                // Not known here: the message view does not carry REQUIRETLS yet
                // (a store change), so a late report returns the content as asked.
                require_tls: false,
                body: &body,
            },
            vec![recipient],
            now,
        );
        let id = message.id.clone();
        self.store.enqueue(message).await?;
        tracing::info!(dsn = %id, original = %view.id, to = %view.mail_from, "late bounce report queued");
        Ok(Some(id))
    }
}
