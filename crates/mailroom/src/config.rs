//! Configuration: a TOML file (every key optional, every key documented in README),
//! overridden by `MAILROOM_<SECTION>__<KEY>` environment variables, then validated.
//! Errors name the key (and the file line, for syntax and type errors).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::delivery_config::{DeliverySection, RouteSection};
pub use crate::storage_config::{NodeSection, StorageSection};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Holds the SQLite database, the generated TLS certificate and the operator token.
    pub data_dir: PathBuf,
    /// Name in the SMTP greeting, EHLO reply, Received headers and generated Message-IDs.
    pub hostname: String,
    pub smtp: SmtpSection,
    pub http: HttpSection,
    pub tls: TlsSection,
    pub storage: StorageSection,
    pub node: NodeSection,
    pub log: LogSection,
    pub delivery: DeliverySection,
    pub dns: DnsSection,
    pub limits: LimitsSection,
    pub events: crate::event_config::EventsSection,
    pub webhooks: crate::event_config::WebhooksSection,
    pub domains: crate::domains::DomainsSection,
    pub arc: crate::domains::ArcSection,
    pub managed_domain: crate::domains::ManagedDomainSection,
    pub tracking: crate::content_config::TrackingSection,
    pub content: crate::content_config::ContentSection,
    pub intake: crate::intake_config::IntakeSection,
    pub health: crate::intake_config::HealthSection,
    pub secrets: crate::secrets_key::SecretsSection,
    pub console: crate::console_config::ConsoleSection,
    pub shaping: crate::shaping_config::ShapingSection,
    pub egress: crate::shaping_config::EgressSection,
}

/// Server-wide defaults for tenants without limits of their own (set per tenant with
/// `PATCH /v1/tenants/{id}`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Messages per second per tenant; 0 = unlimited.
    pub messages_per_second: f64,
    /// Messages per rolling 24 hours per tenant; 0 = unlimited.
    pub messages_per_day: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// Resolvers as "ip:port"; empty: the system's (/etc/resolv.conf).
    pub nameservers: Vec<std::net::SocketAddr>,
    pub timeout_secs: Option<u64>,
    /// DANE (RFC 7672): the name servers are validating resolvers on a trusted path,
    /// and their AD bit is believed for TLSA lookups.
    pub dnssec: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    pub submission_listen: Vec<SocketAddr>,
    pub implicit_tls_listen: Vec<SocketAddr>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_command_line: usize,
    pub max_text_line: usize,
    pub command_timeout_secs: u64,
    pub session_timeout_secs: u64,
    pub max_errors: u32,
    pub max_auth_failures_per_session: u32,
    pub auth_failures_per_ip: u32,
    pub auth_lockout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: SocketAddr,
    /// HTTPS listeners: the same API and console over TLS, with the certificate of the
    /// SMTP listeners (`[tls]`: files, self-signed or ACME), swapped without a restart.
    pub tls_listen: Vec<SocketAddr>,
    /// Recipients (to + cc + bcc) per `POST /v1/messages`.
    pub max_recipients: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; when empty (and no `[tls.acme]`), a self-signed one is
    /// generated in data_dir/tls.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `[tls.acme]`: certificates ordered from an ACME CA and renewed in the background.
    pub acme: Option<crate::acme_config::AcmeSection>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: String,
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./mailroom-data"),
            hostname: "localhost".into(),
            smtp: SmtpSection::default(),
            http: HttpSection::default(),
            tls: TlsSection::default(),
            storage: StorageSection::default(),
            node: NodeSection::default(),
            log: LogSection::default(),
            delivery: DeliverySection::default(),
            dns: DnsSection::default(),
            limits: LimitsSection::default(),
            events: Default::default(),
            webhooks: Default::default(),
            domains: Default::default(),
            arc: Default::default(),
            managed_domain: Default::default(),
            tracking: Default::default(),
            content: Default::default(),
            intake: Default::default(),
            health: Default::default(),
            secrets: Default::default(),
            console: Default::default(),
            shaping: Default::default(),
            egress: Default::default(),
        }
    }
}

impl Default for SmtpSection {
    fn default() -> Self {
        let d = mailroom_smtpd::SmtpConfig::default();
        Self {
            submission_listen: vec!["127.0.0.1:2587".parse().expect("literal")],
            implicit_tls_listen: vec!["127.0.0.1:2465".parse().expect("literal")],
            max_message_size: d.max_message_size,
            max_recipients: d.max_recipients,
            max_command_line: d.max_command_line,
            max_text_line: d.max_text_line,
            command_timeout_secs: d.command_timeout.as_secs(),
            session_timeout_secs: d.session_timeout.as_secs(),
            max_errors: d.max_errors,
            max_auth_failures_per_session: d.max_auth_failures,
            auth_failures_per_ip: 10,
            auth_lockout_secs: 300,
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("literal"),
            tls_listen: Vec::new(),
            max_recipients: 50,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "human".into(),
            level: "info".into(),
        }
    }
}

const TOP_LEVEL: &[&str] = &[
    "data_dir",
    "hostname",
    "smtp",
    "http",
    "tls",
    "storage",
    "node",
    "log",
    "delivery",
    "dns",
    "limits",
    "events",
    "webhooks",
    "domains",
    "arc",
    "managed_domain",
    "tracking",
    "content",
    "intake",
    "health",
    "secrets",
    "console",
    "shaping",
    "egress",
];

/// Reads the file (if any), applies environment overrides, validates.
pub fn load(path: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Config> {
    let text = match path {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    let origin = match path {
        Some(p) => p.display().to_string(),
        None => "configuration".into(),
    };
    parse(&text, &origin, env)
}

/// Parses configuration text (`origin` names it in errors), applies environment
/// overrides, validates. Pure: reads no file (the fuzz target `config` calls it).
pub fn parse(
    text: &str,
    origin: &str,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Config> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(origin, &e))?;
    let mut from_env = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("MAILROOM_") else {
            continue;
        };
        // MAILROOM_LOG is the log filter (an EnvFilter, read in main.rs), not the
        // [log] section; only MAILROOM_LOG__<KEY> sets keys there.
        if rest == "LOG" {
            continue;
        }
        let path: Vec<String> = rest
            .to_ascii_lowercase()
            .split("__")
            .map(str::to_string)
            .collect();
        if !TOP_LEVEL.contains(&path[0].as_str()) {
            continue;
        }
        set_path(&mut table, &path, parse_env_value(&value))
            .with_context(|| format!("environment variable {name}"))?;
        from_env.push(name);
    }
    let config: Config = if from_env.is_empty() {
        // Straight from the text, so errors carry the file line.
        toml::from_str(text).map_err(|e| toml_error(origin, &e))?
    } else {
        Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            let env = from_env.join(", ");
            anyhow::anyhow!(
                "{origin} (environment overrides: {env}): {}",
                crate::storage_config::redact_text(e.message().trim())
            )
        })?
    };
    config.validate()?;
    Ok(config)
}

/// A TOML error: toml's own text has the line, the column and the offending line, so
/// the key is shown in place (a database URL's password redacted).
fn toml_error(origin: &str, e: &toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{origin}: {}",
        crate::storage_config::redact_text(e.to_string().trim_end())
    )
}

fn parse_env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<()> {
    match path {
        [] => bail!("empty key"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => bail!("key {first} is not a section"),
            }
        }
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        let s = &self.smtp;
        let checks: [(bool, &str, &str); 13] = [
            (
                !(self.limits.messages_per_second.is_finite()
                    && self.limits.messages_per_second >= 0.0),
                "limits.messages_per_second",
                "must be 0 (unlimited) or more",
            ),
            (
                self.http.max_recipients == 0,
                "http.max_recipients",
                "must be at least 1",
            ),
            (
                self.hostname.is_empty() || self.hostname.contains(char::is_whitespace),
                "hostname",
                "must be a host name without spaces",
            ),
            (
                s.max_message_size < 1024,
                "smtp.max_message_size",
                "must be at least 1024 bytes",
            ),
            (
                s.max_recipients == 0,
                "smtp.max_recipients",
                "must be at least 1",
            ),
            (
                s.max_command_line < 512,
                "smtp.max_command_line",
                "must be at least 512 (RFC 5321)",
            ),
            (
                s.max_text_line < 78,
                "smtp.max_text_line",
                "must be at least 78",
            ),
            (
                s.command_timeout_secs == 0,
                "smtp.command_timeout_secs",
                "must be at least 1",
            ),
            (
                s.session_timeout_secs == 0,
                "smtp.session_timeout_secs",
                "must be at least 1",
            ),
            (
                s.max_connections == 0,
                "smtp.max_connections",
                "must be at least 1",
            ),
            (
                s.max_connections_per_ip == 0,
                "smtp.max_connections_per_ip",
                "must be at least 1",
            ),
            (
                s.auth_failures_per_ip == 0,
                "smtp.auth_failures_per_ip",
                "must be at least 1",
            ),
            (
                !["human", "json"].contains(&self.log.format.as_str()),
                "log.format",
                "must be \"human\" or \"json\"",
            ),
        ];
        for (bad, key, why) in checks {
            if bad {
                bail!("invalid value for key {key}: {why}");
            }
        }
        crate::storage_config::validate(&self.storage, &self.node)?;
        crate::domains::validate(self)?;
        crate::intake_config::validate(&self.intake, &self.health)?;
        crate::secrets_key::validate(&self.secrets)?;
        crate::console_config::validate(&self.console)?;
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("invalid value for key tls.cert_file / tls.key_file: set both or neither");
        }
        crate::acme_config::validate(&self.tls)?;
        crate::delivery_config::validate(&self.delivery)?;
        crate::event_config::validate(&self.events, &self.webhooks)?;
        crate::content_config::validate(&self.tracking, &self.content)?;
        crate::shaping_config::validate(self)?;
        if s.submission_listen.is_empty() && s.implicit_tls_listen.is_empty() {
            bail!("invalid value for key smtp.submission_listen: no SMTP listener configured");
        }
        Ok(())
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.storage
            .sqlite_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mailroom.db"))
    }

    pub fn policy_config(&self) -> mailroom_policy::PolicyConfig {
        mailroom_policy::PolicyConfig {
            auth_failures_per_ip: self.smtp.auth_failures_per_ip,
            auth_window: std::time::Duration::from_secs(self.smtp.auth_lockout_secs),
            defaults: mailroom_policy::TenantDefaults {
                messages_per_second: self.limits.messages_per_second,
                messages_per_day: self.limits.messages_per_day,
                max_recipients: self.smtp.max_recipients,
                max_message_size: self.smtp.max_message_size,
            },
            health: self.health.thresholds(),
        }
    }

    pub fn smtp_config(&self) -> mailroom_smtpd::SmtpConfig {
        let s = &self.smtp;
        mailroom_smtpd::SmtpConfig {
            hostname: self.hostname.clone(),
            max_message_size: s.max_message_size,
            max_recipients: s.max_recipients,
            max_command_line: s.max_command_line,
            max_text_line: s.max_text_line,
            command_timeout: std::time::Duration::from_secs(s.command_timeout_secs),
            session_timeout: std::time::Duration::from_secs(s.session_timeout_secs),
            max_errors: s.max_errors,
            max_auth_failures: s.max_auth_failures_per_session,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
