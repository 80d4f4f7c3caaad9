//! Configuration reload without a restart: `SIGHUP`, or `POST /v1/admin/reload`
//! (`mailroom reload`), re-reads the file `serve` started with. Owns the table of what
//! changes live and what waits for a restart (README "Configuration reload"):
//!
//! | key | on reload |
//! |---|---|
//! | `limits.*` | live: the policy's server-wide defaults |
//! | `delivery.routes` | live: the next dispatch and connection follow them |
//! | `content.*` | live: the next submission uses them |
//! | `log.level` | live (unless `MAILROOM_LOG` is set, which wins) |
//! | `tls.cert_file`, `tls.key_file` (and the files' contents) | live: the next handshake |
//! | `tls.acme` | restart (the certificate it renews is picked up live, by itself) |
//! | everything else | restart: named in a warning and in the reply |
//!
//! A reload is all or nothing: the file is loaded and validated, the certificate, the
//! content settings and the log filter are built, and only then is anything swapped
//! in. A bad file changes nothing and the reason (naming the key) is logged and
//! returned.

use crate::config::Config;
use anyhow::Context;
use mailroom_delivery::Engine;
use mailroom_ingest::Ingest;
use mailroom_policy::Policy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tracing_subscriber::{EnvFilter, Registry, reload::Handle};

/// The log filter installed by `main` (absent when logging was set up otherwise).
static LOG_FILTER: OnceLock<Handle<EnvFilter, Registry>> = OnceLock::new();

/// Called once by `main` with the handle of the reloadable log filter.
pub fn set_log_handle(handle: Handle<EnvFilter, Registry>) {
    let _ = LOG_FILTER.set(handle);
}

/// The filter for a `log.level` (noisy dependencies kept at `warn`).
pub fn log_filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(format!("{level},sqlx=warn,hickory_server=warn"))
        .map_err(|e| format!("invalid value for key log.level: {e}"))
}

/// What a reload touches, wired by `serve`.
pub struct Reloader {
    /// The file `serve` was started with (`None`: embedded defaults and environment).
    pub path: Option<PathBuf>,
    /// The configuration the process started with: what restart-only keys are
    /// compared with (a change stays "needs a restart" at every reload until then).
    pub started: Config,
    /// The configuration in force (the last one that loaded): what live keys are
    /// compared with.
    pub current: tokio::sync::Mutex<Config>,
    pub policy: Arc<Policy>,
    pub engine: Option<Arc<Engine>>,
    pub ingest: Arc<Ingest>,
    pub cert: Arc<crate::tls::LiveCert>,
    pub http_addr: SocketAddr,
    pub own_listeners: Vec<SocketAddr>,
    pub node_id: String,
}

/// What one reload did.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub file: Option<String>,
    pub applied: Vec<String>,
    pub restart_required: Vec<String>,
    pub warnings: Vec<String>,
}

impl Reloader {
    /// Re-reads the file and applies it; `Err` (the reason) when nothing changed.
    pub async fn reload(&self) -> Result<Report, String> {
        let mut current = self.current.lock().await;
        let outcome = self.apply(&current).map_err(|e| format!("{e:#}"));
        match outcome {
            Ok((next, report)) => {
                for key in &report.restart_required {
                    tracing::warn!(
                        key = %key,
                        "configuration reload: {key} changed but takes effect only after a restart"
                    );
                }
                for w in &report.warnings {
                    tracing::warn!("configuration reload: {w}");
                }
                tracing::info!(applied = ?report.applied, "configuration reloaded");
                *current = next;
                Ok(report)
            }
            Err(why) => {
                tracing::error!(error = %why, "configuration reload failed; nothing was changed");
                Err(why)
            }
        }
    }

    fn apply(&self, old: &Config) -> anyhow::Result<(Config, Report)> {
        let next = crate::config::load(self.path.as_deref(), std::env::vars())?;
        // Everything that can fail is built before anything is swapped in.
        let cert = crate::tls::certified_key(&next)?;
        // [tracking] is restart-only (the API checks tokens with the key it started
        // with): the new content settings are built with the tracking in force.
        let mut for_content = next.clone();
        for_content.tracking = self.started.tracking.clone();
        let (content, _) = crate::content_config::build(&for_content, self.http_addr)
            .context("content settings")?;
        let filter = log_filter(&next.log.level).map_err(anyhow::Error::msg)?;
        let applied = live_changes(old, &next);
        let restart_required = restart_changes(&self.started, &next);
        let mut warnings = Vec::new();

        // Only limits.*: the recipient and size defaults come from [smtp], which the
        // sessions read once (restart-only), so they stay as they started.
        let mut defaults = self.policy.defaults();
        let fresh = next.policy_config().defaults;
        defaults.messages_per_second = fresh.messages_per_second;
        defaults.messages_per_day = fresh.messages_per_day;
        self.policy.set_defaults(defaults);
        if let Some(engine) = &self.engine {
            let cfg = next.delivery_config(self.own_listeners.clone(), &self.node_id);
            engine.set_routes(cfg.routes);
        }
        self.ingest.set_content(content.map(Arc::new));
        self.cert.replace(cert);
        if std::env::var_os("MAILROOM_LOG").is_some() {
            if applied.iter().any(|k| k == "log.level") {
                warnings.push("log.level not applied: MAILROOM_LOG is set and wins".into());
            }
        } else if let Some(handle) = LOG_FILTER.get()
            && let Err(e) = handle.reload(filter)
        {
            warnings.push(format!("log.level not applied: {e}"));
        }
        let report = Report {
            file: self.path.as_ref().map(|p| p.display().to_string()),
            applied,
            restart_required,
            warnings,
        };
        Ok((next, report))
    }
}

/// The SIGHUP stream (`None` off Unix).
#[cfg(unix)]
pub type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangups = Option<()>;

/// Installs the SIGHUP handler (before the listeners are announced, so a HUP never
/// meets the default action, which ends the process).
#[cfg(unix)]
pub fn hangups() -> anyhow::Result<Hangups> {
    let s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    Ok(Some(s))
}

#[cfg(not(unix))]
pub fn hangups() -> anyhow::Result<Hangups> {
    Ok(None)
}

/// Reloads at each SIGHUP until shutdown (the outcome is logged by `reload`).
#[cfg(unix)]
pub async fn on_hangup(
    hangups: Hangups,
    reloader: Arc<Reloader>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reloader.reload().await;
            }
        }
    }
}

#[cfg(not(unix))]
pub async fn on_hangup(
    _hangups: Hangups,
    _reloader: Arc<Reloader>,
    _shutdown: tokio_util::sync::CancellationToken,
) {
}

/// The reload as the API's `POST /v1/admin/reload` calls it.
pub fn api(reloader: Arc<Reloader>) -> mailroom_api::Reloader {
    mailroom_api::Reloader(Arc::new(move || {
        let reloader = reloader.clone();
        Box::pin(async move {
            let report = reloader.reload().await?;
            serde_json::to_value(report).map_err(|e| e.to_string())
        })
    }))
}

/// Compares two configurations key by key, by their `Debug` text (never logged: it may
/// hold passwords), listing the names of the keys that differ.
macro_rules! diff {
    ($old:expr, $new:expr, $list:ident: $($($part:ident).+),+ $(,)?) => {$(
        if format!("{:?}", $old.$($part).+) != format!("{:?}", $new.$($part).+) {
            $list.push(stringify!($($part).+).replace(' ', ""));
        }
    )+};
}

/// The live keys whose value differs between `old` and `new`.
fn live_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut live = Vec::new();
    diff!(old, new, live: limits.messages_per_second, limits.messages_per_day,
        delivery.routes, content, log.level, tls.cert_file, tls.key_file);
    live
}

/// The restart-only keys whose value differs between `started` and `new`.
fn restart_changes(started: &Config, new: &Config) -> Vec<String> {
    let mut restart = Vec::new();
    diff!(started, new, restart: data_dir, hostname,
        smtp.submission_listen, smtp.implicit_tls_listen, smtp.max_message_size,
        smtp.max_recipients, smtp.max_command_line, smtp.max_text_line,
        smtp.command_timeout_secs, smtp.session_timeout_secs, smtp.max_errors,
        smtp.max_auth_failures_per_session, smtp.auth_failures_per_ip,
        smtp.auth_lockout_secs, smtp.max_connections, smtp.max_connections_per_ip,
        http.listen, http.tls_listen, http.max_recipients, storage, node, log.format, dns, events,
        webhooks, domains, arc, managed_domain, tracking, intake, health, secrets, tls.acme);
    // The rest of [delivery] (engine limits, timeouts, retry schedule) is read once.
    let (mut a, mut b) = (started.delivery.clone(), new.delivery.clone());
    a.routes.clear();
    b.routes.clear();
    if format!("{a:?}") != format!("{b:?}") {
        restart.push("delivery (other than delivery.routes)".into());
    }
    restart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        crate::config::parse(text, "test", std::iter::empty()).expect("valid config")
    }

    #[test]
    fn live_and_restart_keys_are_told_apart() {
        let old = parse("");
        let new = parse(
            "[limits]\nmessages_per_day = 5\n[smtp]\nsubmission_listen = [\"127.0.0.1:2600\"]\n\
             [log]\nlevel = \"debug\"\n[delivery]\nmax_connections = 7\n",
        );
        assert_eq!(
            live_changes(&old, &new),
            vec!["limits.messages_per_day", "log.level"]
        );
        assert_eq!(
            restart_changes(&old, &new),
            vec![
                "smtp.submission_listen",
                "delivery (other than delivery.routes)"
            ]
        );
        assert!(live_changes(&new, &new).is_empty());
        assert!(restart_changes(&new, &new).is_empty());
    }

    #[test]
    fn a_bad_log_level_names_the_key() {
        assert!(log_filter("info").is_ok());
        let e = log_filter("no such level=!!").unwrap_err();
        assert!(e.contains("log.level"), "{e}");
    }
}
