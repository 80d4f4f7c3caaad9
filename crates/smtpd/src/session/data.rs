//! DATA and BDAT: receive the body through the smuggling-safe receiver, then hand the
//! finished message to ingest and answer with its queue id only once it is durable.

use super::{Conn, Flow, Session, Transaction};
use mailroom_ingest::{IngestError, Origin, Submission};
use mailroom_policy::{RecipientVerdict, Refusal};
use mailroom_proto::{BodyLimits, DataReceiver, Reply, reply};
use mailroom_store::StoreError;
use tokio::io::{AsyncRead, AsyncWrite};

impl Session {
    fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_size: self.shared.config.max_message_size,
            max_line: self.shared.config.max_text_line,
        }
    }

    /// Why a transaction cannot take data now, if it cannot.
    fn data_refusal(&self) -> Option<Reply> {
        match &self.txn {
            None => Some(match self.effective_tenant() {
                Err(r) => r,
                Ok(_) => reply::need_mail(),
            }),
            Some(t) if t.recipients.is_empty() => Some(reply::need_rcpt()),
            Some(_) => None,
        }
    }

    pub(crate) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Flow {
        if self.txn.as_ref().is_some_and(|t| t.bdat.is_some()) {
            conn.reply(&reply::data_and_bdat_mixed());
            return Flow::Continue;
        }
        if let Some(r) = self.data_refusal() {
            conn.reply(&r);
            return Flow::Continue;
        }
        conn.reply(&reply::start_data());
        let limits = self.body_limits();
        let mut rx = DataReceiver::data(limits);
        if let Err(stop) = conn.read_data(&mut rx).await {
            self.stopped(conn, stop).await;
            return Flow::Close;
        }
        let txn = self.txn.take().expect("checked above");
        match rx.finish() {
            Ok(body) => self.deliver_to_ingest(txn, body, conn).await,
            Err(fault) => {
                tracing::info!(peer = %self.peer, ?fault, "message refused at end of data");
                conn.reply(&fault.reply(&limits));
                Flow::Continue
            }
        }
    }

    pub(crate) async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        size: usize,
        last: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        let refusal = self.data_refusal();
        let limits = self.body_limits();
        // The chunk is read even when it will be refused: its bytes are not commands.
        let rx = match (&refusal, self.txn.as_mut()) {
            (None, Some(txn)) => Some(
                txn.bdat
                    .get_or_insert_with(|| DataReceiver::chunked(limits)),
            ),
            _ => None,
        };
        if let Err(stop) = conn.read_chunk(size, rx).await {
            self.stopped(conn, stop).await;
            return Flow::Close;
        }
        if let Some(r) = refusal {
            conn.reply(&r);
            return Flow::Continue;
        }
        if !last {
            conn.reply(&reply::chunk_ok(size));
            return Flow::Continue;
        }
        let mut txn = self.txn.take().expect("checked");
        let rx = txn
            .bdat
            .take()
            .unwrap_or_else(|| DataReceiver::chunked(limits));
        match rx.finish() {
            Ok(body) => self.deliver_to_ingest(txn, body, conn).await,
            Err(fault) => {
                conn.reply(&fault.reply(&limits));
                Flow::Continue
            }
        }
    }

    async fn deliver_to_ingest<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        txn: Transaction,
        body: Vec<u8>,
        conn: &mut Conn<S>,
    ) -> Flow {
        let tenant = match self.effective_tenant() {
            Ok(t) => t,
            Err(r) => {
                conn.reply(&r);
                return Flow::Continue;
            }
        };
        let submission = Submission {
            tenant,
            mail_from: txn.mail_from,
            recipients: txn.recipients,
            body,
            origin: Origin::Smtp {
                helo: self.helo.clone().unwrap_or_default(),
                client_ip: self.peer.ip(),
                tls: self.tls.as_ref().map(|t| t.version.clone()),
            },
            dsn_ret: txn.params.ret.map(|r| r.as_str().to_string()),
            dsn_envid: txn.params.envid,
            smtputf8: txn.params.smtputf8,
            require_tls: txn.params.require_tls,
            idempotency: None,
            meta: None,
        };
        let r = match self.shared.ingest.submit(submission).await {
            Ok(accepted) => reply::queued(accepted.id.as_str()),
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "message refused");
                ingest_reply(&e)
            }
        };
        conn.reply(&r);
        Flow::Continue
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
