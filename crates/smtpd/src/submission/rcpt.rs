//! RCPT TO: syntax (no relay tricks survive `Address::parse`), the SMTPUTF8 rule, the
//! per-message recipient limit (the server's or the tenant's, whichever is lower), the
//! sandbox, and suppression when the tenant wants suppressed recipients refused. An
//! authenticated tenant may send to any domain; an unauthenticated client never gets
//! this far (MAIL FROM refuses it).

use super::Submission;
use crate::session::Core;
use mailroom_ingest::Recipient;
use mailroom_model::Address;
use mailroom_policy::RecipientVerdict;
use mailroom_proto::{RcptParams, Reply, reply};

impl Submission {
    pub(super) async fn recipient(&mut self, core: &Core, params: RcptParams) -> Reply {
        let tenant = match self.effective_tenant(core) {
            Ok(t) => Some(t.tenant_id.clone()),
            Err(_) => None,
        };
        let mut limit = core.shared.config.max_recipients;
        if let Some(t) = &tenant {
            limit = limit.min(core.shared.policy.message_limits(t).max_recipients);
        }
        let Some(txn) = self.txn.as_mut() else {
            // Without a transaction there is no tenant yet either: say what is missing.
            return match self.effective_tenant(core) {
                Err(r) => r,
                Ok(_) => reply::need_mail(),
            };
        };
        let address = match Address::parse(&params.address) {
            Ok(a) => a,
            Err(e) => return reply::bad_recipient_syntax(e),
        };
        if address.is_utf8() && !txn.params.smtputf8 {
            return reply::utf8_not_declared();
        }
        if txn.recipients.iter().any(|r| r.address == address) {
            // A duplicate is accepted once and delivered once.
            return reply::recipient_ok();
        }
        if txn.recipients.len() >= limit {
            return reply::too_many_recipients(limit);
        }
        if let Some(t) = &tenant {
            let verdict = core.shared.policy.check_recipient(t, &address).await;
            let refusal = match verdict {
                Ok(RecipientVerdict::Allowed) => None,
                Ok(RecipientVerdict::NotInSandbox) => Some(reply::recipient_not_in_sandbox()),
                Ok(RecipientVerdict::Suppressed(reason)) => {
                    Some(reply::recipient_suppressed(&reason))
                }
                Err(_) => Some(reply::storage_unavailable()),
            };
            if let Some(r) = refusal {
                return r;
            }
        }
        let Some(txn) = self.txn.as_mut() else {
            return reply::need_mail();
        };
        txn.recipients.push(Recipient {
            address,
            notify: params.notify,
            orcpt: params.orcpt,
        });
        reply::recipient_ok()
    }
}
