//! The metrics catalogue: installs the process-wide Prometheus recorder (rendered by
//! `GET /metrics`), gives every metric its help text and unit, and sets explicit
//! histogram buckets so they aggregate across nodes. The metrics themselves are
//! recorded where things happen (smtpd, ingest, delivery, events, api).

use anyhow::{Context, Result};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LATENCY_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];
const ATTEMPT_BUCKETS: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0];

pub fn install(shutdown: CancellationToken) -> Result<mailroom_api::MetricsRenderer> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("mailroom_delivery_latency_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("mailroom_delivery_attempts".into()),
                &ATTEMPT_BUCKETS,
            )
        })
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => upkeep.run_upkeep(),
            }
        }
    });
    Ok(Arc::new(move || handle.render()))
}

fn describe() {
    describe_counter!(
        "mailroom_messages_accepted_total",
        "Messages accepted and durably queued, by tenant id and source (smtp, api)"
    );
    describe_counter!(
        "mailroom_recipients_accepted_total",
        "Recipients of accepted messages, by tenant id"
    );
    describe_counter!(
        "mailroom_recipients_suppressed_total",
        "Accepted recipients that were on the tenant's suppression list, by tenant id"
    );
    describe_counter!(
        "mailroom_submissions_rejected_total",
        "Submissions refused by the ingest pipeline, by source and reason"
    );
    describe_counter!(
        "mailroom_recipient_outcomes_total",
        "Delivery attempt outcomes per recipient, by tenant id and outcome (delivered, deferred, bounced, expired)"
    );
    describe_histogram!(
        "mailroom_delivery_latency_seconds",
        Unit::Seconds,
        "Time from acceptance to delivery, per delivered recipient"
    );
    describe_histogram!(
        "mailroom_delivery_attempts",
        "Attempts a recipient took to reach a final state, by outcome"
    );
    describe_counter!(
        "mailroom_delivery_lost_leases_total",
        "Delivery outcomes not recorded because this node's lease had been taken over by another node (the recipient may have been sent twice)"
    );
    describe_counter!(
        "mailroom_idempotency_races_total",
        "HTTP sends whose Idempotency-Key was stored first by a concurrent request (through this or another node); answered with that request's response"
    );
    describe_gauge!(
        "mailroom_queue_recipients",
        "Recipients in the store by state, read at scrape time"
    );
    describe_counter!(
        "mailroom_smtp_sessions_total",
        "SMTP sessions opened, by listener (submission, implicit_tls)"
    );
    describe_gauge!("mailroom_smtp_sessions_active", "SMTP sessions open now");
    describe_gauge!(
        "mailroom_delivery_outcomes_held",
        "Delivery outcomes the storage refused (disk full, read-only), held until it takes writes"
    );
    describe_counter!(
        "mailroom_smtp_rejections_total",
        "SMTP replies with a 4xx or 5xx code, by code and enhanced code"
    );
    describe_counter!(
        "mailroom_content_verdicts_total",
        "Content-protection verdicts on submitted messages, by rule and action"
    );
    describe_gauge!(
        "mailroom_webhook_deliveries",
        "Webhook deliveries by state: pending (the backlog) and failed (gave up), read at scrape time"
    );
    describe_counter!(
        "mailroom_webhook_attempts_total",
        "Webhook POST attempts, by result (delivered, retry, failed)"
    );
}
