//! MAIL FROM: the session must act for a tenant (AUTH or allowlisted address), and the
//! tenant must be active and within its quotas, and the envelope sender's domain must
//! be one of that tenant's verified domains.

use super::{Submission, Transaction};
use crate::session::Core;
use mailroom_model::Address;
use mailroom_policy::{Refusal, SenderVerdict};
use mailroom_proto::{MailParams, Reply, reply};

impl Submission {
    /// MAIL FROM: opens a transaction when every check passes.
    pub(super) fn open_transaction(&mut self, core: &Core, params: MailParams) -> Reply {
        match self.check_mail(core, &params) {
            Ok(mail_from) => {
                self.txn = Some(Transaction {
                    mail_from,
                    params,
                    recipients: Vec::new(),
                    bdat: None,
                });
                reply::sender_ok()
            }
            Err(r) => r,
        }
    }

    fn check_mail(&self, core: &Core, params: &MailParams) -> Result<Address, Reply> {
        if core.helo.is_none() {
            return Err(reply::need_ehlo());
        }
        if self.txn.is_some() {
            return Err(reply::nested_mail());
        }
        let tenant = self.effective_tenant(core)?;
        if params.address.is_empty() {
            return Err(reply::null_sender_refused());
        }
        if params.require_tls && core.tls.is_none() {
            return Err(reply::require_tls_needs_tls());
        }
        match core.shared.policy.may_submit(&tenant.tenant_id) {
            Ok(()) => {}
            Err(Refusal::Inactive(status)) => return Err(reply::account_inactive(status.as_str())),
            Err(Refusal::RateLimited(e)) => {
                return Err(reply::rate_limited(e.window.as_str(), e.retry_after_secs));
            }
        }
        let limit = core.shared.config.max_message_size.min(
            core.shared
                .policy
                .message_limits(&tenant.tenant_id)
                .max_message_size,
        );
        if params.size.is_some_and(|s| s > limit) {
            return Err(reply::message_too_big_declared(limit));
        }
        let address = Address::parse(&params.address).map_err(reply::bad_sender_syntax)?;
        if address.is_utf8() && !params.smtputf8 {
            return Err(reply::utf8_not_declared());
        }
        match core
            .shared
            .policy
            .check_sender(&tenant.tenant_id, address.local(), address.domain())
        {
            SenderVerdict::Allowed => Ok(address),
            SenderVerdict::NotAuthorized(domain) => {
                Err(reply::sender_not_authorized(domain.as_str()))
            }
            SenderVerdict::AddressNotAllowed(a) => Err(reply::sender_address_not_allowed(&a)),
        }
    }
}
