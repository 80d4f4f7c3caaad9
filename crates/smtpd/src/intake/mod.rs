//! The bounce intake kind of session (the MX of the return-path subdomains): needs
//! no AUTH and offers STARTTLS, takes any envelope sender (bounces use the null
//! sender), accepts only recipients that are VERP addresses of stored messages, and
//! hands each finished message to the intake pipeline (`mailroom_intake`), never to
//! submission ingest. It also takes DMARC aggregate and TLS-RPT reports at the
//! reporting addresses of known domains (`dmarc@` / `tls-rpt@` the return-path
//! subdomain), one domain's report per transaction. Stages: `envelope` (MAIL, RCPT)
//! and `data` (the hand-over of a finished body); this file holds the kind's state,
//! its answers to the loop (`Kind`) and `serve_intake_connection`. The loop itself is
//! `crate::session`.

mod data;
mod envelope;

use crate::Shared;
use crate::session::{self, Conn, Core, Kind, Session};
use mailroom_intake::{BounceAddress, Intake, ReportAddress};
use mailroom_proto::{
    BodyLimits, Capabilities, DataReceiver, MailParams, RcptParams, Reply, reply,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// What intake sessions share besides `Shared`.
#[derive(Clone)]
pub struct IntakeHandle {
    pub pipeline: Arc<Intake>,
    /// Largest accepted report, in bytes (advertised as SIZE).
    pub max_message_size: usize,
    /// Recipients per transaction.
    pub max_recipients: usize,
}

pub(crate) struct Txn {
    params: MailParams,
    recipients: Vec<BounceAddress>,
    /// A DMARC / TLS-RPT reporting address (then `recipients` stays empty: one kind
    /// of report, for one domain, per transaction).
    report: Option<ReportAddress>,
    bdat: Option<DataReceiver>,
}

/// What an intake session knows beyond the shared `Core`.
pub(crate) struct IntakeSession {
    handle: IntakeHandle,
    txn: Option<Txn>,
}

impl Kind for IntakeSession {
    type Txn = Txn;

    fn capabilities(&self, core: &Core) -> Capabilities {
        Capabilities {
            max_size: self.handle.max_message_size,
            starttls: core.tls.is_none() && core.starttls_available,
            auth: false,
            require_tls: false,
        }
    }

    fn reset(&mut self) {
        self.txn = None;
    }

    fn mail(&mut self, core: &Core, params: MailParams) -> Reply {
        self.open_transaction(core, params)
    }

    async fn rcpt(&mut self, core: &Core, params: RcptParams) -> Reply {
        self.recipient(core, params).await
    }

    fn body_limits(&self, core: &Core) -> BodyLimits {
        BodyLimits {
            max_size: self.handle.max_message_size,
            max_line: core.shared.config.max_text_line,
        }
    }

    fn data_refusal(&self, _core: &Core) -> Option<Reply> {
        match &self.txn {
            None => Some(reply::need_mail()),
            Some(t) if t.recipients.is_empty() && t.report.is_none() => Some(reply::need_rcpt()),
            Some(_) => None,
        }
    }

    fn chunks(&mut self) -> Option<&mut Option<DataReceiver>> {
        self.txn.as_mut().map(|t| &mut t.bdat)
    }

    fn take_txn(&mut self) -> Option<(Txn, Option<DataReceiver>)> {
        let mut txn = self.txn.take()?;
        let rx = txn.bdat.take();
        Some((txn, rx))
    }

    async fn finish(&mut self, core: &Core, txn: Txn, body: Vec<u8>) -> Reply {
        self.hand_over(core, txn, body).await
    }
}

/// Serves one connection of an intake listener (plain, STARTTLS offered when the
/// server has a certificate). Without an intake pipeline configured the client hears
/// `421` and the connection closes.
pub async fn serve_intake_connection<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    metrics::counter!("mailroom_smtp_sessions_total", "listener" => "intake").increment(1);
    let Some(handle) = shared.intake.clone() else {
        let deadline = Instant::now() + shared.config.session_timeout;
        let timeout = shared.config.command_timeout;
        let mut conn = Conn::new(stream, timeout, deadline, shared.shutdown.clone());
        let _ = conn.say(&reply::shutting_down()).await;
        return;
    };
    let starttls = shared.tls.is_some();
    let kind = IntakeSession { handle, txn: None };
    let session = Session::new(shared, peer, starttls, kind);
    session::serve(session, stream, false).await;
}
