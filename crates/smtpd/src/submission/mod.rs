//! The submission kind of session (the submission and implicit-TLS listeners): the
//! client acts for a tenant (AUTH under TLS, or an allowlisted address), MAIL and RCPT
//! ask `policy`, and a finished message goes to `ingest`. Stages: `auth`, `mail`,
//! `rcpt`, `data` (the hand-over to ingest); this file holds the kind's state, its
//! answers to the loop (`Kind`) and `serve_connection`. The loop itself is
//! `crate::session`.

mod auth;
mod data;
mod mail;
mod rcpt;

use crate::Shared;
use crate::session::{self, Conn, Core, Flow, Kind, Session};
use mailroom_ingest::Recipient;
use mailroom_model::Address;
use mailroom_policy::{AllowlistVerdict, TenantContext};
use mailroom_proto::command::Mechanism;
use mailroom_proto::{
    BodyLimits, Capabilities, CommandError, DataReceiver, MailParams, RcptParams, Reply, reply,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// The mail transaction between MAIL and the end of data.
#[derive(Debug)]
pub(crate) struct Transaction {
    pub mail_from: Address,
    pub params: MailParams,
    pub recipients: Vec<Recipient>,
    /// BDAT chunks received so far, when the client uses CHUNKING.
    pub bdat: Option<DataReceiver>,
}

/// What a submission session knows beyond the shared `Core`.
#[derive(Default)]
pub(crate) struct Submission {
    /// The tenant AUTH proved (an allowlisted client has none: see `effective_tenant`).
    tenant: Option<TenantContext>,
    txn: Option<Transaction>,
    /// Failed AUTH attempts, closed at `smtp.max_auth_failures`.
    auth_failures: u32,
}

impl Submission {
    /// The tenant for this session: authenticated, or from the IP allowlist.
    fn effective_tenant(&self, core: &Core) -> Result<TenantContext, Reply> {
        if let Some(t) = &self.tenant {
            return Ok(t.clone());
        }
        match core
            .shared
            .policy
            .allowlisted(core.peer.ip(), core.tls.is_some())
        {
            AllowlistVerdict::Listed(t) => Ok(t),
            AllowlistVerdict::NotListed => Err(reply::auth_required()),
            AllowlistVerdict::NeedsTls => Err(reply::tls_required_for_relay()),
        }
    }
}

impl Kind for Submission {
    type Txn = Transaction;

    fn capabilities(&self, core: &Core) -> Capabilities {
        Capabilities {
            max_size: core.shared.config.max_message_size,
            starttls: core.tls.is_none() && core.starttls_available,
            auth: core.tls.is_some(),
            require_tls: core.tls.is_some(),
        }
    }

    fn reset(&mut self) {
        self.txn = None;
    }

    /// After STARTTLS the tenant must authenticate again.
    fn restart(&mut self) {
        self.tenant = None;
        self.txn = None;
    }

    /// A malformed MAIL or RCPT from a client that may not send at all is told what
    /// is missing (AUTH, MAIL) before anything about its syntax.
    fn command_error(&self, core: &Core, e: CommandError) -> Reply {
        use CommandError as E;
        match e {
            E::InvalidSender | E::InvalidRecipient if self.txn.is_none() => {
                match self.effective_tenant(core) {
                    Err(r) => r,
                    Ok(_) if matches!(e, E::InvalidRecipient) => reply::need_mail(),
                    Ok(_) => e.reply(),
                }
            }
            E::BadLineEnding | E::Unknown | E::Syntax(_) | E::Parameter(_) => e.reply(),
            E::InvalidSender | E::InvalidRecipient => e.reply(),
        }
    }

    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        core: &mut Core,
        mechanism: Mechanism,
        initial: Option<String>,
        conn: &mut Conn<S>,
    ) -> Flow {
        self.authenticate(core, mechanism, initial, conn).await
    }

    fn mail(&mut self, core: &Core, params: MailParams) -> Reply {
        self.open_transaction(core, params)
    }

    async fn rcpt(&mut self, core: &Core, params: RcptParams) -> Reply {
        self.recipient(core, params).await
    }

    fn body_limits(&self, core: &Core) -> BodyLimits {
        BodyLimits {
            max_size: core.shared.config.max_message_size,
            max_line: core.shared.config.max_text_line,
        }
    }

    fn data_refusal(&self, core: &Core) -> Option<Reply> {
        match &self.txn {
            None => Some(match self.effective_tenant(core) {
                Err(r) => r,
                Ok(_) => reply::need_mail(),
            }),
            Some(t) if t.recipients.is_empty() => Some(reply::need_rcpt()),
            Some(_) => None,
        }
    }

    fn chunks(&mut self) -> Option<&mut Option<DataReceiver>> {
        self.txn.as_mut().map(|t| &mut t.bdat)
    }

    fn take_txn(&mut self) -> Option<(Transaction, Option<DataReceiver>)> {
        let mut txn = self.txn.take()?;
        let rx = txn.bdat.take();
        Some((txn, rx))
    }

    async fn finish(&mut self, core: &Core, txn: Transaction, body: Vec<u8>) -> Reply {
        self.deliver_to_ingest(core, txn, body).await
    }
}

/// Counts a session in `mailroom_smtp_sessions_active` for as long as it lives.
struct ActiveSession;

impl ActiveSession {
    fn start() -> Self {
        metrics::gauge!("mailroom_smtp_sessions_active").increment(1.0);
        ActiveSession
    }
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        metrics::gauge!("mailroom_smtp_sessions_active").decrement(1.0);
    }
}

/// Serves one accepted submission connection. With `implicit_tls` the TLS handshake
/// comes first; otherwise the client may upgrade with STARTTLS when the server has a
/// certificate.
pub async fn serve_connection<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    implicit_tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = if implicit_tls {
        "implicit_tls"
    } else {
        "submission"
    };
    metrics::counter!("mailroom_smtp_sessions_total", "listener" => listener).increment(1);
    let _active = ActiveSession::start();
    let starttls = !implicit_tls && shared.tls.is_some();
    let session = Session::new(shared, peer, starttls, Submission::default());
    session::serve(session, stream, implicit_tls).await;
}
