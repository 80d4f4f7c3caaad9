//! Configuration: a TOML file (every key optional, every key documented in README),
//! overridden by `MAILROOM_<SECTION>__<KEY>` environment variables, then validated.
//! Errors name the key (and the file line, for syntax and type errors).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// How long a claim on a recipient lasts before another node may take it over
    /// (renewed while its delivery runs).
    pub lease_secs: u64,
    pub routes: Vec<RouteSection>,
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

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// Resolvers as "ip:port"; empty: the system's (/etc/resolv.conf).
    pub nameservers: Vec<std::net::SocketAddr>,
    pub timeout_secs: Option<u64>,
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
            lease_secs: 60,
            routes: Vec::new(),
        }
    }
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
    /// Recipients (to + cc + bcc) per `POST /v1/messages`.
    pub max_recipients: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; when empty, a self-signed one is generated in data_dir/tls.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
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

const TOP_LEVEL: [&str; 21] = [
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
];
const TLS_MODES: [&str; 4] = ["none", "opportunistic", "required", "verify"];

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
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("invalid value for key tls.cert_file / tls.key_file: set both or neither");
        }
        let d = &self.delivery;
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
        for (bad, key, why) in delivery_checks {
            if bad {
                bail!("invalid value for key {key}: {why}");
            }
        }
        crate::event_config::validate(&self.events, &self.webhooks)?;
        crate::content_config::validate(&self.tracking, &self.content)?;
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
            lease: secs(d.lease_secs),
            node_id: node_id.to_string(),
            ..DeliveryConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, text).unwrap();
        load(
            Some(&path),
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn defaults_file_and_env() {
        let c = load(None, std::iter::empty()).unwrap();
        assert_eq!(c.smtp.max_recipients, 100);
        assert_eq!(c.http.listen.port(), 8080);
        let c = load_text(
            "hostname = \"mx.test\"\n[smtp]\nmax_recipients = 5\n",
            &[
                ("MAILROOM_SMTP__MAX_MESSAGE_SIZE", "2048"),
                ("MAILROOM_HTTP__LISTEN", "127.0.0.1:0"),
                ("MAILROOM_TOKEN", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.hostname, "mx.test");
        assert_eq!(c.smtp.max_recipients, 5);
        assert_eq!(c.smtp.max_message_size, 2048);
        assert_eq!(c.http.listen.port(), 0);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_text("[smtp]\nmax_recipientz = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_recipientz"), "{e}");
        let e = load_text("[smtp]\nmax_recipients = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_recipients") && e.contains("line 2"), "{e}");
        let e = load_text("[smtp]\nmax_recipients = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("smtp.max_recipients"), "{e}");
        // Found by tests/e2e/test_logs.py: the documented MAILROOM_LOG=debug filter
        // was taken for the [log] section and the server refused to start.
        let c = load_text("", &[("MAILROOM_LOG", "debug,sqlx=warn")]).unwrap();
        assert_eq!(c.log.level, "info");
        let e = load_text("", &[("MAILROOM_LOG__FORMAT", "xml")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.format"), "{e}");
    }

    #[test]
    fn storage_and_node_keys() {
        let c = load(None, std::iter::empty()).unwrap();
        assert_eq!(c.storage.backend, "sqlite");
        assert_eq!(
            (c.storage.pool_size, c.storage.statement_timeout_secs),
            (16, 30)
        );
        assert_eq!((c.node.id.as_deref(), c.node.heartbeat_secs), (None, 5));
        assert_eq!(c.delivery.lease_secs, 60);
        let url = "postgres://mr:hunter2@127.0.0.1:5432/mail";
        let c = load_text(
            "[storage]\nbackend = \"postgres\"\npool_size = 4\n[node]\nid = \"n1\"\n[delivery]\nlease_secs = 7\n",
            &[("MAILROOM_STORAGE__URL", url)],
        )
        .unwrap();
        assert_eq!(c.storage.url.as_deref(), Some(url));
        assert_eq!(c.storage.pool_size, 4);
        assert!(!format!("{c:?}").contains("hunter2"));
        let d = c.delivery_config(Vec::new(), "n1");
        assert_eq!(
            (d.lease, d.node_id.as_str()),
            (std::time::Duration::from_secs(7), "n1")
        );
        let e = load_text("[storage]\nbackend = \"postgres\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.url"), "{e}");
        let e = load_text(
            "[storage]\nbackend = \"postgres\"\nurl = \"http://u:hunter2@h/db\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("storage.url") && !e.contains("hunter2"), "{e}");
        // A syntax error quotes the line: the password is redacted there too.
        let e = load_text("[storage]\nurl = postgres://u:hunter2@h/db\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("hunter2"), "{e}");
        let e = load_text("[storage]\nbackend = \"mysql\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.backend"), "{e}");
        let e = load_text("[node]\nheartbeat_secs = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.heartbeat_secs"), "{e}");
        let e = load_text("[node]\nid = \"a b\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.id"), "{e}");
    }
}
