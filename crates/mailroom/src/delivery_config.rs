//! The `[delivery]` configuration section (the outbound engine: exchangers, TLS,
//! connection limits, timeouts, retries, leases, static routes), its validation, and
//! its translation into the engine's `DeliveryConfig`. Declared here, included in
//! `config::Config`.

use crate::config::Config;
use anyhow::{Result, bail};
use serde::Deserialize;

const TLS_MODES: [&str; 4] = ["none", "opportunistic", "required", "verify"];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// Run the delivery engine (off: messages are only queued).
    pub enabled: bool,
    /// EHLO name toward exchangers; empty: `hostname`.
    pub helo_name: String,
    pub mx_port: u16,
    /// none | opportunistic | required | verify
    pub mx_tls: String,
    /// Allow exchangers on loopback/private/link-local addresses.
    pub allow_private: bool,
    pub per_destination_connections: usize,
    pub max_connections: usize,
    pub max_messages_per_connection: u32,
    pub idle_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    pub greeting_timeout_secs: u64,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    pub retry_schedule_secs: Vec<u64>,
    pub retry_jitter: f64,
    pub queue_lifetime_secs: u64,
    pub dsn: bool,
    /// Seconds after acceptance at which a recipient still being retried gets one
    /// delay report, when its NOTIFY includes DELAY (each threshold once).
    pub delay_report_secs: Vec<u64>,
    /// How long a claim on a recipient lasts before another node may take it over
    /// (renewed while its delivery runs).
    pub lease_secs: u64,
    pub routes: Vec<RouteSection>,
    /// MTA-STS toward exchangers found through MX: on | off (see tls_policy_config.rs).
    pub mta_sts: String,
    /// Port of the MTA-STS policy host (443; test-only, like mx_port).
    pub mta_sts_port: u16,
    /// PEM file of one more CA trusted for verified TLS to exchangers and for the
    /// MTA-STS policy fetch (test-only: a test CA); empty: none.
    pub tls_test_ca_file: String,
    /// Daily TLS-RPT reports (RFC 8460): on | off (see tls_policy_config.rs).
    pub tls_rpt: String,
    /// The tenant (name) report mail is sent as: DKIM-signed with its domain's key.
    pub tls_rpt_tenant: String,
    /// The report mail's sender, at one of that tenant's verified domains.
    pub tls_rpt_from: String,
    /// `organization-name` of the reports; empty: the hostname.
    pub tls_rpt_organization: String,
    /// How often a node checks whether a finished day still needs its reports.
    pub tls_rpt_check_secs: u64,
    /// Test-only: the report task's clock runs this far ahead (86400: today's counters
    /// are reported now).
    pub tls_rpt_clock_offset_secs: i64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Recipient domains, or `*` for every other domain.
    pub domains: Vec<String>,
    pub host: String,
    #[serde(default = "default_route_port")]
    pub port: u16,
    /// none | opportunistic | required | verify
    #[serde(default = "default_route_tls")]
    pub tls: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

fn default_route_port() -> u16 {
    25
}

fn default_route_tls() -> String {
    "opportunistic".into()
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            enabled: true,
            helo_name: String::new(),
            mx_port: 25,
            mx_tls: "opportunistic".into(),
            allow_private: false,
            per_destination_connections: 10,
            max_connections: 200,
            max_messages_per_connection: 100,
            idle_timeout_secs: 5,
            connect_timeout_secs: 30,
            greeting_timeout_secs: 300,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            retry_schedule_secs: vec![60, 300, 900, 1800, 3600, 7200, 14400, 28800],
            retry_jitter: 0.1,
            queue_lifetime_secs: 72 * 3600,
            dsn: true,
            delay_report_secs: vec![4 * 3600],
            lease_secs: 60,
            routes: Vec::new(),
            mta_sts: "on".into(),
            mta_sts_port: 443,
            tls_test_ca_file: String::new(),
            tls_rpt: "off".into(),
            tls_rpt_tenant: String::new(),
            tls_rpt_from: String::new(),
            tls_rpt_organization: String::new(),
            tls_rpt_check_secs: 3600,
            tls_rpt_clock_offset_secs: 0,
        }
    }
}

/// Checks the section; errors name the key.
pub fn validate(d: &DeliverySection) -> Result<()> {
    crate::tls_policy_config::validate(d)?;
    let delivery_checks: [(bool, &str, &str); 8] = [
        (
            !TLS_MODES.contains(&d.mx_tls.as_str()),
            "delivery.mx_tls",
            "must be none, opportunistic, required or verify",
        ),
        (
            d.per_destination_connections == 0,
            "delivery.per_destination_connections",
            "must be at least 1",
        ),
        (
            d.max_connections == 0,
            "delivery.max_connections",
            "must be at least 1",
        ),
        (
            d.max_messages_per_connection == 0,
            "delivery.max_messages_per_connection",
            "must be at least 1",
        ),
        (
            d.retry_schedule_secs.is_empty() || d.retry_schedule_secs.contains(&0),
            "delivery.retry_schedule_secs",
            "must list at least one delay, each at least 1",
        ),
        (
            !(0.0..=1.0).contains(&d.retry_jitter),
            "delivery.retry_jitter",
            "must be between 0.0 and 1.0",
        ),
        (
            d.queue_lifetime_secs == 0,
            "delivery.queue_lifetime_secs",
            "must be at least 1",
        ),
        (
            d.lease_secs == 0,
            "delivery.lease_secs",
            "must be at least 1",
        ),
    ];
    if d.delay_report_secs.contains(&0) {
        bail!(
            "invalid value for key delivery.delay_report_secs: each threshold must be at least 1"
        );
    }
    for (bad, key, why) in delivery_checks {
        if bad {
            bail!("invalid value for key {key}: {why}");
        }
    }
    for (i, r) in d.routes.iter().enumerate() {
        if r.domains.is_empty() {
            bail!(
                "invalid value for key delivery.routes[{i}].domains: list at least one domain or \"*\""
            );
        }
        if r.host.is_empty() {
            bail!("invalid value for key delivery.routes[{i}].host: must not be empty");
        }
        if !TLS_MODES.contains(&r.tls.as_str()) {
            bail!(
                "invalid value for key delivery.routes[{i}].tls: must be none, opportunistic, required or verify"
            );
        }
        if r.username.is_some() != r.password.is_some() {
            bail!(
                "invalid value for key delivery.routes[{i}].username / password: set both or neither"
            );
        }
    }
    Ok(())
}

fn tls_mode(text: &str) -> mailroom_delivery::TlsMode {
    use mailroom_delivery::TlsMode;
    match text {
        "none" => TlsMode::None,
        "required" => TlsMode::Required,
        "verify" => TlsMode::Verify,
        _ => TlsMode::Opportunistic,
    }
}

impl Config {
    /// The delivery engine's settings; `own_listeners` are this server's SMTP sockets,
    /// `node_id` the owner of the leases it takes (`node.id` or the generated one).
    pub fn delivery_config(
        &self,
        own_listeners: Vec<std::net::SocketAddr>,
        node_id: &str,
    ) -> mailroom_delivery::DeliveryConfig {
        use mailroom_delivery::{DeliveryConfig, StaticRoute, Timeouts, schedule::RetrySchedule};
        use std::time::Duration;
        let d = &self.delivery;
        let secs = Duration::from_secs;
        DeliveryConfig {
            helo_name: if d.helo_name.is_empty() {
                self.hostname.clone()
            } else {
                d.helo_name.clone()
            },
            mx_port: d.mx_port,
            mx_tls: tls_mode(&d.mx_tls),
            routes: d
                .routes
                .iter()
                .map(|r| StaticRoute {
                    domains: r.domains.iter().map(|x| x.to_ascii_lowercase()).collect(),
                    host: r.host.clone(),
                    port: r.port,
                    tls: tls_mode(&r.tls),
                    auth: r.username.clone().zip(r.password.clone()),
                })
                .collect(),
            allow_private: d.allow_private,
            own_listeners,
            per_destination_connections: d.per_destination_connections,
            max_connections: d.max_connections,
            max_messages_per_connection: d.max_messages_per_connection,
            idle_timeout: secs(d.idle_timeout_secs),
            timeouts: Timeouts {
                connect: secs(d.connect_timeout_secs),
                greeting: secs(d.greeting_timeout_secs),
                command: secs(d.command_timeout_secs),
                data_end: secs(d.data_timeout_secs),
            },
            retry: RetrySchedule {
                steps: d.retry_schedule_secs.iter().map(|s| secs(*s)).collect(),
                jitter: d.retry_jitter,
                lifetime: secs(d.queue_lifetime_secs),
            },
            dsn: d.dsn,
            delay_reports: d.delay_report_secs.iter().map(|s| secs(*s)).collect(),
            lease: secs(d.lease_secs),
            node_id: node_id.to_string(),
            ..DeliveryConfig::default()
        }
    }
}
