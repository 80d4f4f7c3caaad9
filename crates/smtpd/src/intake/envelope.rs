//! MAIL FROM and RCPT TO on the intake listener: any envelope sender (the null sender
//! included) within the size limit; only recipients that are VERP addresses of stored
//! messages at their own return-path domain, or the DMARC / TLS-RPT reporting address
//! of a known domain (`550 5.1.1` for anything else; `452 4.5.3` for a second kind or
//! domain in one transaction, which the client sends again in another).

use super::{Flow, IntakeSession, Txn};
use crate::session::Conn;
use mailroom_proto::{MailParams, RcptParams, Reply, reply};
use tokio::io::{AsyncRead, AsyncWrite};

impl IntakeSession {
    pub(super) fn mail<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        params: MailParams,
        conn: &mut Conn<S>,
    ) -> Flow {
        let limit = self.handle.max_message_size;
        let r = if self.helo.is_none() {
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
        };
        conn.reply(&r);
        Flow::Continue
    }

    pub(super) async fn rcpt<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        params: RcptParams,
        conn: &mut Conn<S>,
    ) -> Flow {
        let Some(txn) = self.txn.as_ref() else {
            conn.reply(&reply::need_mail());
            return Flow::Continue;
        };
        if txn.recipients.len() >= self.handle.max_recipients {
            conn.reply(&reply::too_many_recipients(self.handle.max_recipients));
            return Flow::Continue;
        }
        let r = match self.handle.pipeline.check_recipient(&params.address).await {
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
            Ok(None) => self.report_rcpt(&params.address).await,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "intake: recipient lookup failed");
                reply::storage_unavailable()
            }
        };
        conn.reply(&r);
        Flow::Continue
    }
}

impl IntakeSession {
    /// A recipient that is no VERP address: a reporting address of a known domain, or
    /// refused.
    async fn report_rcpt(&mut self, address: &str) -> Reply {
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
                tracing::info!(peer = %self.peer, "intake: recipient refused: not a bounce or report address");
                reply::not_a_bounce_address()
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "intake: recipient lookup failed");
                reply::storage_unavailable()
            }
        }
    }
}
