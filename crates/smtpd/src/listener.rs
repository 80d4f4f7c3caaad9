//! Listeners: accept connections within the total and per-address limits (the excess
//! hears `421 4.7.0`), and run each session in its own task, tracked so shutdown can
//! wait for them.

use crate::SmtpConfig;
use crate::intake::{IntakeHandle, serve_intake_connection};
use crate::submission::serve_connection;
use mailroom_ingest::Ingest;
use mailroom_policy::Policy;
use mailroom_proto::reply;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every session of the server shares.
pub struct Shared {
    pub config: SmtpConfig,
    pub policy: Arc<Policy>,
    pub ingest: Arc<Ingest>,
    /// `None` when no certificate is configured: no STARTTLS, no implicit TLS, no AUTH.
    pub tls: Option<TlsAcceptor>,
    /// Cancelled at shutdown: waiting sessions answer 421 and close.
    pub shutdown: CancellationToken,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Sessions in progress, for graceful shutdown.
    pub tracker: TaskTracker,
    /// The bounce intake pipeline, for `ListenerKind::Intake` listeners.
    pub intake: Option<IntakeHandle>,
}

impl Shared {
    pub fn new(
        config: SmtpConfig,
        policy: Arc<Policy>,
        ingest: Arc<Ingest>,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Self::with_intake(config, policy, ingest, tls, shutdown, None)
    }

    /// Like `new`, with the pipeline that intake listeners hand reports to.
    pub fn with_intake(
        config: SmtpConfig,
        policy: Arc<Policy>,
        ingest: Arc<Ingest>,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
        intake: Option<IntakeHandle>,
    ) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            policy,
            ingest,
            tls,
            shutdown,
            per_ip: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            intake,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain connection that may upgrade with STARTTLS (submission, port 587 style).
    Submission,
    /// TLS from the first byte (port 465 style).
    ImplicitTls,
    /// Bounce and complaint intake (the return-path MX): no AUTH, STARTTLS offered,
    /// only VERP recipients.
    Intake,
}

pub struct Listener {
    pub socket: TcpListener,
    pub kind: ListenerKind,
}

/// Holds one connection's place in the per-address count.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip.lock().expect("per-ip lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

fn take_slot(shared: &Arc<Shared>, ip: IpAddr) -> Result<IpSlot, mailroom_proto::Reply> {
    let permit = shared
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| reply::too_many_connections())?;
    let mut map = shared.per_ip.lock().expect("per-ip lock");
    let n = map.entry(ip).or_insert(0);
    if *n >= shared.config.max_connections_per_ip {
        return Err(reply::too_many_connections_from_ip());
    }
    *n += 1;
    Ok(IpSlot {
        shared: shared.clone(),
        ip,
        _permit: permit,
    })
}

/// Accepts connections until shutdown.
pub async fn serve_listener(shared: Arc<Shared>, listener: Listener) {
    let implicit = listener.kind == ListenerKind::ImplicitTls;
    // Bounds the short-lived tasks that tell over-limit clients to go away.
    let refusals = Arc::new(Semaphore::new(64));
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.socket.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match take_slot(&shared, peer.ip()) {
            Ok(slot) => {
                let shared2 = shared.clone();
                let kind = listener.kind;
                shared.tracker.spawn(async move {
                    let _slot = slot;
                    match kind {
                        ListenerKind::Intake => {
                            serve_intake_connection(shared2, stream, peer).await
                        }
                        ListenerKind::Submission | ListenerKind::ImplicitTls => {
                            serve_connection(shared2, stream, peer, implicit).await
                        }
                    }
                });
            }
            Err(r) => {
                tracing::info!(%peer, "connection refused: limit reached");
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, r, implicit, permit));
                }
            }
        }
    }
}

async fn refuse(
    mut stream: TcpStream,
    r: mailroom_proto::Reply,
    implicit: bool,
    _permit: OwnedSemaphorePermit,
) {
    // On an implicit-TLS port a plain-text reply would be noise; just close.
    if !implicit {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            stream.write_all(r.to_wire().as_bytes()),
        )
        .await;
    }
    let _ = stream.shutdown().await;
}
