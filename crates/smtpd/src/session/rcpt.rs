//! RCPT TO: syntax (no relay tricks survive `Address::parse`), the SMTPUTF8 rule, the
//! per-message recipient limit (the server's or the tenant's, whichever is lower), the
//! sandbox, and suppression when the tenant wants suppressed recipients refused. An
//! authenticated tenant may send to any domain; an unauthenticated client never gets
//! this far (MAIL FROM refuses it).

use super::{Conn, Flow, Session};
use mailroom_ingest::Recipient;
use mailroom_model::Address;
use mailroom_policy::RecipientVerdict;
use mailroom_proto::{RcptParams, reply};
use tokio::io::{AsyncRead, AsyncWrite};

impl Session {
    pub(crate) async fn rcpt<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        params: RcptParams,
        conn: &mut Conn<S>,
    ) -> Flow {
        let tenant = match self.effective_tenant() {
            Ok(t) => Some(t.tenant_id.clone()),
            Err(_) => None,
        };
        let mut limit = self.shared.config.max_recipients;
        if let Some(t) = &tenant {
            limit = limit.min(self.shared.policy.message_limits(t).max_recipients);
        }
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
        if let Some(t) = &tenant {
            let verdict = self.shared.policy.check_recipient(t, &address).await;
            let refusal = match verdict {
                Ok(RecipientVerdict::Allowed) => None,
                Ok(RecipientVerdict::NotInSandbox) => Some(reply::recipient_not_in_sandbox()),
                Ok(RecipientVerdict::Suppressed(reason)) => {
                    Some(reply::recipient_suppressed(&reason))
                }
                Err(_) => Some(reply::storage_unavailable()),
            };
            if let Some(r) = refusal {
                conn.reply(&r);
                return Flow::Continue;
            }
        }
        let Some(txn) = self.txn.as_mut() else {
            return Flow::Continue;
        };
        txn.recipients.push(Recipient {
            address,
            notify: params.notify,
            orcpt: params.orcpt,
        });
        conn.reply(&reply::recipient_ok());
        Flow::Continue
    }
}
