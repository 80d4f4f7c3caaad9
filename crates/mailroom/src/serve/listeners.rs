//! Binding every socket `mailroom serve` listens on (SMTP submission, implicit TLS,
//! intake, HTTP, HTTPS, the managed DNS zone), printing where each one is and keeping
//! `data_dir/listeners.json` up to date. Nothing here accepts a connection.

use crate::config::Config;
use crate::files;
use anyhow::{Context, Result};
use mailroom_api::DomainServices;
use mailroom_smtpd::{Listener, ListenerKind};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The bound sockets, not yet serving.
pub(super) struct Bound {
    /// SMTP listeners (submission, implicit TLS, intake).
    pub smtp: Vec<Listener>,
    pub http: TcpListener,
    pub http_addr: SocketAddr,
    pub https: Vec<TcpListener>,
    /// What `listeners.json` says: listener name → bound address(es).
    report: serde_json::Map<String, serde_json::Value>,
}

/// Binds every SMTP, HTTP and HTTPS listener of the configuration and writes
/// `listeners.json`; an address that cannot be bound names its key.
pub(super) async fn bind(config: &Config) -> Result<Bound> {
    let mut listeners = Vec::new();
    let mut report = serde_json::Map::new();
    for (kind, addrs, name, key) in [
        (
            ListenerKind::Submission,
            &config.smtp.submission_listen,
            "submission",
            "smtp.submission_listen",
        ),
        (
            ListenerKind::ImplicitTls,
            &config.smtp.implicit_tls_listen,
            "implicit_tls",
            "smtp.implicit_tls_listen",
        ),
        (
            ListenerKind::Intake,
            &config.intake.listen,
            "intake",
            "intake.listen",
        ),
    ] {
        let mut bound = Vec::new();
        for addr in addrs {
            let socket = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({key})"))?;
            let local = socket.local_addr()?;
            println!("SMTP {name:<12} listening on {local}");
            bound.push(serde_json::json!(local.to_string()));
            listeners.push(Listener { socket, kind });
        }
        report.insert(name.to_string(), serde_json::Value::Array(bound));
    }
    let http = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let http_addr = http.local_addr()?;
    println!("HTTP API          listening on http://{http_addr}");
    report.insert("http".into(), serde_json::json!(http_addr.to_string()));
    let mut https = Vec::new();
    for addr in &config.http.tls_listen {
        let socket = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (http.tls_listen)"))?;
        println!(
            "HTTPS API         listening on https://{}",
            socket.local_addr()?
        );
        https.push(socket);
    }
    let bound: Vec<String> = https
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a| a.to_string()))
        .collect();
    report.insert("https".into(), serde_json::json!(bound));
    let bound = Bound {
        smtp: listeners,
        http,
        http_addr,
        https,
        report,
    };
    bound.write_report(config)?;
    Ok(bound)
}

impl Bound {
    /// The SMTP listeners' bound addresses (delivery never connects to its own).
    pub fn smtp_addrs(&self) -> Vec<SocketAddr> {
        self.smtp
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// Serves the managed DNS zone when `managed_domain.dns_listen` is set, and adds
    /// its address to `listeners.json`.
    pub async fn managed_zone(
        &mut self,
        config: &Config,
        domains: Arc<DomainServices>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let Some(addr) = config.managed_domain.dns_listen else {
            return Ok(());
        };
        let bound = crate::domains::serve_managed_zone(domains, addr, shutdown).await?;
        println!("DNS managed zone  listening on {bound} (UDP and TCP)");
        self.report
            .insert("dns".into(), serde_json::json!(bound.to_string()));
        self.write_report(config)
    }

    fn write_report(&self, config: &Config) -> Result<()> {
        files::write_private(
            &config.data_dir.join("listeners.json"),
            serde_json::Value::Object(self.report.clone())
                .to_string()
                .as_bytes(),
        )?;
        Ok(())
    }
}
