//! The SMTP side of `mailroom serve`: the sender-health monitor (and its periodic
//! round), the intake pipeline for bounces, complaints and reports, and the sessions
//! served on every bound SMTP listener.

use super::Core;
use crate::config::Config;
use mailroom_ingest::Ingest;
use mailroom_intake::{HealthMonitor, Intake};
use mailroom_smtpd::{IntakeHandle, Listener, Shared};
use mailroom_store::DynStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Starts sender health checks and serves every SMTP listener; returns what the
/// sessions share (its tracker is what shutdown waits on) and the listener tasks.
pub(super) fn start(
    config: &Config,
    core: &Core,
    ingest: &Arc<Ingest>,
    acceptor: TlsAcceptor,
    listeners: Vec<Listener>,
) -> (Arc<Shared>, Vec<JoinHandle<()>>) {
    let store = &core.store;
    // Sender health: checked after each recorded bounce or complaint, and periodically.
    let health = Arc::new(HealthMonitor::new(
        store.clone(),
        core.policy.clone(),
        config.health.enabled,
    ));
    let health_every = Duration::from_secs(config.health.check_interval_secs);
    let monitor = health.clone();
    tokio::spawn(crate::node::run_singleton(
        store.clone(),
        "health-check",
        core.node_id.clone(),
        health_every,
        health_every,
        core.shutdown.clone(),
        move || {
            let monitor = monitor.clone();
            async move {
                if let Err(e) = monitor.check_all().await {
                    tracing::warn!(error = %e, "sender health round failed");
                }
            }
        },
    ));
    let intake = (!config.intake.listen.is_empty()).then(|| IntakeHandle {
        pipeline: Arc::new(report_intake(
            late_reports(Intake::new(store.clone(), health.clone()), config, store),
            config,
            store,
        )),
        max_message_size: config.intake.max_message_size,
        max_recipients: config.intake.max_recipients,
    });
    let shared = Shared::with_intake(
        config.smtp_config(),
        core.policy.clone(),
        ingest.clone(),
        Some(acceptor),
        core.shutdown.clone(),
        intake,
    );
    let mut tasks = Vec::new();
    for listener in listeners {
        tasks.push(tokio::spawn(mailroom_smtpd::serve_listener(
            shared.clone(),
            listener,
        )));
    }
    (shared, tasks)
}

/// With `intake.reports` on and a return-path subdomain, intake also takes DMARC
/// aggregate and TLS-RPT reports at its `dmarc@` / `tls-rpt@` addresses.
fn report_intake(intake: Intake, config: &Config, store: &DynStore) -> Intake {
    let label = &config.domains.return_path_label;
    if !config.intake.reports || label.is_empty() {
        return intake;
    }
    intake.with_reports(store.clone(), label)
}

/// With `delivery.dsn` on, bounces recorded by intake also send the original sender
/// its failure report (when NOTIFY asks for one), named after the delivery HELO name.
fn late_reports(intake: Intake, config: &Config, store: &DynStore) -> Intake {
    let delivery = config.delivery_config(Vec::new(), "");
    if !delivery.dsn {
        return intake;
    }
    intake.with_late_reports(Arc::new(LateDsn(mailroom_delivery::LateReports::new(
        store.clone(),
        delivery.helo_name,
    ))))
}

/// Delivery's late failure reports behind intake's `LateReporter` (intake does not
/// depend on delivery; the binary joins them).
struct LateDsn(mailroom_delivery::LateReports);

#[async_trait::async_trait]
impl mailroom_intake::LateReporter for LateDsn {
    async fn failed(
        &self,
        f: &mailroom_intake::LateFailure<'_>,
    ) -> Result<Option<mailroom_model::MessageId>, mailroom_store::StoreError> {
        let failure = mailroom_delivery::LateFailure {
            message_id: f.message_id,
            idx: f.idx,
            status: f.status,
            diagnostic: f.diagnostic,
            remote_mta: f.remote_mta,
        };
        self.0.failed(&failure).await
    }
}
