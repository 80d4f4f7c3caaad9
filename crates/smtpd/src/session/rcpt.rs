//! RCPT TO: syntax (no relay tricks survive `Address::parse`), the SMTPUTF8 rule and
//! the per-message recipient limit. An authenticated tenant may send to any domain;
//! an unauthenticated client never gets this far (MAIL FROM refuses it).

use super::{Conn, Flow, Session};
use mailroom_ingest::Recipient;
use mailroom_model::Address;
use mailroom_proto::{RcptParams, reply};
use tokio::io::{AsyncRead, AsyncWrite};

impl Session {
    pub(crate) fn rcpt<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        params: RcptParams,
        conn: &mut Conn<S>,
    ) -> Flow {
        let limit = self.shared.config.max_recipients;
        let Some(txn) = self.txn.as_mut() else {
            // Without a transaction there is no tenant yet either: say what is missing.
            let r = match self.effective_tenant() {
                Err(r) => r,
                Ok(_) => reply::need_mail(),
            };
            conn.reply(&r);
            return Flow::Continue;
        };
        let address = match Address::parse(&params.address) {
            Ok(a) => a,
            Err(e) => {
                conn.reply(&reply::bad_recipient_syntax(e));
                return Flow::Continue;
            }
        };
        if address.is_utf8() && !txn.params.smtputf8 {
            conn.reply(&reply::utf8_not_declared());
            return Flow::Continue;
        }
        if txn.recipients.iter().any(|r| r.address == address) {
            // A duplicate is accepted once and delivered once.
            conn.reply(&reply::recipient_ok());
            return Flow::Continue;
        }
        if txn.recipients.len() >= limit {
            conn.reply(&reply::too_many_recipients(limit));
            return Flow::Continue;
        }
        txn.recipients.push(Recipient {
            address,
            notify: params.notify,
            orcpt: params.orcpt,
        });
        conn.reply(&reply::recipient_ok());
        Flow::Continue
    }
}
