//! The `[tracking]` and `[content]` configuration sections: the public tracking base
//! URL and secret, and content protection (URL blocklist file, blocked extensions,
//! heuristics threshold, the action per rule, clamd). Declared here, included in
//! `config::Config`; `build` turns them into ingest's `ContentConfig` and the API's
//! `TrackingState`.

use anyhow::{Context, Result, bail};
use mailroom_content::clamd::{Clamd, ClamdAddr};
use mailroom_content::{Key, RuleSet};
use mailroom_ingest::{Action, Actions, ContentConfig, TrackingConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSection {
    /// Scheme, host and port of the public `/t/...` endpoints; default: the HTTP
    /// listener (`http://<http.listen>`).
    pub base_url: Option<String>,
    /// HMAC secret for tracking tokens; default: generated once into
    /// `data_dir/tracking-secret`.
    pub secret: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentSection {
    /// Run the content rules at all.
    pub enabled: bool,
    /// One domain per line (`#` comments); links to them or their subdomains fire
    /// `url_blocklist`.
    pub url_blocklist_file: Option<PathBuf>,
    /// Attachment extensions (no dot); default: executables, scripts, macro documents.
    pub blocked_extensions: Option<Vec<String>>,
    /// Heuristics score at which `heuristics` fires (tenants may have their own).
    pub score_threshold: u32,
    /// `tcp:host:port` or `unix:/path` of clamd; unset: no malware scan.
    pub clamd: Option<String>,
    /// Accept messages unscanned when clamd fails (default: refuse with 451/503).
    pub clamd_fail_open: bool,
    pub clamd_timeout_secs: u64,
    /// `reject`, `quarantine` or `tag` per rule.
    pub url_blocklist_action: String,
    pub attachment_action: String,
    pub heuristics_action: String,
    pub malware_action: String,
}

impl Default for ContentSection {
    fn default() -> Self {
        Self {
            enabled: true,
            url_blocklist_file: None,
            blocked_extensions: None,
            score_threshold: 6,
            clamd: None,
            clamd_fail_open: false,
            clamd_timeout_secs: 30,
            url_blocklist_action: "reject".into(),
            attachment_action: "reject".into(),
            heuristics_action: "quarantine".into(),
            malware_action: "reject".into(),
        }
    }
}

fn action(key: &str, text: &str) -> Result<Action> {
    Action::parse(text).with_context(|| {
        format!("invalid value for key content.{key}: must be reject, quarantine or tag")
    })
}

pub fn validate(t: &TrackingSection, c: &ContentSection) -> Result<()> {
    if let Some(url) = &t.base_url {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.ends_with('/')
            && mailroom_content::html::is_web_url(url);
        if !ok {
            bail!(
                "invalid value for key tracking.base_url: an http(s) URL without a trailing slash"
            );
        }
    }
    if t.secret.as_ref().is_some_and(|s| s.len() < 16) {
        bail!("invalid value for key tracking.secret: at least 16 characters");
    }
    if let Some(addr) = &c.clamd
        && ClamdAddr::parse(addr).is_none()
    {
        bail!("invalid value for key content.clamd: tcp:HOST:PORT or unix:/PATH");
    }
    if c.clamd_timeout_secs == 0 {
        bail!("invalid value for key content.clamd_timeout_secs: must be at least 1");
    }
    for (key, v) in [
        ("url_blocklist_action", &c.url_blocklist_action),
        ("attachment_action", &c.attachment_action),
        ("heuristics_action", &c.heuristics_action),
        ("malware_action", &c.malware_action),
    ] {
        action(key, v)?;
    }
    Ok(())
}

/// The tracking secret: configured, or read from (or generated into) the data dir.
fn secret(t: &TrackingSection, data_dir: &Path) -> Result<String> {
    if let Some(s) = &t.secret {
        return Ok(s.clone());
    }
    let path = data_dir.join("tracking-secret");
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_string());
    }
    let s = mailroom_policy::secrets::new_operator_token();
    crate::files::write_private(&path, format!("{s}\n").as_bytes())?;
    Ok(s)
}

/// `http_addr`: the HTTP listener's bound address (the default tracking host).
pub fn build(
    config: &crate::config::Config,
    http_addr: std::net::SocketAddr,
) -> Result<(Option<ContentConfig>, mailroom_api::TrackingState)> {
    let key = Key::new(secret(&config.tracking, &config.data_dir)?.as_bytes());
    let base_url = config
        .tracking
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let state = mailroom_api::TrackingState { key: key.clone() };
    let c = &config.content;
    if !c.enabled {
        return Ok((None, state));
    }
    let blocked_domains = match &c.url_blocklist_file {
        Some(p) => {
            RuleSet::parse_blocklist(&std::fs::read_to_string(p).with_context(|| {
                format!("content.url_blocklist_file: cannot read {}", p.display())
            })?)
        }
        None => Default::default(),
    };
    let blocked_extensions = match &c.blocked_extensions {
        Some(list) => list
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .collect(),
        None => RuleSet::default_extensions(),
    };
    let content = ContentConfig {
        tracking: Some(TrackingConfig { key, base_url }),
        rules: RuleSet {
            blocked_domains,
            blocked_extensions,
        },
        actions: Actions {
            url_blocklist: action("url_blocklist_action", &c.url_blocklist_action)?,
            attachment: action("attachment_action", &c.attachment_action)?,
            heuristics: action("heuristics_action", &c.heuristics_action)?,
            malware: action("malware_action", &c.malware_action)?,
        },
        score_threshold: c.score_threshold,
        clamd: c
            .clamd
            .as_deref()
            .and_then(ClamdAddr::parse)
            .map(|addr| Clamd {
                addr,
                timeout: Duration::from_secs(c.clamd_timeout_secs),
            }),
        clamd_fail_open: c.clamd_fail_open,
    };
    Ok((Some(content), state))
}
