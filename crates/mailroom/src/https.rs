//! The HTTPS listeners (`http.tls_listen`): the same router as the plain HTTP listener,
//! behind the TLS acceptor the SMTP listeners use — so the configured, self-signed or
//! ACME certificate, swapped by a reload or a renewal without a restart, is the one
//! HTTPS presents too.
//!
//! axum serves any [`axum::serve::Listener`]; this one hands out connections whose
//! handshake is done. Handshakes run in their own tasks (bounded in time), so a slow
//! or silent client cannot hold up the accept loop for the others.

use axum::serve::{Listener, ListenerExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections that have completed their handshake.
struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ends only at shutdown; until axum notices, wait.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections on `socket` and runs each handshake in its own task.
async fn accept_loop(
    socket: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        });
    }
}

/// Serves `app` over TLS on `socket` until `shutdown`.
pub async fn serve(
    socket: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = socket.local_addr()?;
    let (tx, ready) = mpsc::channel(64);
    tokio::spawn(accept_loop(socket, acceptor, tx, shutdown.clone()));
    // `tap_io` gives the listener axum's `ConnectInfo<SocketAddr>` (the client's
    // address, which rate limits and logs read) as the plain listener has it.
    let listener = TlsListener { local, ready }.tap_io(|_| {});
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
