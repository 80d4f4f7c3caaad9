//! The `[intake]` and `[health]` configuration sections: the bounce intake listener
//! (addresses, size and recipient bounds, DMARC / TLS-RPT report intake and the
//! addresses that count as Mailroom's own in reports) and the sender-health thresholds, window,
//! minimum sample and check interval. Declared here, included in `config::Config`.

use anyhow::{Result, bail};
use mailroom_policy::health::HealthThresholds;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSection {
    /// Listeners for bounces and complaints (the return-path MX); empty: off.
    pub listen: Vec<SocketAddr>,
    /// Largest accepted report, in bytes.
    pub max_message_size: usize,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Take DMARC aggregate and TLS-RPT reports at `dmarc@` / `tls-rpt@` of each
    /// domain's return-path subdomain (needs `domains.return_path_label`), and suggest
    /// those addresses in the domains' DMARC and TLS-RPT records.
    pub reports: bool,
    /// Mailroom's own sending addresses besides the egress pools, `domains.egress_ips`
    /// and the listen addresses (a NAT gateway's public address, another node): report
    /// sources outside all of them are flagged `foreign` in
    /// `GET /v1/domains/{name}/reports`.
    pub own_ips: Vec<IpAddr>,
}

impl Default for IntakeSection {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 10,
            reports: true,
            own_ips: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Act on the rates (warning events, pauses); off: rates are only shown.
    pub enabled: bool,
    pub bounce_warn: f64,
    pub bounce_pause: f64,
    pub complaint_warn: f64,
    pub complaint_pause: f64,
    /// Recipients with a final outcome in the window before anything is done.
    pub min_sample: i64,
    pub window_secs: u64,
    /// How often every tenant is checked (bounces at delivery time are seen here).
    pub check_interval_secs: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        let t = HealthThresholds::default();
        Self {
            enabled: true,
            bounce_warn: t.bounce_warn,
            bounce_pause: t.bounce_pause,
            complaint_warn: t.complaint_warn,
            complaint_pause: t.complaint_pause,
            min_sample: t.min_sample,
            window_secs: t.window_secs,
            check_interval_secs: 300,
        }
    }
}

impl HealthSection {
    pub fn thresholds(&self) -> HealthThresholds {
        HealthThresholds {
            bounce_warn: self.bounce_warn,
            bounce_pause: self.bounce_pause,
            complaint_warn: self.complaint_warn,
            complaint_pause: self.complaint_pause,
            min_sample: self.min_sample,
            window_secs: self.window_secs,
        }
    }
}

pub fn validate(intake: &IntakeSection, health: &HealthSection) -> Result<()> {
    let rate = |v: f64| !(v.is_finite() && v > 0.0 && v <= 1.0);
    let checks: [(bool, &str, &str); 9] = [
        (
            intake.max_message_size < 1024,
            "intake.max_message_size",
            "must be at least 1024 bytes",
        ),
        (
            intake.max_message_size > mailroom_intake::MAX_INPUT,
            "intake.max_message_size",
            "must be at most 33554432 bytes",
        ),
        (
            intake.max_recipients == 0,
            "intake.max_recipients",
            "must be at least 1",
        ),
        (
            rate(health.bounce_warn),
            "health.bounce_warn",
            "must be a fraction above 0 and at most 1",
        ),
        (
            rate(health.bounce_pause) || health.bounce_pause < health.bounce_warn,
            "health.bounce_pause",
            "must be a fraction at most 1 and not below health.bounce_warn",
        ),
        (
            rate(health.complaint_warn),
            "health.complaint_warn",
            "must be a fraction above 0 and at most 1",
        ),
        (
            rate(health.complaint_pause) || health.complaint_pause < health.complaint_warn,
            "health.complaint_pause",
            "must be a fraction at most 1 and not below health.complaint_warn",
        ),
        (
            health.min_sample < 1,
            "health.min_sample",
            "must be at least 1",
        ),
        (
            health.window_secs < 60 || health.check_interval_secs == 0,
            if health.window_secs < 60 {
                "health.window_secs"
            } else {
                "health.check_interval_secs"
            },
            "must be at least 60 (window) / 1 (interval)",
        ),
    ];
    for (bad, key, why) in checks {
        if bad {
            bail!("invalid value for key {key}: {why}");
        }
    }
    Ok(())
}
