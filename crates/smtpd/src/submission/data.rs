//! The end of a submission's DATA or BDAT: hand the finished message to ingest and
//! answer with its queue id only once it is durable, or with the reply for why ingest
//! refused it. Receiving the body is the loop's (`crate::session`).

use super::{Submission, Transaction};
use crate::session::Core;
use mailroom_ingest::{IngestError, Origin, Submission as Message};
use mailroom_policy::{RecipientVerdict, Refusal};
use mailroom_proto::{Reply, reply};
use mailroom_store::StoreError;

impl Submission {
    pub(super) async fn deliver_to_ingest(
        &self,
        core: &Core,
        txn: Transaction,
        body: Vec<u8>,
    ) -> Reply {
        let tenant = match self.effective_tenant(core) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let submission = Message {
            tenant,
            mail_from: txn.mail_from,
            recipients: txn.recipients,
            body,
            origin: Origin::Smtp {
                helo: core.helo.clone().unwrap_or_default(),
                client_ip: core.peer.ip(),
                tls: core.tls.as_ref().map(|t| t.version.clone()),
            },
            dsn_ret: txn.params.ret.map(|r| r.as_str().to_string()),
            dsn_envid: txn.params.envid,
            smtputf8: txn.params.smtputf8,
            require_tls: txn.params.require_tls,
            idempotency: None,
            meta: None,
        };
        match core.shared.ingest.submit(submission).await {
            Ok(accepted) => reply::queued(accepted.id.as_str()),
            Err(e) => {
                tracing::info!(peer = %core.peer, error = %e, "message refused");
                ingest_reply(&e)
            }
        }
    }
}

/// Temporary or permanent, decided per error with no catch-all arm.
fn ingest_reply(e: &IngestError) -> Reply {
    match e {
        IngestError::MissingFrom | IngestError::MultipleFrom => reply::missing_from_header(),
        IngestError::FromNotAuthorized(d) => reply::header_sender_not_authorized(d.as_str()),
        IngestError::FromAddressNotAllowed(a) => reply::sender_address_not_allowed(a),
        IngestError::MalformedHeaders(why) => reply::malformed_headers(why),
        IngestError::Refused(Refusal::Inactive(status)) => reply::account_inactive(status.as_str()),
        IngestError::Refused(Refusal::RateLimited(e)) => {
            reply::rate_limited(e.window.as_str(), e.retry_after_secs)
        }
        IngestError::TooLarge(limit) => reply::message_too_big(*limit),
        IngestError::TooManyRecipients(limit) => reply::too_many_recipients(*limit),
        IngestError::RecipientRefused(_, _, verdict) => match verdict {
            RecipientVerdict::NotInSandbox => reply::recipient_not_in_sandbox(),
            RecipientVerdict::Suppressed(reason) => reply::recipient_suppressed(reason),
            // Not a refusal; ingest never returns it, but the reply must still be sane.
            RecipientVerdict::Allowed => reply::storage_unavailable(),
        },
        IngestError::ContentRejected { rule, .. } => reply::content_rejected(rule),
        IngestError::ScanUnavailable => reply::scan_unavailable(),
        IngestError::Storage(s) => match s {
            StoreError::Full => reply::storage_full(),
            StoreError::Closed
            | StoreError::Database(_)
            | StoreError::Unavailable(_)
            | StoreError::Conflict(_)
            | StoreError::NotFound(_) => reply::storage_unavailable(),
        },
    }
}
