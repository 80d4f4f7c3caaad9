//! MAIL FROM and RCPT TO on the intake listener: any envelope sender (the null sender
//! included) within the size limit; only recipients that are VERP addresses of stored
//! messages at their own return-path domain (`550 5.1.1` for anything else).

use super::{Flow, IntakeSession, Txn};
use crate::session::Conn;
use mailroom_proto::{MailParams, RcptParams, reply};
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
            Ok(Some(a)) => {
                if let Some(txn) = self.txn.as_mut()
                    && !txn.recipients.contains(&a)
                {
                    txn.recipients.push(a);
                }
                reply::recipient_ok()
            }
            Ok(None) => {
                tracing::info!(peer = %self.peer, "intake: recipient refused: not a bounce address");
                reply::not_a_bounce_address()
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "intake: recipient lookup failed");
                reply::storage_unavailable()
            }
        };
        conn.reply(&r);
        Flow::Continue
    }
}
