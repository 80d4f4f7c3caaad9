//! MAIL FROM and RCPT TO on the intake listener: any envelope sender (the null sender
//! included) within the size limit; only recipients that are VERP addresses of stored
//! messages at their own return-path domain, or the DMARC / TLS-RPT reporting address
//! of a known domain (`550 5.1.1` for anything else; `452 4.5.3` for a second kind or
//! domain in one transaction, which the client sends again in another).

use super::{IntakeSession, Txn};
use crate::session::Core;
use mailroom_proto::{MailParams, RcptParams, Reply, reply};

impl IntakeSession {
    pub(super) fn open_transaction(&mut self, core: &Core, params: MailParams) -> Reply {
        let limit = self.handle.max_message_size;
        if core.helo.is_none() {
            reply::need_ehlo()
        } else if self.txn.is_some() {
            reply::nested_mail()
        } else if params.size.is_some_and(|s| s > limit) {
            reply::message_too_big_declared(limit)
        } else {
            self.txn = Some(Txn {
                params,
                recipients: Vec::new(),
                report: None,
                bdat: None,
            });
            reply::sender_ok()
        }
    }

    pub(super) async fn recipient(&mut self, core: &Core, params: RcptParams) -> Reply {
        let Some(txn) = self.txn.as_ref() else {
            return reply::need_mail();
        };
        if txn.recipients.len() >= self.handle.max_recipients {
            return reply::too_many_recipients(self.handle.max_recipients);
        }
        match self.handle.pipeline.check_recipient(&params.address).await {
            Ok(Some(a)) => match self.txn.as_mut() {
                Some(txn) if txn.report.is_some() => reply::report_kinds_mixed(),
                Some(txn) => {
                    if !txn.recipients.contains(&a) {
                        txn.recipients.push(a);
                    }
                    reply::recipient_ok()
                }
                None => reply::need_mail(),
            },
            Ok(None) => self.report_rcpt(core, &params.address).await,
            Err(e) => {
                tracing::warn!(peer = %core.peer, error = %e, "intake: recipient lookup failed");
                reply::storage_unavailable()
            }
        }
    }
}

impl IntakeSession {
    /// A recipient that is no VERP address: a reporting address of a known domain, or
    /// refused.
    async fn report_rcpt(&mut self, core: &Core, address: &str) -> Reply {
        match self.handle.pipeline.check_report_address(address).await {
            Ok(Some(a)) => match self.txn.as_mut() {
                Some(txn) if !txn.recipients.is_empty() => reply::report_kinds_mixed(),
                Some(txn) if txn.report.as_ref().is_some_and(|r| r.domain != a.domain) => {
                    reply::report_kinds_mixed()
                }
                Some(txn) => {
                    txn.report = Some(a);
                    reply::recipient_ok()
                }
                None => reply::need_mail(),
            },
            Ok(None) => {
                tracing::info!(peer = %core.peer, "intake: recipient refused: not a bounce or report address");
                reply::not_a_bounce_address()
            }
            Err(e) => {
                tracing::warn!(peer = %core.peer, error = %e, "intake: recipient lookup failed");
                reply::storage_unavailable()
            }
        }
    }
}
