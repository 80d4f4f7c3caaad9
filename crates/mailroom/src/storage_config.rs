//! The `[storage]` and `[node]` configuration sections: which store a node uses
//! (the embedded SQLite file, or PostgreSQL shared by several nodes: URL, pool size,
//! statement timeout), who the node is (`node.id`, heartbeat period), their
//! validation, and the redaction that keeps a database password out of every message
//! and log line. Declared here, included in `config::Config`.

use anyhow::{Result, bail};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `sqlite` (embedded, one node) or `postgres` (shared by several nodes).
    pub backend: String,
    /// Defaults to data_dir/mailroom.db.
    pub sqlite_path: Option<PathBuf>,
    /// `postgres://user[:password]@host[:port]/database` (backend `postgres`).
    pub url: Option<String>,
    /// PostgreSQL connections in this node's pool.
    pub pool_size: u32,
    /// PostgreSQL cancels any statement that runs longer.
    pub statement_timeout_secs: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            sqlite_path: None,
            url: None,
            pool_size: 16,
            statement_timeout_secs: 30,
        }
    }
}

/// Never shows the URL's password (`Config` is `Debug`).
impl std::fmt::Debug for StorageSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSection")
            .field("backend", &self.backend)
            .field("sqlite_path", &self.sqlite_path)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .finish()
    }
}

impl StorageSection {
    pub fn is_postgres(&self) -> bool {
        self.backend == "postgres"
    }

    /// The URL as it may be shown (password replaced), or `-` when unset.
    pub fn shown_url(&self) -> String {
        self.url
            .as_deref()
            .map(redact_url)
            .unwrap_or_else(|| "-".into())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// This node's name among the nodes sharing a store (owner of its leases);
    /// default: the host name plus a random suffix kept in data_dir/node-id.
    pub id: Option<String>,
    /// Seconds between heartbeats; a node is alive while its last heartbeat is younger
    /// than three of them.
    pub heartbeat_secs: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            id: None,
            heartbeat_secs: 5,
        }
    }
}

/// Checks both sections; errors name the key and never echo a password.
pub fn validate(storage: &StorageSection, node: &NodeSection) -> Result<()> {
    match storage.backend.as_str() {
        "sqlite" => {}
        "postgres" => match storage.url.as_deref() {
            None | Some("") => bail!(
                "invalid value for key storage.url / storage.backend: storage.backend = \"postgres\" needs storage.url (or MAILROOM_STORAGE__URL)"
            ),
            Some(url) => check_postgres_url(url)?,
        },
        _ => bail!("invalid value for key storage.backend: must be \"sqlite\" or \"postgres\""),
    }
    if storage.pool_size == 0 {
        bail!("invalid value for key storage.pool_size: must be at least 1");
    }
    if storage.statement_timeout_secs == 0 {
        bail!("invalid value for key storage.statement_timeout_secs: must be at least 1");
    }
    if let Some(id) = &node.id {
        let ok = !id.is_empty()
            && id.len() <= 100
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            bail!(
                "invalid value for key node.id: 1 to 100 characters, letters, digits, '-', '_' or '.'"
            );
        }
    }
    if node.heartbeat_secs == 0 {
        bail!("invalid value for key node.heartbeat_secs: must be at least 1");
    }
    Ok(())
}

/// A PostgreSQL URL: scheme `postgres` or `postgresql`, a host (or `?host=` for a
/// Unix socket directory), at most one database name.
fn check_postgres_url(url: &str) -> Result<()> {
    let shown = redact_url(url);
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => bail!(
            "invalid value for key storage.url: not a PostgreSQL URL ({e}); expected postgres://user[:password]@host[:port]/database"
        ),
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        bail!(
            "invalid value for key storage.url: scheme must be postgres:// or postgresql://, not {}: {shown}",
            parsed.scheme()
        );
    }
    let socket = parsed.query_pairs().any(|(k, _)| k == "host");
    if parsed.host_str().is_none_or(str::is_empty) && !socket {
        bail!("invalid value for key storage.url: no host: {shown}");
    }
    if parsed.path().trim_start_matches('/').contains('/') {
        bail!("invalid value for key storage.url: the path must be one database name: {shown}");
    }
    Ok(())
}

/// The URL with its password (if any) replaced by `***`; text that is not a URL
/// goes through [`redact_text`].
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => redact_text(url),
    }
}

/// Replaces the password of every `scheme://user:password@` in `text` with `***`
/// (error texts that may quote a URL, such as a TOML syntax error's source line).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; its userinfo at
        // the last '@' within it.
        let end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) if authority[..at].contains(':') => {
                let colon = authority[..at].find(':').unwrap_or(at);
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://mr:s3cret@db.example:5432/mail"),
            "postgres://mr:***@db.example:5432/mail"
        );
        assert_eq!(
            redact_url("postgres://mr@db.example/mail"),
            "postgres://mr@db.example/mail"
        );
        let t = redact_text("line 3: url = postgres://a:p%40ss@h/db x https://x:y@z");
        assert_eq!(t, "line 3: url = postgres://a:***@h/db x https://x:***@z");
        assert!(!redact_text("postgres://u:hunter2@[bad").contains("hunter2"));
    }

    #[test]
    fn postgres_urls_are_checked() {
        let pg = |url: &str| StorageSection {
            backend: "postgres".into(),
            url: Some(url.into()),
            ..Default::default()
        };
        let node = NodeSection::default();
        assert!(validate(&pg("postgres://postgres@127.0.0.1:5432/test"), &node).is_ok());
        assert!(validate(&pg("postgresql://u:p@h/db?sslmode=disable"), &node).is_ok());
        assert!(validate(&pg("postgres:///db?host=/run/postgresql"), &node).is_ok());
        for bad in [
            "mysql://u:hunter2@h/db",
            "postgres://u:hunter2@/db",
            "not a url hunter2",
            "postgres://u:hunter2@h:99999/db",
            "postgres://u:hunter2@h/db/x",
        ] {
            let e = validate(&pg(bad), &node).unwrap_err().to_string();
            assert!(e.contains("storage.url"), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        let none = StorageSection {
            backend: "postgres".into(),
            ..Default::default()
        };
        let e = validate(&none, &node).unwrap_err().to_string();
        assert!(e.contains("storage.url"), "{e}");
    }
}
