//! Certificates from ACME (`[tls.acme]`): a background task that orders one at start
//! when none is stored (or it does not cover `tls.acme.hosts`), renews it within
//! `renew_before_days` of expiry, and swaps each new one into the listeners'
//! [`LiveCert`] without a restart. A failed order is logged and shown in `/readyz`
//! (`certificate`), and the certificate in force (the previous one, or the self-signed
//! one before the first) stays. The order itself and the files are `acme_order.rs`'s.
//!
//! Each node keeps its own certificate in its own `data_dir` and orders it itself;
//! the HTTP-01 answers are shared through the store, so the CA's validation may reach
//! any node behind the name.

use crate::acme_config::AcmeSection;
use crate::acme_order::{self, Stored};
use crate::tls::LiveCert;
use mailroom_store::DynStore;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The first retry after a failed order; doubled after each failure, up to
/// `check_interval_secs`.
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// What `/readyz` shows under `certificate`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    /// Always `acme`.
    source: &'static str,
    /// `pending` (no certificate from the CA yet), `valid`, or `failing` (the last
    /// order failed; the certificate in force is kept).
    state: &'static str,
    hosts: Vec<String>,
    /// The certificate in force (RFC 3339), if it came from the CA.
    not_after: Option<String>,
    serial: Option<String>,
    /// When the certificate in force was issued to this node (RFC 3339).
    renewed_at: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    /// When the next check (or retry) happens (RFC 3339).
    next_check: Option<String>,
}

/// The task's state shared with `/readyz`.
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<Mutex<Status>>);

impl StatusHandle {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// For the API's `/readyz`.
    pub fn api(&self) -> mailroom_api::CertificateStatus {
        let me = self.clone();
        mailroom_api::CertificateStatus(Arc::new(move || {
            let s =
                me.0.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
            serde_json::to_value(s).unwrap_or_default()
        }))
    }
}

/// Everything the renewal task needs.
pub struct Renewer {
    pub acme: AcmeSection,
    pub data_dir: PathBuf,
    pub store: DynStore,
    pub cert: Arc<LiveCert>,
    pub status: StatusHandle,
}

fn rfc3339(unix_secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix_secs, 0).map(|t| t.to_rfc3339())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Whether `stored` must be replaced now: it does not cover every host, or it expires
/// within `renew_before_days`.
pub fn due(stored: &Stored, acme: &AcmeSection, now_secs: i64) -> bool {
    let covers = acme
        .hosts
        .iter()
        .all(|h| stored.names.iter().any(|n| n.eq_ignore_ascii_case(h)));
    let renew_at = stored.not_after - (acme.renew_before_days as i64).saturating_mul(86_400);
    !covers || now_secs >= renew_at
}

impl Renewer {
    /// Runs until shutdown: check, order when due, sleep until the next check.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = Duration::from_secs(self.acme.check_interval_secs);
        let mut retry = FIRST_RETRY.min(interval);
        self.status.update(|s| {
            s.source = "acme";
            s.state = "pending";
            s.hosts = self.acme.hosts.clone();
        });
        loop {
            let wait = match self.check_once().await {
                Ok(()) => {
                    retry = FIRST_RETRY.min(interval);
                    interval
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::error!(error = %why, hosts = ?self.acme.hosts, directory = %self.acme.directory,
                        "ACME certificate order failed; the certificate in force is kept");
                    self.status.update(|s| {
                        s.state = "failing";
                        s.last_error = Some(why);
                        s.last_error_at = Some(now_rfc3339());
                    });
                    let wait = retry;
                    retry = (retry * 2).min(interval);
                    wait
                }
            };
            let next = chrono::Utc::now() + chrono::TimeDelta::from_std(wait).unwrap_or_default();
            self.status
                .update(|s| s.next_check = Some(next.to_rfc3339()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One check: the stored certificate (put in force if it is not yet), and an order
    /// when it is missing or due.
    async fn check_once(&self) -> anyhow::Result<()> {
        let current = match acme_order::stored(&self.data_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the stored ACME certificate is unusable; ordering a new one");
                None
            }
        };
        let now = chrono::Utc::now().timestamp();
        if let Some(stored) = &current {
            self.show(stored, None);
            if !due(stored, &self.acme, now) {
                return Ok(());
            }
            tracing::info!(not_after = ?rfc3339(stored.not_after), "renewing the ACME certificate");
        } else {
            tracing::info!(hosts = ?self.acme.hosts, "ordering a certificate from the ACME CA");
        }
        let pem = acme_order::order(&self.acme, &self.data_dir, self.store.as_ref()).await?;
        let fresh = acme_order::parse(pem.as_bytes())?;
        acme_order::store(&self.data_dir, &pem)?;
        self.cert.replace(fresh.key.clone());
        tracing::info!(serial = %fresh.serial, not_after = ?rfc3339(fresh.not_after),
            hosts = ?fresh.names, "ACME certificate issued and in force");
        self.show(&fresh, Some(now_rfc3339()));
        Ok(())
    }

    /// Records `stored` as the certificate in force (and `valid`, clearing an error).
    fn show(&self, stored: &Stored, renewed_at: Option<String>) {
        self.status.update(|s| {
            if s.serial.as_deref() != Some(stored.serial.as_str()) || renewed_at.is_some() {
                s.state = "valid";
                s.last_error = None;
                s.last_error_at = None;
            }
            s.not_after = rfc3339(stored.not_after);
            s.serial = Some(stored.serial.clone());
            if renewed_at.is_some() {
                s.renewed_at = renewed_at;
            }
        });
    }
}

/// Starts the renewal task when `[tls.acme]` is configured; returns the status for
/// `/readyz`.
pub fn spawn(
    config: &crate::config::Config,
    store: DynStore,
    cert: Arc<LiveCert>,
    shutdown: CancellationToken,
) -> Option<StatusHandle> {
    let acme = config.tls.acme.clone()?;
    let status = StatusHandle::default();
    let renewer = Renewer {
        acme,
        data_dir: config.data_dir.clone(),
        store,
        cert,
        status: status.clone(),
    };
    tokio::spawn(renewer.run(shutdown));
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(names: &[&str], not_after: i64) -> Stored {
        // A real key pair: `Stored` holds a CertifiedKey.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let mut s = acme_order::parse(pem.as_bytes()).unwrap();
        s.names = names.iter().map(|n| n.to_string()).collect();
        s.not_after = not_after;
        s
    }

    #[test]
    fn renewal_is_due_near_expiry_or_for_new_hosts() {
        let acme = AcmeSection {
            hosts: vec!["a.example".into(), "b.example".into()],
            renew_before_days: 30,
            ..Default::default()
        };
        let day = 86_400;
        let now = 1_000 * day;
        let both = ["a.example", "B.example"];
        assert!(!due(&stored(&both, now + 31 * day), &acme, now));
        assert!(due(&stored(&both, now + 30 * day), &acme, now));
        assert!(due(&stored(&both, now - day), &acme, now));
        assert!(due(&stored(&["a.example"], now + 90 * day), &acme, now));
    }

    #[test]
    fn a_stored_chain_parses_with_its_names_and_expiry() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["mail.example".into(), "smtp.example".into()])
                .unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let s = acme_order::parse(pem.as_bytes()).unwrap();
        assert_eq!(s.names, vec!["mail.example", "smtp.example"]);
        assert_eq!(rfc3339(s.not_after).unwrap(), "2031-01-02T00:00:00+00:00");
        // Another key: refused.
        let other = rcgen::KeyPair::generate().unwrap();
        let bad = format!("{}{}", cert.pem(), other.serialize_pem());
        assert!(acme_order::parse(bad.as_bytes()).is_err());
        assert!(acme_order::parse(cert.pem().as_bytes()).is_err(), "no key");
        let dir = tempfile::tempdir().unwrap();
        assert!(acme_order::stored(dir.path()).unwrap().is_none());
        acme_order::store(dir.path(), &pem).unwrap();
        let back = acme_order::stored(dir.path()).unwrap().unwrap();
        assert_eq!(back.serial, s.serial);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("acme/cert.pem")), 0o600);
            assert_eq!(mode(&dir.path().join("acme")), 0o700);
        }
    }
}
